using System.Runtime.CompilerServices;
using AttentionEngine.Bindings.Memory;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Cpu.Backward;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// The CPU flash-attention forward: tiled online softmax in C# SIMD, multi-threaded over (batch, KV head, row tile),
/// bitwise identical for any thread count. Serves every option of the Reference backend.
/// </summary>
public sealed class CpuBackend : AttentionBackend
{
    /// <summary>The widest path this machine runs (or the one ATTENTION_CPU_ISA forces).</summary>
    public static CpuBackend Default { get; } = new(CpuIsa.Auto);

    /// <summary>A backend pinned to one vector width (for tests and comparisons).</summary>
    public CpuBackend(CpuIsa isa)
    {
        if (!Enum.IsDefined(isa)) throw new ArgumentOutOfRangeException(nameof(isa), isa, "Unknown CPU instruction set.");
        Isa = isa;
    }

    /// <summary>The vector width this backend was asked for (<see cref="CpuIsa.Auto"/>: the widest the machine runs).</summary>
    public CpuIsa Isa { get; }

    /// <inheritdoc/>
    public override Backend Kind => Backend.Cpu;

    /// <inheritdoc/>
    public override string Name => Isa == CpuIsa.Auto ? "Cpu" : $"Cpu-{Isa}";

    /// <inheritdoc/>
    public override string? UnavailableReason =>
        CpuIsaSelection.IsSupported(Isa) ? null : $"this machine's instruction set does not accelerate {Isa}";

    /// <summary>The vector width calls run at.</summary>
    public CpuIsa ResolvedIsa => CpuIsaSelection.Resolve(Isa);

    /// <inheritdoc/>
    public override bool SupportsFunctors => true;

    /// <inheritdoc/>
    public override bool SupportsBackward => true;

    /// <inheritdoc/>
    public override bool SupportsDropout => true;

    /// <inheritdoc/>
    protected internal override unsafe void ExecuteBackward<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        var forward = call.Forward;
        fixed (T* q = &Unsafe.AsRef(in forward.Q.Base))
        fixed (T* k = &Unsafe.AsRef(in forward.K.Base))
        fixed (T* v = &Unsafe.AsRef(in forward.V.Base))
        fixed (float* bias = &Unsafe.AsRef(in forward.Bias.Base))
        fixed (bool* keep = &Unsafe.AsRef(in forward.KeepMask.Base))
        fixed (T* output = &Unsafe.AsRef(in call.Output.Base))
        fixed (float* lse = &Unsafe.AsRef(in call.Lse.Base))
        fixed (T* dOutput = &Unsafe.AsRef(in call.DOutput.Base))
        fixed (T* dq = &call.DQ.Base)
        fixed (T* dk = &call.DK.Base)
        fixed (T* dv = &call.DV.Base)
        fixed (float* dBias = &call.DBias.Base)
        fixed (BlockKind* kinds = blockMask?.Kinds)
        {
            using var scoreGradient = BiasGradientTarget(call, dBias, out var target);
            var job = new CpuBackwardJob<T>
            {
                Forward = JobOf(forward, q, k, v, output, bias, keep, null, null),
                Output = new RawStrided4<T>(output, call.Output),
                Lse = new RawStrided4<float>(lse, call.Lse),
                DOutput = new RawStrided4<T>(dOutput, call.DOutput),
                DQ = new RawStrided4<T>(dq, call.DQ), DK = new RawStrided4<T>(dk, call.DK), DV = new RawStrided4<T>(dv, call.DV),
                ScoreGradient = target,
            };
            CpuBackward.Run(job, Mods(blockMask, scoreMod, kinds), Isa, forward.MaxDegreeOfParallelism);
            if (scoreGradient is not null) SumBiasGradient(call, dBias, target);
        }
    }

    /// <inheritdoc/>
    protected internal override unsafe void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        // Worker threads read through raw pointers: pin everything for the duration of the (synchronous) run.
        fixed (T* q = &Unsafe.AsRef(in call.Q.Base))
        fixed (T* k = &Unsafe.AsRef(in call.K.Base))
        fixed (T* v = &Unsafe.AsRef(in call.V.Base))
        fixed (T* output = &call.Output.Base)
        fixed (float* bias = &Unsafe.AsRef(in call.Bias.Base))
        fixed (bool* keep = &Unsafe.AsRef(in call.KeepMask.Base))
        fixed (float* lse = &call.Lse.Base)
        fixed (float* weights = &call.Weights.Base)
        fixed (BlockKind* kinds = blockMask?.Kinds)
        {
            var job = JobOf(call, q, k, v, output, bias, keep, lse, weights);
            CpuForward.Run(job, Mods(blockMask, scoreMod, kinds), Isa, call.MaxDegreeOfParallelism);
        }
    }

    /// <summary>A validated call as the kernels' plain job over the pinned pointers (absent tensors stay empty).</summary>
    private static unsafe CpuAttentionJob<T> JobOf<T>(scoped in AttentionCall<T> call, T* q, T* k, T* v, T* output, float* bias, bool* keep,
        float* lse, float* weights) where T : unmanaged
    {
        var shape = call.Shape;
        return new CpuAttentionJob<T>
        {
            Batch = shape.Batch, QueryHeads = shape.QueryHeads, KvHeads = shape.KvHeads,
            QueryLength = shape.QueryLength, KeyLength = shape.KeyLength, HeadDim = shape.HeadDim, ValueDim = shape.ValueDim,
            Scale = call.Scale, Band = call.Band,
            Q = new RawStrided4<T>(q, call.Q), K = new RawStrided4<T>(k, call.K), V = new RawStrided4<T>(v, call.V),
            Output = new RawStrided4<T>(output, call.Output),
            Bias = call.HasBias ? new RawStrided4<float>(bias, call.Bias) : default,
            KeepMask = call.HasKeepMask ? new RawStrided4<bool>(keep, call.KeepMask) : default,
            Lse = call.ReturnLse && lse != null ? new RawStrided4<float>(lse, call.Lse) : default,
            Weights = call.ReturnWeights && weights != null ? new RawStrided4<float>(weights, call.Weights) : default,
            Dropout = call.Dropout.Stream,
            WeightsAfterDropout = call.Dropout.InWeights,
        };
    }

    /// <summary>
    /// Where the kernel writes score gradients: straight into dBias when every score has its own bias element (cleared
    /// first: pairs no block visits have gradient 0), else into a zeroed [B, Hq, Lq, Lk] buffer summed afterwards.
    /// </summary>
    private static unsafe AlignedMemoryHandle? BiasGradientTarget<T>(scoped in AttentionBackwardCall<T> call, float* dBias,
        out RawStrided4<float> target) where T : unmanaged
    {
        target = default;
        if (!call.ReturnBiasGradient) return null;
        var shape = call.Forward.Shape;
        if (!call.DBiasBroadcasts)
        {
            target = new RawStrided4<float>(dBias, call.DBias);
            for (int b = 0; b < shape.Batch; b++)
            for (int h = 0; h < shape.QueryHeads; h++)
            for (int i = 0; i < shape.QueryLength; i++)
            for (int j = 0; j < shape.KeyLength; j++)
                target[b, h, i, j] = 0;
            return null;
        }
        var buffer = AlignedMemoryHandle.Allocate(checked((nuint)((long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength * sizeof(float))));
        int[] lengths = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength];
        nint[] strides = [(nint)shape.QueryHeads * shape.QueryLength * shape.KeyLength, (nint)shape.QueryLength * shape.KeyLength, shape.KeyLength, 1];
        target = new RawStrided4<float>((float*)buffer.DangerousGetHandle(), new Strided4<float>(ref *(float*)buffer.DangerousGetHandle(), lengths, strides));
        return buffer;
    }

    /// <summary>Sums the score gradients into a broadcast dBias in (b, h, i, j) order, in float: the same bits for any thread count.</summary>
    private static unsafe void SumBiasGradient<T>(scoped in AttentionBackwardCall<T> call, float* dBias, RawStrided4<float> scores) where T : unmanaged
    {
        var shape = call.Forward.Shape;
        var destination = new RawStrided4<float>(dBias, call.DBias);
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++)
        for (int j = 0; j < shape.KeyLength; j++)
            destination[b, h, i, j] = 0;
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++)
        for (int j = 0; j < shape.KeyLength; j++)
            destination[b, h, i, j] += scores[b, h, i, j];
    }

    /// <summary>What the kernels see of a block mask (its kinds pinned by the caller) and a score functor.</summary>
    private static unsafe FlexMods<TMask, TScore> Mods<TMask, TScore>(BlockMask<TMask>? blockMask, TScore scoreMod, BlockKind* kinds)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        blockMask is null
            ? FlexMods<TMask, TScore>.None(scoreMod)
            : new FlexMods<TMask, TScore>(blockMask.Mask, scoreMod, kinds, blockMask.Grid);
}
