namespace AttentionEngine;

/// <summary>
/// <see cref="ReferenceAttention"/> as a backend: computes in float64, then rounds once into the caller's
/// destinations (output to T, LSE and weights to float).
/// </summary>
public sealed class ReferenceBackend : AttentionBackend
{
    public static ReferenceBackend Instance { get; } = new();

    private ReferenceBackend() { }

    public override Backend Kind => Backend.Reference;

    public override bool SupportsFunctors => true;

    protected internal override void Execute<T>(scoped in AttentionCall<T> call) =>
        Write(call, ReferenceAttention.Compute(call, withWeights: call.ReturnWeights));

    protected internal override void ExecuteFlex<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod) =>
        Write(call, ReferenceAttention.Compute(call, call.ReturnWeights, new PairFunctors<TMask, TScore>(blockMask, scoreMod)));

    private static void Write<T>(scoped in AttentionCall<T> call, AttentionResult result) where T : unmanaged
    {
        var shape = call.Shape;
        long row = 0;
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++, row++)
        {
            for (int c = 0; c < shape.ValueDim; c++)
                call.Output[b, h, i, c] = ElementTypes.FromDouble<T>(result.Output[row * shape.ValueDim + c]);
            if (call.ReturnLse) call.Lse[b, h, i, 0] = (float)result.Lse[row];
            if (call.ReturnWeights)
                for (int j = 0; j < shape.KeyLength; j++)
                    call.Weights[b, h, i, j] = (float)result.Weights![row * shape.KeyLength + j];
        }
    }
}
