using System.Numerics.Tensors;
using AttentionEngine.Kernels;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// A prefill followed by decode steps through a <see cref="KeyValueCache{T}"/> against one causal forward of the float64
/// reference layer over the whole sequence, with the tolerance rule (for a 16-bit cache the naive yardstick stores Q,
/// K, V and the attention output in that type too), over drawn layers (GQA, rotary, gates), batches, prefill
/// lengths and decode chunk sizes.
/// </summary>
public class KeyValueCacheProperties
{
    public sealed record DecodeSpec(int Heads, int KvHeads, int HeadDim, bool Bias, RotaryLayout? Rotary, GateKind? Gate, int Batch, int Length, int Prefill, int Chunk, int Threads, int Seed)
    {
        public override string ToString() =>
            $"H{Heads} KV{KvHeads} D{HeadDim}{(Bias ? " bias" : "")} rope:{Rotary?.ToString() ?? "none"} gate:{Gate?.ToString() ?? "none"} B{Batch} L{Length} prefill {Prefill} chunk {Chunk} threads {Threads} seed {Seed}";

        public MultiHeadAttentionConfig Config => new()
        {
            EmbedDim = Heads * HeadDim, Heads = Heads, KvHeads = KvHeads, Bias = Bias,
            Rotary = Rotary is { } layout ? new RotaryEmbedding(layout) : null,
            Gate = Gate is { } kind ? new OutputGate(kind) : null,
        };
    }

    private static readonly Gen<DecodeSpec> Specs =
        from heads in Gen.Elements(1, 2, 4)
        from kv in Gen.Elements(Enumerable.Range(1, heads).Where(k => heads % k == 0).ToArray())
        from d in Gen.Elements(4, 8, 16)
        from bias in Gen.Elements(false, true)
        from rotary in Gen.Elements<RotaryLayout?>(null, RotaryLayout.Interleaved, RotaryLayout.HalfSplit)
        from gate in Gen.Elements<GateKind?>(null, GateKind.Headwise)
        from batch in Gen.Choose(1, 3)
        from length in Gen.Choose(1, 40)
        from prefill in Gen.Choose(1, length)
        from chunk in Gen.Elements(1, 1, 2, 3, 12) // 12: past the decode kernel, a fragmented paged sequence is gathered
        from threads in Gen.Choose(1, 2)
        from seed in Gen.Choose(0, int.MaxValue)
        select new DecodeSpec(heads, kv, d, bias, rotary, gate, batch, length, prefill, chunk, threads, seed);

    [Fact] public void Float_cache() => Prop.ForAll(Specs.ToArbitrary(), spec => Check<float>(spec, paged: 0)).Check(Config.QuickThrowOnFailure.WithMaxTest(60));
    [Fact] public void BFloat16_cache() => Prop.ForAll(Specs.ToArbitrary(), spec => Check<BFloat16>(spec, paged: 0)).Check(Config.QuickThrowOnFailure.WithMaxTest(40));

    /// <summary>Pages of 1 to 9 tokens: sequences span many pages, page edges fall anywhere in a decode chunk.</summary>
    [Fact]
    public void Float_paged_cache() =>
        Prop.ForAll(Specs.ToArbitrary(), Gen.Choose(1, 9).ToArbitrary(), (spec, pageSize) => Check<float>(spec, pageSize)).Check(Config.QuickThrowOnFailure.WithMaxTest(60));

    [Fact]
    public void BFloat16_paged_cache() =>
        Prop.ForAll(Specs.ToArbitrary(), Gen.Choose(1, 9).ToArbitrary(), (spec, pageSize) => Check<BFloat16>(spec, pageSize)).Check(Config.QuickThrowOnFailure.WithMaxTest(40));

    /// <param name="paged">0 for a contiguous cache, else the page size of a paged one (with no spare pages).</param>
    internal static void Check<TCache>(DecodeSpec spec, int paged) where TCache : unmanaged
    {
        var random = new Random(spec.Seed);
        var config = spec.Config;
        int e = config.EmbedDim, hd = spec.Heads * spec.HeadDim, kv = spec.KvHeads * spec.HeadDim;
        double[,] Matrix(int rows, int columns) => LayerData.Matrix<float>(rows, columns, 1 / Math.Sqrt(columns), random);
        double[] Vector(int n) => spec.Bias ? LayerData.Vector<float>(n, random) : new double[n];
        Func<double, double> storage = x => ElementTypes.ToDouble(ElementTypes.FromDouble<TCache>(x));
        var reference = new ReferenceLayer(config, x => x)
        {
            Wq = Matrix(hd, e), Wk = Matrix(kv, e), Wv = Matrix(kv, e), Wo = Matrix(e, hd), Bq = Vector(hd), Bk = Vector(kv), Bv = Vector(kv), Bo = Vector(e),
            Wg = config.GateWidth > 0 ? Matrix(config.GateWidth, e) : null, Bg = config.GateWidth > 0 ? Vector(config.GateWidth) : null,
        };
        var naive = new ReferenceLayer(config, x => (float)x)
        {
            Wq = reference.Wq, Wk = reference.Wk, Wv = reference.Wv, Wo = reference.Wo, Bq = reference.Bq, Bk = reference.Bk, Bv = reference.Bv,
            Bo = reference.Bo, Wg = reference.Wg, Bg = reference.Bg, Storage = storage,
            // A 16-bit paged cache stores each page's partial output before the merge: the yardstick does the same.
            PageSize = typeof(TCache) == typeof(float) ? 0 : paged,
        };
        using var layer = new MultiHeadAttention<float>(config);
        float[] W(double[,] m) => LayerData.Elements<float>(m);
        float[] B(double[] v) => spec.Bias ? v.Select(x => (float)x).ToArray() : [];
        layer.Load(new ReadOnlyTensorSpan<float>(W(reference.Wq), [hd, e], []), new ReadOnlyTensorSpan<float>(W(reference.Wk), [kv, e], []),
            new ReadOnlyTensorSpan<float>(W(reference.Wv), [kv, e], []), new ReadOnlyTensorSpan<float>(W(reference.Wo), [e, hd], []),
            B(reference.Bq), B(reference.Bk), B(reference.Bv), B(reference.Bo));
        if (config.GateWidth > 0) layer.LoadGate(new ReadOnlyTensorSpan<float>(W(reference.Wg!), [config.GateWidth, e], []), B(reference.Bg!));

        var input = LayerData.RandomSequences<float>(spec.Batch, spec.Length, e, false, random);
        var inputValues = input.Memory;
        var output = new float[spec.Batch * spec.Length * e];
        using var contiguous = paged == 0 ? new KeyValueCache<TCache>(spec.Batch, spec.KvHeads, spec.HeadDim, spec.Length) : null;
        using var pages = paged == 0 ? null : new PagedKeyValueCache<TCache>(spec.Batch * ((spec.Length + paged - 1) / paged), paged, spec.Batch, spec.KvHeads, spec.HeadDim);
        for (int start = 0; start < spec.Length;)
        {
            int count = start == 0 ? spec.Prefill : Math.Min(spec.Chunk, spec.Length - start);
            var chunk = TensorLayout.ReadOnlyView<float>(inputValues.AsSpan(start * e), [spec.Batch, count, e], [spec.Length * e, e, 1]);
            var chunkOutput = TensorLayout.View(output.AsSpan(start * e), [spec.Batch, count, e], [spec.Length * e, e, 1]);
            var options = new MultiHeadAttentionOptions { MaxDegreeOfParallelism = spec.Threads };
            if (pages is null) layer.Forward(chunk, chunkOutput, contiguous!, options);
            else layer.Forward(chunk, chunkOutput, pages, options);
            start += count;
        }
        for (int b = 0; b < spec.Batch; b++) Assert.Equal(spec.Length, pages?.Length(b) ?? contiguous!.Length(b));
        if (pages is not null) Assert.Equal(0, pages.FreePages);

        var oracle = reference.Forward(input.Values, input.Values, input.Values, causal: true, null, 0, 0, null);
        var plain = naive.Forward(input.Values, input.Values, input.Values, causal: true, null, 0, 0, null);
        var report = ToleranceRule.Check<float>(output.Select(x => (double)x).ToArray(), oracle.Cast<double>().ToArray(), plain.Cast<double>().ToArray());
        Assert.True(report.Passed, $"{spec} {ElementTypes.ShortName<TCache>()} {(paged == 0 ? "contiguous" : $"paged ({paged}-token pages)")} cache: {report}");
    }
}
