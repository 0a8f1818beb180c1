using System.Runtime.CompilerServices;
using AttentionEngine.Bindings.Memory;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Cpu.Backward;
using AttentionEngine.Kernels.Cpu.Int8Scores;
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
    public override bool SupportsQuantizedKeyValues => true;

    /// <inheritdoc/>
    public override bool SupportsInt8Scores => true;

    /// <inheritdoc/>
    protected internal override unsafe void ExecuteBackward<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        // The forward call's tensors are pinned by PinnedCall; the backward's own ones here.
        fixed (float* lse = &Unsafe.AsRef(in call.Lse.Base))
        fixed (T* dOutput = &Unsafe.AsRef(in call.DOutput.Base))
        fixed (T* dq = &call.DQ.Base)
        fixed (T* dk = &call.DK.Base)
        fixed (T* dv = &call.DV.Base)
        fixed (float* dBias = &call.DBias.Base)
        {
            using var scoreGradient = BiasGradientTarget(call, dBias, out var target);
            var work = new BackwardWork<T, TMask, TScore>
            {
                BlockMask = blockMask, ScoreMod = scoreMod, Isa = Isa,
                Lse = new RawStrided4<float>(lse, call.Lse),
                DOutput = new RawStrided4<T>(dOutput, call.DOutput),
                DQ = new RawStrided4<T>(dq, call.DQ), DK = new RawStrided4<T>(dk, call.DK), DV = new RawStrided4<T>(dv, call.DV),
                ScoreGradient = target,
            };
            PinnedCall<T>.Pin(call.Forward, ref work);
            if (scoreGradient is not null) BiasGradientSum.Into(new RawStrided4<float>(dBias, call.DBias), target);
        }
    }

    /// <inheritdoc/>
    protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        var work = new ForwardWork<T, TMask, TScore> { BlockMask = blockMask, ScoreMod = scoreMod, Isa = Isa };
        PinnedCall<T>.Pin(call, ref work);
    }

    /// <summary>The forward over a pinned call: worker threads read through raw pointers for the whole (synchronous) run.</summary>
    private struct ForwardWork<T, TMask, TScore> : IPinnedCallWork<T>
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        public BlockMask<TMask>? BlockMask;
        public TScore ScoreMod;
        public CpuIsa Isa;

        public readonly unsafe void Run(in PinnedCall<T> call)
        {
            fixed (BlockKind* kinds = BlockMask?.Kinds)
                CpuForward.Run(JobOf(call), Mods(BlockMask, ScoreMod, kinds), Isa, call.MaxDegreeOfParallelism);
        }
    }

    /// <summary>
    /// The backward over the pinned forward call and the backward's own pinned tensors; or, with
    /// <see cref="Statistics"/> set, only the softmax statistics of its coarse-LSE rows (no gradient tensors).
    /// </summary>
    private unsafe struct BackwardWork<T, TMask, TScore> : IPinnedCallWork<T>
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        public BlockMask<TMask>? BlockMask;
        public TScore ScoreMod;
        public CpuIsa Isa;
        public RawStrided4<float> Lse, ScoreGradient;
        public RawStrided4<T> DOutput, DQ, DK, DV;
        public float* Statistics;

        public readonly void Run(in PinnedCall<T> forward)
        {
            fixed (BlockKind* kinds = BlockMask?.Kinds)
            {
                var job = new CpuBackwardJob<T>
                {
                    // The forward's output view is the saved output; the forward job's LSE and weights stay empty.
                    Forward = JobOf(forward with { Lse = default, Weights = default }),
                    Output = forward.Output, Lse = Lse, DOutput = DOutput, DQ = DQ, DK = DK, DV = DV,
                    ScoreGradient = ScoreGradient, RowStatistics = Statistics,
                };
                CpuBackward.Run(job, Mods(BlockMask, ScoreMod, kinds), Isa, forward.MaxDegreeOfParallelism, statisticsOnly: Statistics != null);
            }
        }
    }

    /// <summary>
    /// For a backend whose backward kernels cannot recompute the softmax of rows whose saved LSE is too coarse to
    /// normalise P (a finite padding bias on every key of a row): the max and 1 / sum of those rows, computed here as
    /// the CPU backward's first phase does, [B][Hq][Lq] pairs (NaN pairs for rows whose LSE is fine).
    /// </summary>
    internal static unsafe float[] CoarseRowStatistics<T, TMask>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask)
        where T : unmanaged where TMask : struct, IMaskMod
    {
        var shape = call.Forward.Shape;
        var statistics = new float[2L * shape.Batch * shape.QueryHeads * shape.QueryLength];
        statistics.AsSpan().Fill(float.NaN);
        fixed (float* lse = &Unsafe.AsRef(in call.Lse.Base))
        fixed (float* target = statistics)
        {
            var work = new BackwardWork<T, TMask, IdentityScore> { BlockMask = blockMask, Isa = CpuIsa.Auto, Lse = new RawStrided4<float>(lse, call.Lse), Statistics = target };
            PinnedCall<T>.Pin(call.Forward, ref work);
        }
        return statistics;
    }

    /// <summary>A pinned call as the kernels' plain job (absent tensors stay empty).</summary>
    private static CpuAttentionJob<T> JobOf<T>(in PinnedCall<T> call) where T : unmanaged
    {
        var shape = call.Shape;
        return new CpuAttentionJob<T>
        {
            Batch = shape.Batch, QueryHeads = shape.QueryHeads, KvHeads = shape.KvHeads,
            QueryLength = shape.QueryLength, KeyLength = shape.KeyLength, HeadDim = shape.HeadDim, ValueDim = shape.ValueDim,
            Scale = (float)call.Scale, Band = call.Band,
            Q = call.Q, K = call.K, V = call.V, Output = call.Output,
            Bias = call.Bias, KeepMask = call.Keep, Lse = call.Lse, Weights = call.Weights,
            Dropout = call.Dropout.Stream,
            WeightsAfterDropout = call.Dropout.InWeights,
            Int8Scores = new Int8ScoreKeys { IsRequested = call.ScorePrecision == ScorePrecision.Int8 },
            Int8 = call.Int8.IsActive
                ? new Int8KeyValues { K = call.Int8.K, V = call.Int8.V, KScale = call.Int8.KScale, VScale = call.Int8.VScale }
                : default,
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

    /// <summary>What the kernels see of a block mask (its kinds pinned by the caller) and a score functor.</summary>
    private static unsafe FlexMods<TMask, TScore> Mods<TMask, TScore>(BlockMask<TMask>? blockMask, TScore scoreMod, BlockKind* kinds)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        blockMask is null
            ? FlexMods<TMask, TScore>.None(scoreMod)
            : new FlexMods<TMask, TScore>(blockMask.Mask, scoreMod, kinds, blockMask.Grid);
}
