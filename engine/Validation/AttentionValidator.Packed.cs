using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>A validated packed call: heads, head dimensions, the sequence count and token totals, and the resolved scale.</summary>
internal readonly record struct PackedShape(int QueryHeads, int KvHeads, int HeadDim, int ValueDim, int Sequences, int TotalQueries, int TotalKeys, float Scale);

internal static partial class AttentionValidator
{
    private static readonly string[] PackedDims = ["tokens", "heads", "headDim"];

    /// <summary>Checks a <see cref="PackedAttention.Forward{T}"/> call; every message names the tensor or option, the dimension and the values.</summary>
    internal static PackedShape ValidatePacked<T>(scoped in ReadOnlyTensorSpan<T> q, scoped in ReadOnlyTensorSpan<T> k, scoped in ReadOnlyTensorSpan<T> v,
        scoped in TensorSpan<T> output, ReadOnlySpan<int> queryOffsets, ReadOnlySpan<int> keyOffsets, scoped in AttentionOptions options) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        Span<int> ql = stackalloc int[3], kl = stackalloc int[3], vl = stackalloc int[3], ol = stackalloc int[3];
        CheckMergeLengths(q.Lengths, PackedDims, "q", ql);
        CheckMergeLengths(k.Lengths, PackedDims, "k", kl);
        CheckMergeLengths(v.Lengths, PackedDims, "v", vl);
        CheckMergeLengths(output.Lengths, PackedDims, "output", ol);
        if (ql[1] % kl[1] != 0)
            throw new ArgumentException($"q has {ql[1]} heads and k has {kl[1]}; query heads must be a multiple of key/value heads (GQA).", "k");
        if (kl[2] != ql[2]) throw new ArgumentException($"k dimension 2 (headDim) is {kl[2]}; expected {ql[2]} to match q.", "k");
        if (vl[0] != kl[0]) throw new ArgumentException($"v dimension 0 (tokens) is {vl[0]}; expected {kl[0]} to match k.", "v");
        if (vl[1] != kl[1]) throw new ArgumentException($"v dimension 1 (heads) is {vl[1]}; expected {kl[1]} to match k.", "v");
        if (ol[0] != ql[0]) throw new ArgumentException($"output dimension 0 (tokens) is {ol[0]}; expected {ql[0]} to match q.", "output");
        if (ol[1] != ql[1]) throw new ArgumentException($"output dimension 1 (heads) is {ol[1]}; expected {ql[1]} to match q.", "output");
        if (ol[2] != vl[2]) throw new ArgumentException($"output dimension 2 (headDim) is {ol[2]}; expected {vl[2]} to match v.", "output");
        if ((long)ql[1] * ql[0] > int.MaxValue)
            throw new ArgumentException($"q has {ql[1]} heads x {ql[0]} tokens; at most {int.MaxValue} query rows (heads x tokens) are supported.", "q");
        if ((long)kl[1] * kl[0] > int.MaxValue)
            throw new ArgumentException($"k has {kl[1]} heads x {kl[0]} tokens; at most {int.MaxValue} key rows (heads x tokens) are supported.", "k");

        CheckOffsets(queryOffsets, ql[0], "queryOffsets", "q");
        CheckOffsets(keyOffsets, kl[0], "keyOffsets", "k");
        if (keyOffsets.Length != queryOffsets.Length)
            throw new ArgumentException(
                $"keyOffsets has {keyOffsets.Length} entries and queryOffsets {queryOffsets.Length}; both need one per sequence plus one.", "keyOffsets");

        // Packed calls are positional: what would need per-sequence [B, H, Lq, Lk] tensors is refused by name.
        if (options.Bias.Rank != 0)
            throw new NotSupportedException("options.Bias is not supported by packed calls; use FlexAttention with a DocumentMask over the packed sequences for a bias.");
        if (options.KeepMask.Rank != 0)
            throw new NotSupportedException("options.KeepMask is not supported by packed calls; use FlexAttention with a DocumentMask over the packed sequences for a keep-mask.");
        if (options.ReturnWeights)
            throw new NotSupportedException("options.Weights is not supported by packed calls; run the sequence as its own call to inspect its weights.");
        if (options.Dropout.IsActive)
            throw new NotSupportedException("options.Dropout is not supported by packed calls (they have no backward pass to train with); run Attention.Forward per sequence for dropout.");
        CheckScorePrecision(options.ScorePrecision);
        int threads = options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;
        if (threads < 1)
            throw new ArgumentException($"MaxDegreeOfParallelism is {threads}; expected at least 1 (or null for all cores).", "options.MaxDegreeOfParallelism");
        float scale = ResolveScale(options, new AttentionShape(1, ql[1], kl[1], 1, 1, ql[2], vl[2]));

        CheckNonOverlapping(output.Lengths, output.Strides, nameof(output));
        var outputRegion = MemoryRegion.Of(output, "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(q, "q"), "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(k, "k"), "output");
        outputRegion.ThrowIfOverlaps(MemoryRegion.Of(v, "v"), "output");
        if (options.ReturnLse)
        {
            ExpectMergeLengths(options.Lse.Lengths, [ql[1], ql[0]], ["heads", "tokens"], "options.Lse", "q ([queryHeads, tokens], FlashAttention's varlen layout)");
            CheckNonOverlapping(options.Lse.Lengths, options.Lse.Strides, "options.Lse");
            var lseRegion = MemoryRegion.Of(options.Lse, "options.Lse");
            lseRegion.ThrowIfOverlaps(MemoryRegion.Of(q, "q"), "options.Lse");
            lseRegion.ThrowIfOverlaps(MemoryRegion.Of(k, "k"), "options.Lse");
            lseRegion.ThrowIfOverlaps(MemoryRegion.Of(v, "v"), "options.Lse");
            lseRegion.ThrowIfOverlaps(outputRegion, "options.Lse");
        }
        return new PackedShape(ql[1], kl[1], ql[2], vl[2], queryOffsets.Length - 1, ql[0], kl[0], scale);
    }

    /// <summary>Cumulative sequence starts (FlashAttention's cu_seqlens): 0, then non-decreasing, ending at the tensor's tokens.</summary>
    private static void CheckOffsets(ReadOnlySpan<int> offsets, int tokens, string name, string tensor)
    {
        if (offsets.Length < 2)
            throw new ArgumentException($"{name} has {offsets.Length} entries; expected at least 2 (0, then each sequence's end).", name);
        if (offsets[0] != 0) throw new ArgumentException($"{name}[0] is {offsets[0]}; expected 0.", name);
        for (int n = 1; n < offsets.Length; n++)
            if (offsets[n] < offsets[n - 1])
                throw new ArgumentException($"{name}[{n}] is {offsets[n]}, below {name}[{n - 1}] = {offsets[n - 1]}; offsets must not decrease.", name);
        if (offsets[^1] != tokens)
            throw new ArgumentException(
                $"{name}[{offsets.Length - 1}] is {offsets[^1]}; expected {tokens}, the tokens of {tensor} (dimension 0).", name);
    }
}
