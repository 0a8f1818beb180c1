using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// The layer against the float64 reference layer (<see cref="ReferenceLayer"/>) with the one tolerance rule, over drawn
/// configurations: heads and KV heads (MHA, GQA, MQA), explicit head dims, biases or none, rotary (both layouts,
/// partial, position offsets), gates (headwise, elementwise, mixed), self- and cross-attention with their own key and
/// value widths, causal masks, key padding (whole sequences padded included), strided inputs, 1-2 threads, fp32 and
/// bf16 weights and activations.
/// </summary>
public class MultiHeadAttentionProperties
{
    public sealed record LayerSpec(
        int EmbedDim, int Heads, int KvHeads, int? HeadDim, int KeyDim, int ValueDim, bool Bias, RotaryLayout? Rotary, int RotaryDims,
        GateKind? Gate, bool[]? GatedHeads, bool Self, int Batch, int QueryLength, int KeyLength, bool Causal, bool Padding,
        long Offset, bool BatchMiddle, int Threads, int Seed, double Dropout = 0)
    {
        public AttentionDropout AttentionDropout => new(Dropout, (ulong)Seed, 1);

        public override string ToString() =>
            $"E{EmbedDim} H{Heads} KV{KvHeads} D{HeadDim?.ToString() ?? "auto"} kdim{KeyDim} vdim{ValueDim}{(Bias ? " bias" : "")} rope:{Rotary?.ToString() ?? "none"}/{RotaryDims} " +
            $"gate:{Gate?.ToString() ?? "none"}{(GatedHeads is null ? "" : "[" + string.Concat(GatedHeads.Select(g => g ? '1' : '0')) + "]")} {(Self ? "self" : "cross")} " +
            $"B{Batch} Lq{QueryLength} Lk{KeyLength}{(Causal ? " causal" : "")}{(Padding ? " padding" : "")} offset {Offset}{(BatchMiddle ? " [S,B,E] memory" : "")} threads {Threads} seed {Seed}{(Dropout > 0 ? $" dropout {Dropout}" : "")}";

        public MultiHeadAttentionConfig Config => new()
        {
            EmbedDim = EmbedDim, Heads = Heads, KvHeads = KvHeads, HeadDim = HeadDim, KeyDim = KeyDim, ValueDim = ValueDim, Bias = Bias,
            Rotary = Rotary is { } layout ? new RotaryEmbedding(layout, 10_000, RotaryDims) : null,
            Gate = Gate is { } kind ? new OutputGate(kind, GatedHeads) : null,
        };
    }

    private static readonly Gen<LayerSpec> Specs =
        from heads in Gen.Elements(1, 2, 3, 4, 6)
        from kvHeads in Gen.Elements(Enumerable.Range(1, heads).Where(k => heads % k == 0).ToArray())
        from headDim in Gen.Elements(2, 4, 6, 8, 16)
        from autoDim in Gen.Elements(false, true)
        from self in Gen.Elements(true, true, false)
        from keyDim in self ? Gen.Constant(heads * headDim) : Gen.Elements(heads * headDim, 5, 12)
        from valueDim in self ? Gen.Constant(heads * headDim) : Gen.Elements(keyDim, 7)
        from bias in Gen.Elements(false, true)
        from rotary in Gen.Elements<RotaryLayout?>(null, RotaryLayout.Interleaved, RotaryLayout.HalfSplit)
        from rotaryDims in Gen.Elements(headDim, Math.Max(2, headDim / 2 / 2 * 2))
        from gate in Gen.Elements<GateKind?>(null, GateKind.Headwise, GateKind.Elementwise)
        from mixed in Gen.ArrayOf(Gen.Elements(false, true), heads)
        from useMixed in Gen.Elements(false, true)
        from batch in Gen.Choose(1, 3)
        from lq in Gen.Frequency((3, Gen.Choose(1, 12)), (1, Gen.Choose(13, 70)))
        from lk in self ? Gen.Constant(lq) : Gen.Choose(1, 40)
        from causal in self ? Gen.Elements(false, true) : Gen.Constant(false)
        from padding in Gen.Elements(false, true)
        from offset in Gen.Elements(0L, 0L, 5L, 1000L)
        from batchMiddle in Gen.Elements(false, true)
        from threads in Gen.Choose(1, 2)
        from seed in Gen.Choose(0, int.MaxValue)
        from dropout in Gen.Elements(0.0, 0.0, 0.0, 0.2, 0.5)
        select new LayerSpec(heads * headDim, heads, kvHeads, autoDim ? null : headDim, keyDim, valueDim, bias, rotary, rotaryDims,
            gate, useMixed ? mixed : null, self, batch, lq, lk, causal, padding, offset, batchMiddle, threads, seed, dropout);

    private static void Verify<TWeight, T>(int cases) where TWeight : unmanaged where T : unmanaged =>
        Prop.ForAll(Specs.ToArbitrary(), spec => Check<TWeight, T>(spec)).Check(Config.QuickThrowOnFailure.WithMaxTest(cases));

    [Fact] public void Float_layers() => Verify<float, float>(120);
    [Fact] public void BFloat16_weights() => Verify<BFloat16, float>(40);
    [Fact] public void BFloat16_throughout() => Verify<BFloat16, BFloat16>(40);
    [Fact] public void Half_activations() => Verify<float, Half>(30);

    internal static void Check<TWeight, T>(LayerSpec spec) where TWeight : unmanaged where T : unmanaged
    {
        var random = new Random(spec.Seed);
        var config = spec.Config;
        int h = spec.Heads, kv = spec.KvHeads, d = spec.HeadDim ?? spec.EmbedDim / spec.Heads, e = spec.EmbedDim;
        int gateRows = config.GateWidth;
        double[,] Matrix(int rows, int columns) => LayerData.Matrix<TWeight>(rows, columns, 1 / Math.Sqrt(columns), random);
        double[] Vector(int n) => spec.Bias ? LayerData.Vector<TWeight>(n, random) : new double[n];
        var reference = new ReferenceLayer(config, x => x)
        {
            Wq = Matrix(h * d, e), Wk = Matrix(kv * d, spec.KeyDim), Wv = Matrix(kv * d, spec.ValueDim), Wo = Matrix(e, h * d),
            Bq = Vector(h * d), Bk = Vector(kv * d), Bv = Vector(kv * d), Bo = Vector(e),
            Wg = gateRows > 0 ? Matrix(gateRows, e) : null, Bg = gateRows > 0 ? Vector(gateRows) : null, Dropout = spec.AttentionDropout,
        };
        var naive = new ReferenceLayer(config, x => (float)x)
        {
            Wq = reference.Wq, Wk = reference.Wk, Wv = reference.Wv, Wo = reference.Wo, Bq = reference.Bq, Bk = reference.Bk, Bv = reference.Bv,
            Bo = reference.Bo, Wg = reference.Wg, Bg = reference.Bg, Dropout = spec.AttentionDropout,
        };
        using var layer = new MultiHeadAttention<TWeight>(config);
        TWeight[] W(double[,] m) => LayerData.Elements<TWeight>(m);
        TWeight[] B(double[] v) => spec.Bias ? v.Select(ElementTypes.FromDouble<TWeight>).ToArray() : [];
        layer.Load(Span(W(reference.Wq), h * d, e), Span(W(reference.Wk), kv * d, spec.KeyDim), Span(W(reference.Wv), kv * d, spec.ValueDim), Span(W(reference.Wo), e, h * d),
            B(reference.Bq), B(reference.Bk), B(reference.Bv), B(reference.Bo));
        if (gateRows > 0) layer.LoadGate(Span(W(reference.Wg!), gateRows, e), B(reference.Bg!));

        var query = LayerData.RandomSequences<T>(spec.Batch, spec.QueryLength, e, spec.BatchMiddle, random);
        var key = spec.Self ? query : LayerData.RandomSequences<T>(spec.Batch, spec.KeyLength, spec.KeyDim, spec.BatchMiddle, random);
        var value = spec.Self ? query : LayerData.RandomSequences<T>(spec.Batch, spec.KeyLength, spec.ValueDim, spec.BatchMiddle, random);
        var padding = spec.Padding ? LayerData.Padding(spec.Batch, spec.KeyLength, random) : null;
        var output = new T[spec.Batch * spec.QueryLength * e];
        var outputSpan = new TensorSpan<T>(output, [spec.Batch, spec.QueryLength, e], []);
        var options = new MultiHeadAttentionOptions
        {
            Mask = spec.Causal ? Mask.Causal(CausalAlignment.BottomRight) : null,
            KeyPadding = padding is null ? default : new ReadOnlyTensorSpan<bool>(padding.Cast<bool>().ToArray(), [spec.Batch, spec.KeyLength], []),
            PositionOffset = spec.Offset, KeyPositionOffset = spec.Self ? 0 : spec.Offset / 2, MaxDegreeOfParallelism = spec.Threads,
            Dropout = spec.AttentionDropout,
        };
        if (spec.Self) layer.Forward(query.Span, outputSpan, options);
        else layer.Forward(query.Span, key.Span, value.Span, outputSpan, options);

        long keyOffset = spec.Self ? spec.Offset : spec.Offset / 2;
        var oracle = reference.Forward(query.Values, key.Values, value.Values, spec.Causal, padding, spec.Offset, keyOffset, null);
        var plain = naive.Forward(query.Values, key.Values, value.Values, spec.Causal, padding, spec.Offset, keyOffset, null);
        var report = ToleranceRule.Check<T>(
            output.Select(ElementTypes.ToDouble).ToArray(), oracle.Cast<double>().ToArray(),
            plain.Cast<double>().Select(x => ElementTypes.ToDouble(ElementTypes.FromDouble<T>(x))).ToArray());
        Assert.True(report.Passed, $"{spec} {ElementTypes.ShortName<TWeight>()} weights, {ElementTypes.ShortName<T>()} activations: {report}");
    }

    private static ReadOnlyTensorSpan<TWeight> Span<TWeight>(TWeight[] values, int rows, int columns) => new(values, [rows, columns], []);
}
