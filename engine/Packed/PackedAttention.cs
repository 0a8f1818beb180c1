using System.Buffers;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Cpu.Int8Scores;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// Attention over a batch of sequences of different lengths packed end to end (FlashAttention's varlen API): q is
/// [totalQueries, queryHeads, headDim], k and v are [totalKeys, kvHeads, headDim | valueDim], any strides, and sequence
/// s owns query tokens queryOffsets[s]..queryOffsets[s+1] and key tokens keyOffsets[s]..keyOffsets[s+1] (cu_seqlens).
/// Each sequence attends only to its own keys; nothing is padded or computed across sequences. Runs on the CPU backend
/// as one set of row tiles over all sequences; every sequence gets the same bits as its own dense call.
/// </summary>
public static class PackedAttention
{
    /// <summary>Computes attention of every packed sequence.</summary>
    /// <param name="q">queries [totalQueries, queryHeads, headDim]</param>
    /// <param name="k">keys [totalKeys, kvHeads, headDim]; queryHeads must be a multiple of kvHeads</param>
    /// <param name="v">values [totalKeys, kvHeads, valueDim]</param>
    /// <param name="output">destination [totalQueries, queryHeads, valueDim]; must not overlap any input</param>
    /// <param name="queryOffsets">sequence starts in q, then its total: 0 = o[0] ≤ o[1] ≤ … ≤ o[n] = totalQueries</param>
    /// <param name="keyOffsets">sequence starts in k and v, likewise; as many entries as queryOffsets</param>
    /// <param name="options">scale, a positional mask (causal and windows align per sequence, with its own Lq and Lk),
    /// LSE as [queryHeads, totalQueries], threads, <see cref="AttentionOptions.ScorePrecision"/> (int8 scores smooth and
    /// quantise each sequence's keys on their own). Bias, keep-mask, weights and dropout are refused (NotSupportedException).</param>
    /// <remarks>A sequence with queries but no keys outputs zeros and LSE −infinity, as a fully masked row does.</remarks>
    /// <exception cref="ArgumentException">an invalid shape, offset, stride, option or aliasing; the message names it.</exception>
    /// <exception cref="NotSupportedException">an option packed calls do not take.</exception>
    public static unsafe void Forward<T>(ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        ReadOnlySpan<int> queryOffsets, ReadOnlySpan<int> keyOffsets, scoped in AttentionOptions options = default) where T : unmanaged
    {
        var shape = AttentionValidator.ValidatePacked(q, k, v, output, queryOffsets, keyOffsets, options);
        var mask = options.Mask ?? Mask.None;
        var jobs = ArrayPool<CpuAttentionJob<T>>.Shared.Rent(shape.Sequences);
        try
        {
            fixed (T* qBase = &Unsafe.AsRef(in q.GetPinnableReference()))
            fixed (T* kBase = &Unsafe.AsRef(in k.GetPinnableReference()))
            fixed (T* vBase = &Unsafe.AsRef(in v.GetPinnableReference()))
            fixed (T* outputBase = &output.GetPinnableReference())
            fixed (float* lseBase = &options.Lse.GetPinnableReference())
            {
                ReadOnlySpan<nint> qs = q.Strides, ks = k.Strides, vs = v.Strides, os = output.Strides;
                ReadOnlySpan<nint> ls = options.ReturnLse ? options.Lse.Strides : [0, 0];
                int count = 0;
                for (int s = 0; s < shape.Sequences; s++)
                {
                    int firstQuery = queryOffsets[s], queries = queryOffsets[s + 1] - firstQuery;
                    int firstKey = keyOffsets[s], keys = keyOffsets[s + 1] - firstKey;
                    if (queries == 0) continue;
                    if (keys == 0)
                    {
                        ClearSequence(output, options.Lse, options.ReturnLse, firstQuery, queries, shape);
                        continue;
                    }
                    // One sequence as a batch-1 [1, H, L, D] view: heads and tokens swap places in the strides.
                    jobs[count++] = new CpuAttentionJob<T>
                    {
                        Batch = 1, QueryHeads = shape.QueryHeads, KvHeads = shape.KvHeads, QueryLength = queries, KeyLength = keys,
                        HeadDim = shape.HeadDim, ValueDim = shape.ValueDim, Scale = shape.Scale, Band = mask.Resolve(queries, keys),
                        Q = new RawStrided4<T>(qBase + firstQuery * qs[0], 1, shape.QueryHeads, queries, shape.HeadDim, 0, qs[1], qs[0], qs[2]),
                        K = new RawStrided4<T>(kBase + firstKey * ks[0], 1, shape.KvHeads, keys, shape.HeadDim, 0, ks[1], ks[0], ks[2]),
                        V = new RawStrided4<T>(vBase + firstKey * vs[0], 1, shape.KvHeads, keys, shape.ValueDim, 0, vs[1], vs[0], vs[2]),
                        Output = new RawStrided4<T>(outputBase + firstQuery * os[0], 1, shape.QueryHeads, queries, shape.ValueDim, 0, os[1], os[0], os[2]),
                        Lse = options.ReturnLse
                            ? new RawStrided4<float>(lseBase + firstQuery * ls[1], 1, shape.QueryHeads, queries, 1, 0, ls[0], ls[1], 0)
                            : default,
                        Int8Scores = new Int8ScoreKeys { IsRequested = options.ScorePrecision == ScorePrecision.Int8 },
                    };
                }
                if (count > 0)
                    CpuForward.RunMany(new ReadOnlySpan<CpuAttentionJob<T>>(jobs, 0, count), FlexMods<KeepAll, IdentityScore>.None(default), CpuIsa.Auto,
                        options.MaxDegreeOfParallelism ?? Environment.ProcessorCount);
            }
        }
        finally
        {
            ArrayPool<CpuAttentionJob<T>>.Shared.Return(jobs, clearArray: true); // no pointers left behind
        }
    }

    /// <summary>A sequence with no keys: zeros, and LSE −infinity.</summary>
    private static void ClearSequence<T>(TensorSpan<T> output, TensorSpan<float> lse, bool returnLse, int firstQuery, int queries, PackedShape shape)
        where T : unmanaged
    {
        for (int i = firstQuery; i < firstQuery + queries; i++)
        for (int h = 0; h < shape.QueryHeads; h++)
        {
            for (int x = 0; x < shape.ValueDim; x++) output[i, h, x] = default;
            if (returnLse) lse[h, i] = float.NegativeInfinity;
        }
    }
}
