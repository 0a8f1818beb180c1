namespace AttentionEngine;

/// <summary>
/// <see cref="ReferenceAttention"/> as a backend: computes in float64, then rounds once into the caller's
/// destinations (output to T, LSE and weights to float).
/// </summary>
public sealed class ReferenceBackend : AttentionBackend
{
    /// <summary>The one instance (the Reference holds no state).</summary>
    public static ReferenceBackend Instance { get; } = new();

    private ReferenceBackend() { }

    /// <inheritdoc/>
    public override Backend Kind => Backend.Reference;

    /// <inheritdoc/>
    public override bool SupportsFunctors => true;

    /// <inheritdoc/>
    public override bool SupportsBackward => true;

    /// <inheritdoc/>
    public override bool SupportsDropout => true;

    /// <inheritdoc/>
    public override bool SupportsQuantizedKeyValues => true;

    /// <inheritdoc/>
    public override bool SupportsInt8Scores => true;

    /// <inheritdoc/>
    protected internal override void ExecuteBackward<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod) =>
        WriteGradients(call, IsPlain(blockMask, scoreMod) ? ReferenceBackward.Compute(call) : ReferenceBackward.Compute(call, blockMask, scoreMod));

    // Plain calls skip the functor interface: the Reference is the oracle of every test and runs on every pair.
    private static bool IsPlain<TMask, TScore>(BlockMask<TMask>? blockMask, TScore scoreMod)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        blockMask is null && typeof(TScore) == typeof(IdentityScore);

    private static void WriteGradients<T>(scoped in AttentionBackwardCall<T> call, AttentionGradients gradients) where T : unmanaged
    {
        var shape = call.Forward.Shape;
        if (call.ReturnBiasGradient)
            foreach (var (offset, sum) in ReferenceBackward.BiasGradient(call, gradients.ScoreGradient!))
                System.Runtime.CompilerServices.Unsafe.Add(ref call.DBias.Base, offset) = (float)sum;
        for (int b = 0; b < shape.Batch; b++)
        {
            for (int h = 0; h < shape.QueryHeads; h++)
            for (int i = 0; i < shape.QueryLength; i++)
            for (int c = 0; c < shape.HeadDim; c++)
                call.DQ[b, h, i, c] = ElementTypes.FromDouble<T>(gradients.DQ[(((long)b * shape.QueryHeads + h) * shape.QueryLength + i) * shape.HeadDim + c]);
            for (int h = 0; h < shape.KvHeads; h++)
            for (int j = 0; j < shape.KeyLength; j++)
            {
                long row = ((long)b * shape.KvHeads + h) * shape.KeyLength + j;
                for (int c = 0; c < shape.HeadDim; c++) call.DK[b, h, j, c] = ElementTypes.FromDouble<T>(gradients.DK[row * shape.HeadDim + c]);
                for (int c = 0; c < shape.ValueDim; c++) call.DV[b, h, j, c] = ElementTypes.FromDouble<T>(gradients.DV[row * shape.ValueDim + c]);
            }
        }
    }

    /// <inheritdoc/>
    protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod) =>
        Write(call, IsPlain(blockMask, scoreMod)
            ? ReferenceAttention.Compute(call, withWeights: call.ReturnWeights)
            : ReferenceAttention.Compute(call, call.ReturnWeights, new PairFunctors<TMask, TScore>(blockMask, scoreMod)));

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
