using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// The one validation path of every backend. Every rejection is an <see cref="ArgumentException"/> whose
/// ParamName is the offending tensor and whose message names the dimension, the value seen and the value expected.
/// </summary>
internal static partial class AttentionValidator
{
    private static readonly string[] InputDims = ["batch", "heads", "seq", "headDim"];
    private static readonly string[] MaskDims = ["batch", "heads", "queries", "keys"];

    /// <summary>Checks a call and resolves its options.</summary>
    /// <exception cref="ArgumentException">a shape, stride, option or aliasing error; the message says which.</exception>
    /// <exception cref="NotSupportedException">T is not float, Half or BFloat16.</exception>
    public static AttentionCall<T> Validate<T>(
        scoped in ReadOnlyTensorSpan<T> q, scoped in ReadOnlyTensorSpan<T> k, scoped in ReadOnlyTensorSpan<T> v,
        scoped in TensorSpan<T> output, scoped in AttentionOptions options) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        // Stack-only bookkeeping throughout: validating a call allocates nothing (steady-state calls are garbage-free).
        var shape = ValidateShapes(q.Lengths, k.Lengths, v.Lengths, output.Lengths);
        var inputs = new InputRegions(MemoryRegion.Of(q, "q"), MemoryRegion.Of(k, "k"), MemoryRegion.Of(v, "v"), default, default);
        return Complete(shape, q, View(k), View(v), default, output, options, inputs);
    }

    /// <summary>
    /// Checks a call whose keys and values are int8 with per-token scales: values as k and v are, scales
    /// [B, Hkv, Lk] with any strides, each finite and in [0, <see cref="QuantizedTensor.MaxScale"/>].
    /// </summary>
    /// <exception cref="ArgumentException">a shape, stride, scale, option or aliasing error; the message says which.</exception>
    public static AttentionCall<T> ValidateQuantized<T>(
        scoped in ReadOnlyTensorSpan<T> q, scoped in QuantizedTensorSpan k, scoped in QuantizedTensorSpan v,
        scoped in TensorSpan<T> output, scoped in AttentionOptions options) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        var shape = ValidateShapes(q.Lengths, k.Values.Lengths, v.Values.Lengths, output.Lengths);
        var kScale = ScaleView(k.Scales, shape, "k.Scales");
        var vScale = ScaleView(v.Scales, shape, "v.Scales");
        var inputs = new InputRegions(MemoryRegion.Of(q, "q"), MemoryRegion.Of(k.Values, "k.Values"), MemoryRegion.Of(v.Values, "v.Values"),
            MemoryRegion.Of(k.Scales, "k.Scales"), MemoryRegion.Of(v.Scales, "v.Scales"));
        return Complete(shape, q, default, default, new QuantizedKeyValues(View(k.Values), View(v.Values), kScale, vScale), output, options, inputs);
    }

    /// <summary>Scales [B, Hkv, Lk] as a [B, Hkv, Lk, 1] view, every one finite and in [0, MaxScale].</summary>
    private static ReadOnlyStrided4<float> ScaleView(scoped in ReadOnlyTensorSpan<float> scales, AttentionShape shape, string name)
    {
        Span<int> expected = [shape.Batch, shape.KvHeads, shape.KeyLength];
        var lengths = scales.Lengths;
        if (lengths.Length != 3)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank 3 [batch, kvHeads, tokens] = [{Join(expected)}].", name);
        for (int d = 0; d < 3; d++)
            if (lengths[d] != expected[d])
                throw new ArgumentException(
                    $"{name} dimension {d} ({InputDims[d]}) is {lengths[d]}; expected {expected[d]} ([batch, kvHeads, tokens] = [{Join(expected)}]).", name);
        var s = scales.Strides;
        var view = new ReadOnlyStrided4<float>(in scales.GetPinnableReference(), [shape.Batch, shape.KvHeads, shape.KeyLength, 1], [s[0], s[1], s[2], 0]);
        // Every call checks every scale (a decode step over a 32k-token cache reads 262,144 of them): in vectors over each
        // (batch, head)'s contiguous run of tokens, element by element only to name the first bad one.
        if (s[2] == 1 && ScaleRowsInRange(view, shape)) return view;
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.KvHeads; h++)
        for (int j = 0; j < shape.KeyLength; j++)
        {
            float scale = view[b, h, j, 0];
            if (!(scale >= 0 && scale <= QuantizedTensor.MaxScale))
                throw new ArgumentException(
                    $"{name}[{b}, {h}, {j}] is {scale}; a scale must be finite and in [0, {QuantizedTensor.MaxScale}] so every dequantised element is finite.", name);
        }
        return view;
    }

    /// <summary>True when every (batch, head)'s contiguous scales are in [0, MaxScale] (Min and Max propagate NaN, which fails).</summary>
    private static bool ScaleRowsInRange(in ReadOnlyStrided4<float> view, AttentionShape shape)
    {
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.KvHeads; h++)
        {
            var row = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(
                in Unsafe.Add(ref Unsafe.AsRef(in view.Base), view.Offset(b, h, 0, 0)), shape.KeyLength);
            if (!(TensorPrimitives.Min(row) >= 0 && TensorPrimitives.Max(row) <= QuantizedTensor.MaxScale)) return false;
        }
        return true;
    }

    /// <summary>The options and destinations, common to every kind of call.</summary>
    private static AttentionCall<T> Complete<T>(
        AttentionShape shape, scoped in ReadOnlyTensorSpan<T> q, ReadOnlyStrided4<T> k, ReadOnlyStrided4<T> v, QuantizedKeyValues quantized,
        scoped in TensorSpan<T> output, scoped in AttentionOptions options, InputRegions inputs) where T : unmanaged
    {
        Span<int> ol = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim];
        CheckNonOverlapping(output.Lengths, output.Strides, nameof(output));

        float scale = ResolveScale(options, shape);

        int threads = options.MaxDegreeOfParallelism ?? Environment.ProcessorCount;
        if (threads < 1)
            throw new ArgumentException($"MaxDegreeOfParallelism is {threads}; expected at least 1 (or null for all cores).", "options.MaxDegreeOfParallelism");

        CheckScorePrecision(options.ScorePrecision);

        var mask = options.Mask ?? Mask.None;
        Span<int> scoreShape = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength];
        var bias = BroadcastMask(options.Bias, scoreShape, "options.Bias");
        var keep = BroadcastMask(options.KeepMask, scoreShape, "options.KeepMask");

        var lse = default(Strided4<float>);
        if (options.ReturnLse) lse = HostLseView(options, shape);

        var weights = default(Strided4<float>);
        if (options.ReturnWeights)
        {
            var lengths = options.Weights.Lengths;
            if (lengths.Length != 4)
                throw new ArgumentException(
                    $"options.Weights has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank 4 [batch, queryHeads, Lq, Lk] = [{Join(scoreShape)}].", "options.Weights");
            for (int d = 0; d < 4; d++)
                if (lengths[d] != scoreShape[d])
                    throw new ArgumentException(
                        $"options.Weights dimension {d} ({MaskDims[d]}) is {lengths[d]}; expected {scoreShape[d]} ([batch, queryHeads, Lq, Lk] = [{Join(scoreShape)}]).", "options.Weights");
            CheckNonOverlapping(lengths, options.Weights.Strides, "options.Weights");
            var s = options.Weights.Strides;
            weights = new Strided4<float>(ref options.Weights.GetPinnableReference(), scoreShape, [s[0], s[1], s[2], s[3]]);
        }

        // Outputs must not share memory with inputs or with each other: kernels read while they write.
        var outputRegion = MemoryRegion.Of(output);
        var lseRegion = options.ReturnLse ? MemoryRegion.Of(options.Lse) : default;
        var weightsRegion = options.ReturnWeights ? MemoryRegion.Of(options.Weights) : default;
        ThrowIfOverlapsAnyInput(outputRegion, "output", inputs, options);
        ThrowIfOverlapsAnyInput(lseRegion, "options.Lse", inputs, options);
        ThrowIfOverlapsAnyInput(weightsRegion, "options.Weights", inputs, options);
        lseRegion.ThrowIfOverlaps(outputRegion with { Name = "output" }, "options.Lse");
        weightsRegion.ThrowIfOverlaps(outputRegion with { Name = "output" }, "options.Weights");
        weightsRegion.ThrowIfOverlaps(lseRegion with { Name = "options.Lse" }, "options.Weights");

        return new AttentionCall<T>(
            shape, scale, mask, mask.Resolve(shape.QueryLength, shape.KeyLength),
            View(q), k, v,
            new Strided4<T>(ref output.GetPinnableReference(), ol, output.Strides),
            bias, keep, lse, weights, threads, options.Dropout, quantized, options.ScorePrecision);
    }

    /// <summary>An undefined <see cref="ScorePrecision"/> value is an argument error, whatever the entry point.</summary>
    internal static void CheckScorePrecision(ScorePrecision precision)
    {
        if (precision is not (ScorePrecision.Float or ScorePrecision.Int8))
            throw new ArgumentException(
                $"options.ScorePrecision is {(int)precision}; expected ScorePrecision.Float (0) or ScorePrecision.Int8 (1).", "options.ScorePrecision");
    }

    /// <summary>The call's shape from the four tensors' lengths, or an exception naming the tensor and dimension at fault.</summary>
    internal static AttentionShape ValidateShapes(ReadOnlySpan<nint> qLengths, ReadOnlySpan<nint> kLengths, ReadOnlySpan<nint> vLengths, ReadOnlySpan<nint> outputLengths)
    {
        Span<int> ql = stackalloc int[4], kl = stackalloc int[4], vl = stackalloc int[4], ol = stackalloc int[4];
        CheckRank4(qLengths, "q", ql);
        CheckRank4(kLengths, "k", kl);
        CheckRank4(vLengths, "v", vl);
        CheckRank4(outputLengths, "output", ol);

        ExpectEqual(kl, 0, ql[0], "k", "q");
        ExpectEqual(kl, 3, ql[3], "k", "q");
        ExpectEqual(vl, 0, kl[0], "v", "k");
        ExpectEqual(vl, 1, kl[1], "v", "k");
        ExpectEqual(vl, 2, kl[2], "v", "k");
        if (ql[1] % kl[1] != 0)
            throw new ArgumentException(
                $"q dimension 1 (heads) is {ql[1]}, which is not a multiple of k dimension 1 (heads) {kl[1]}; " +
                "grouped-query attention needs queryHeads % kvHeads == 0.", "q");
        // Rows are counted in 32 bits by the kernels' task indices (row tiles, key tiles, decode splits): refuse, by
        // name, the sizes past that rather than let an index wrap. Each bound is far beyond any tensor that fits memory
        // (2^31 rows of even one element each), but a broadcast (stride-0) K or V can reach it.
        long queryRows = (long)ql[0] * ql[1] * ql[2], keyRows = (long)kl[0] * kl[1] * kl[2];
        if (queryRows > int.MaxValue)
            throw new ArgumentException(
                $"q has batch × heads × seq = {ql[0]} × {ql[1]} × {ql[2]} = {queryRows} query rows; at most {int.MaxValue} are supported.", "q");
        if (keyRows > int.MaxValue)
            throw new ArgumentException(
                $"k has batch × heads × seq = {kl[0]} × {kl[1]} × {kl[2]} = {keyRows} key rows; at most {int.MaxValue} are supported.", "k");
        var shape = new AttentionShape(ql[0], ql[1], kl[1], ql[2], kl[2], ql[3], vl[3]);
        Span<int> expectedOutput = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim];
        for (int d = 0; d < 4; d++)
            if (ol[d] != expectedOutput[d])
                throw new ArgumentException(
                    $"output dimension {d} ({InputDims[d]}) is {ol[d]}; expected {expectedOutput[d]} " +
                    $"(output is [batch, queryHeads, Lq, valueDim] = [{Join(expectedOutput)}]).", "output");
        return shape;
    }

    /// <summary>options.Scale, or 1/sqrt(D); it must be finite.</summary>
    internal static float ResolveScale(scoped in AttentionOptions options, AttentionShape shape)
    {
        float scale = options.Scale ?? (float)(1.0 / Math.Sqrt(shape.HeadDim));
        if (!float.IsFinite(scale))
            throw new ArgumentException($"Scale is {scale}; expected a finite number.", "options.Scale");
        return scale;
    }

    /// <summary>options.Lse checked and viewed as [batch, queryHeads, Lq, 1].</summary>
    private static Strided4<float> HostLseView(scoped in AttentionOptions options, AttentionShape shape)
    {
        var lengths = options.Lse.Lengths;
        CheckLseLengths(lengths, shape, "options.Lse");
        CheckNonOverlapping(lengths, options.Lse.Strides, "options.Lse");
        var s = options.Lse.Strides;
        return new Strided4<float>(ref options.Lse.GetPinnableReference(), [shape.Batch, shape.QueryHeads, shape.QueryLength, 1], [s[0], s[1], s[2], 0]);
    }

    /// <summary>An LSE destination is [batch, queryHeads, Lq].</summary>
    internal static void CheckLseLengths(ReadOnlySpan<nint> lengths, AttentionShape shape, string name)
    {
        Span<int> expected = [shape.Batch, shape.QueryHeads, shape.QueryLength];
        if (lengths.Length != 3)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank 3 [batch, queryHeads, Lq] = [{Join(expected)}].", name);
        for (int d = 0; d < 3; d++)
            if (lengths[d] != expected[d])
                throw new ArgumentException(
                    $"{name} dimension {d} is {lengths[d]}; expected {expected[d]} ([batch, queryHeads, Lq] = [{Join(expected)}]).", name);
    }

    /// <summary>A block mask must be built for this call's Lq and Lk, and for its batch and heads (or broadcast: 1).</summary>
    public static void ValidateBlockMask<TMask>(BlockMask<TMask> blockMask, AttentionShape shape) where TMask : struct, IMaskMod
    {
        ArgumentNullException.ThrowIfNull(blockMask);
        void Expect(string dimension, int actual, int expected, bool broadcastable)
        {
            if (actual == expected || (broadcastable && actual == 1)) return;
            throw new ArgumentException(
                $"blockMask {dimension} is {actual}; expected {(broadcastable ? $"1 or {expected}" : expected.ToString())} " +
                $"for this call (batch {shape.Batch}, queryHeads {shape.QueryHeads}, Lq {shape.QueryLength}, Lk {shape.KeyLength}).", nameof(blockMask));
        }
        Expect("batch", blockMask.Batch, shape.Batch, true);
        Expect("heads", blockMask.Heads, shape.QueryHeads, true);
        Expect("queryLength", blockMask.QueryLength, shape.QueryLength, false);
        Expect("keyLength", blockMask.KeyLength, shape.KeyLength, false);
        // The mask functor runs in partial blocks at the call's own batch and head indices.
        FunctorShape.ThrowIfIncompatible(blockMask.Mask, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength, "blockMask.Mask");
    }

    /// <summary>
    /// The functors of a FlexAttention call, before any kernel runs: the block mask as <see cref="ValidateBlockMask{TMask}"/>
    /// checks it, and the score functor against the call's shape (<see cref="IShapeCheckedFunctor"/>).
    /// </summary>
    public static void ValidateFunctors<TMask, TScore>(BlockMask<TMask>? blockMask, TScore scoreMod, AttentionShape shape)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        if (blockMask is not null) ValidateBlockMask(blockMask, shape);
        FunctorShape.ThrowIfIncompatible(scoreMod, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength, nameof(scoreMod));
    }

    /// <summary>The memory a call reads through its inputs (the scales only for int8 keys and values).</summary>
    private readonly ref struct InputRegions(MemoryRegion q, MemoryRegion k, MemoryRegion v, MemoryRegion kScales, MemoryRegion vScales)
    {
        public readonly MemoryRegion Q = q, K = k, V = v, KScales = kScales, VScales = vScales;
    }

    private static void ThrowIfOverlapsAnyInput(MemoryRegion written, string name, scoped in InputRegions inputs, scoped in AttentionOptions options)
    {
        written.ThrowIfOverlaps(inputs.Q, name);
        written.ThrowIfOverlaps(inputs.K, name);
        written.ThrowIfOverlaps(inputs.V, name);
        written.ThrowIfOverlaps(inputs.KScales, name);
        written.ThrowIfOverlaps(inputs.VScales, name);
        written.ThrowIfOverlaps(MemoryRegion.Of(options.Bias, "options.Bias"), name);
        written.ThrowIfOverlaps(MemoryRegion.Of(options.KeepMask, "options.KeepMask"), name);
    }

    private static ReadOnlyStrided4<T> View<T>(scoped in ReadOnlyTensorSpan<T> tensor)
    {
        var l = tensor.Lengths;
        return new ReadOnlyStrided4<T>(in tensor.GetPinnableReference(), [(int)l[0], (int)l[1], (int)l[2], (int)l[3]], tensor.Strides);
    }

    private static void CheckRank4(ReadOnlySpan<nint> lengths, string name, Span<int> result)
    {
        if (lengths.Length != 4)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank 4 [batch, heads, seq, headDim].", name);
        for (int d = 0; d < 4; d++)
        {
            if (lengths[d] < 1)
                throw new ArgumentException(
                    $"{name} dimension {d} ({InputDims[d]}) has length {lengths[d]}; every dimension must be at least 1.", name);
            if (lengths[d] > int.MaxValue)
                throw new ArgumentException(
                    $"{name} dimension {d} ({InputDims[d]}) has length {lengths[d]}; at most {int.MaxValue} is supported.", name);
            result[d] = (int)lengths[d];
        }
    }

    private static void ExpectEqual(ReadOnlySpan<int> lengths, int dim, int expected, string name, string other)
    {
        if (lengths[dim] != expected)
            throw new ArgumentException(
                $"{name} dimension {dim} ({InputDims[dim]}) is {lengths[dim]}; expected {expected} to match {other}.", name);
    }

    private static void CheckNonOverlapping(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, string name)
    {
        if (TensorLayout.IsNonOverlapping(lengths, strides)) return;
        throw new ArgumentException(
            $"{name} has overlapping elements (lengths [{Join(lengths)}], strides [{Join(strides)}]): " +
            "two positions would be written to the same memory. Give a destination whose elements are distinct.", name);
    }

    /// <summary>Right-aligns a mask of rank 1..4 against [B, Hq, Lq, Lk], each dimension full or 1 (broadcast).</summary>
    private static ReadOnlyStrided4<TMask> BroadcastMask<TMask>(scoped in ReadOnlyTensorSpan<TMask> mask, scoped ReadOnlySpan<int> target, string name)
    {
        if (mask.Rank == 0) return default; // only the default span means "none"; a zero-length one fails below
        var lengths = mask.Lengths;
        var strides = mask.Strides;
        if (lengths.Length is < 1 or > 4)
            throw new ArgumentException(
                $"{name} has rank {lengths.Length} with lengths [{Join(lengths)}]; expected rank 1 to 4 broadcastable to [batch, heads, Lq, Lk] = [{Join(target)}].", name);
        Span<nint> broadcastStrides = stackalloc nint[4];
        int shift = 4 - lengths.Length;
        for (int d = 0; d < 4; d++)
        {
            if (d < shift) { broadcastStrides[d] = 0; continue; }
            nint length = lengths[d - shift];
            if (length == target[d]) broadcastStrides[d] = strides[d - shift];
            else if (length == 1) broadcastStrides[d] = 0;
            else
                throw new ArgumentException(
                    $"{name} dimension {d - shift} ({MaskDims[d]}) is {length}; expected 1 or {target[d]} to broadcast " +
                    $"lengths [{Join(lengths)}] against [batch, heads, Lq, Lk] = [{Join(target)}].", name);
        }
        return new ReadOnlyStrided4<TMask>(in mask.GetPinnableReference(), target, broadcastStrides);
    }

    internal static string Join(ReadOnlySpan<nint> values) => string.Join(", ", values.ToArray());

    private static string Join(ReadOnlySpan<int> values) => string.Join(", ", values.ToArray());

    /// <summary>The elements of a strided tensor, as bytes relative to an arbitrary reference, for the overlap checks.</summary>
    private readonly ref struct MemoryRegion
    {
        private readonly ref byte _start;
        private readonly ElementSet _elements;
        private readonly bool _given;
        public string Name { get; init; }

        private MemoryRegion(ref byte start, ElementSet elements, string name)
        {
            _start = ref start;
            _elements = elements;
            _given = true;
            Name = name;
        }

        public static MemoryRegion Of<TElement>(scoped in ReadOnlyTensorSpan<TElement> tensor, string name = "") =>
            tensor.IsEmpty ? default
                : new(ref Unsafe.As<TElement, byte>(ref Unsafe.AsRef(in tensor.GetPinnableReference())),
                    ElementSet.Of(tensor.Lengths, tensor.Strides, Unsafe.SizeOf<TElement>()), name);

        public static MemoryRegion Of<TElement>(scoped in TensorSpan<TElement> tensor, string name = "") =>
            tensor.IsEmpty ? default
                : new(ref Unsafe.As<TElement, byte>(ref tensor.GetPinnableReference()),
                    ElementSet.Of(tensor.Lengths, tensor.Strides, Unsafe.SizeOf<TElement>()), name);

        /// <summary>
        /// Throws when an element of this region shares a byte with an element of <paramref name="other"/>. Exact, not
        /// by extents: interleaved views of one packed buffer (qkv-packed q/k/v or dQ/dK/dV) do not overlap.
        /// </summary>
        public void ThrowIfOverlaps(MemoryRegion other, string name)
        {
            if (!_given || !other._given) return;
            // Offset of other's start from ours; both refs are GC-tracked, so the difference is taken atomically.
            nint offset = Unsafe.ByteOffset(ref _start, ref other._start);
            if (_elements.Intersects(other._elements, offset))
                throw new ArgumentException(
                    $"{name} overlaps the memory of {other.Name}: some element of {name} shares memory with an element of " +
                    $"{other.Name}. Outputs must not share memory with inputs or with other outputs, because the kernels read while they write.", name);
        }
    }
}
