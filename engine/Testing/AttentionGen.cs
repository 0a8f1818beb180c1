using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Testing;

/// <summary>Bounds of generated problems. The defaults are the issue's: odd sizes, every mask, hostile values.</summary>
public sealed record ProblemLimits
{
    /// <summary>Largest batch.</summary>
    public int MaxBatch { get; init; } = 3;
    /// <summary>Most query heads (key/value heads are drawn among its divisors).</summary>
    public int MaxQueryHeads { get; init; } = 8;
    /// <summary>Longest query and key sequence unless <see cref="MaxQueryLength"/> or <see cref="MaxKeyLength"/> says otherwise.</summary>
    public int MaxLength { get; init; } = 300;

    /// <summary>Longest query sequence; null means <see cref="MaxLength"/>.</summary>
    public int? MaxQueryLength { get; init; }

    /// <summary>Longest key sequence; null means <see cref="MaxLength"/>.</summary>
    public int? MaxKeyLength { get; init; }
    /// <summary>Largest head dimension (of Q/K and of V).</summary>
    public int MaxHeadDim { get; init; } = 256;

    /// <summary>
    /// Largest <see cref="ProblemSpec.Cost"/> generated: the rare problem with every size at its maximum is
    /// redrawn, so a suite's run time is set by its case count.
    /// </summary>
    public double MaxCost { get; init; } = 1.5e8;

    /// <summary>
    /// Whether the edge of the float range is drawn: scales that push scores there (1e30, float.MaxValue: scores
    /// saturate) and V at <see cref="ValueDistribution.NearRangeEdge"/> (averages of values whose sums overflow). Forward
    /// problems take them; gradients of such problems exceed the float range themselves, so gradient suites leave them out.
    /// </summary>
    public bool RangeEdge { get; init; } = true;

    /// <summary>
    /// Whether a fifth of the problems (chosen by their data seed, so the rest draw as without it) carry dropout, with
    /// p from {0.1, 0.3, 0.5, 0.9} and seed and offset from the data seed. Off by default: only backends whose
    /// <see cref="AttentionBackend.SupportsDropout"/> is true take such calls.
    /// </summary>
    public bool Dropout { get; init; }

    /// <summary>The default bounds: odd sizes up to 300 tokens and head dimension 256, every mask kind, hostile values.</summary>
    public static ProblemLimits Default { get; } = new();

    /// <summary>
    /// Decoding shapes: one to four queries against up to 2,600 keys, where kernels switch to their few-rows path
    /// and cut the keys into splits that must merge exactly.
    /// </summary>
    public static ProblemLimits Decode { get; } = new() { MaxQueryLength = 4, MaxKeyLength = 2600, MaxHeadDim = 160, MaxCost = 2e7 };
}

/// <summary>
/// FsCheck generators of attention problems, and a shrinker that walks a failure down to a small counterexample.
/// Use <see cref="Arbitrary"/> in <c>Prop.ForAll</c>, or <see cref="AttentionArbitraries"/> with <c>[Property]</c>.
/// </summary>
public static class AttentionGen
{
    /// <summary>Head dimensions real models use, and awkward ones, drawn half the time.</summary>
    public static IReadOnlyList<int> InterestingHeadDims { get; } = [1, 7, 32, 40, 59, 64, 80, 96, 111, 128, 256];

    /// <summary>A generator of problem specs within <paramref name="limits"/> (the defaults when null).</summary>
    public static Gen<ProblemSpec> Problems(ProblemLimits? limits = null)
    {
        var l = limits ?? ProblemLimits.Default;
        var dims = HeadDim(l);
        var spec =
            from batch in Gen.Choose(1, l.MaxBatch)
            from queryHeads in Gen.Choose(1, l.MaxQueryHeads)
            from kvHeads in Gen.Elements(Divisors(queryHeads))
            from lq in Length(l.MaxQueryLength ?? l.MaxLength)
            from lk in Length(l.MaxKeyLength ?? l.MaxLength)
            from d in dims
            from dv in Gen.Frequency((3, Gen.Constant(d)), (2, dims))
            from layout in Gen.Elements(Enum.GetValues<MemoryLayout>())
            from causal in Gen.Frequency(
                (3, Gen.Constant<CausalAlignment?>(null)),
                (1, Gen.Constant<CausalAlignment?>(CausalAlignment.TopLeft)),
                (1, Gen.Constant<CausalAlignment?>(CausalAlignment.BottomRight)))
            from window in Gen.Frequency((4, Gen.Constant<WindowSpec?>(null)), (1, Window()))
            from bias in Gen.Frequency(
                (4, Gen.Constant(BiasKind.None)), (1, Gen.Constant(BiasKind.Full)), (1, Gen.Constant(BiasKind.PerHead)),
                (1, Gen.Constant(BiasKind.KeyPadding)), (1, Gen.Constant(BiasKind.Shared2D)), (1, Gen.Constant(BiasKind.HugePadding)))
            from keep in Gen.Frequency(
                (4, Gen.Constant(KeepMaskKind.None)), (1, Gen.Constant(KeepMaskKind.Random)),
                (1, Gen.Constant(KeepMaskKind.KeyPadding)), (1, Gen.Constant(KeepMaskKind.Shared2D)))
            from scale in Scale(l)
            from values in Values(l)
            from seed in Gen.Choose(0, int.MaxValue - 1)
            select new ProblemSpec
            {
                Batch = batch, QueryHeads = queryHeads, KvHeads = kvHeads, QueryLength = lq, KeyLength = lk,
                HeadDim = d, ValueDim = dv, Layout = layout, Causal = causal, Window = window, Bias = bias,
                KeepMask = keep, Scale = scale, Values = values, DataSeed = seed,
            };
        return spec.Where(s => s.Cost <= l.MaxCost).Select(s => l.Dropout ? WithDropout(s) : s);
    }

    /// <summary>
    /// Dropout for the problems whose data seed is a multiple of 5, derived from that seed. Dropout outputs are not
    /// averages of V (kept terms are scaled by 1 / (1 − p)), so V at the float range's edge would overflow the output
    /// itself: those problems take large values instead.
    /// </summary>
    private static ProblemSpec WithDropout(ProblemSpec spec)
    {
        if (spec.DataSeed % 5 != 0) return spec;
        double[] probabilities = [0.1, 0.3, 0.5, 0.9];
        int seed = spec.DataSeed / 5;
        return spec with
        {
            Values = spec.Values == ValueDistribution.NearRangeEdge ? ValueDistribution.Large : spec.Values,
            Dropout = new AttentionDropout(probabilities[seed % 4], (ulong)seed * 0x9E3779B97F4A7C15UL, (ulong)(seed % 7)) { InWeights = seed % 3 == 0 },
        };
    }

    /// <summary>
    /// <paramref name="count"/> problems drawn deterministically from <paramref name="seed"/>: the same seed gives the
    /// same list everywhere, so a failing case is replayed by its seed and index.
    /// </summary>
    public static ProblemSpec[] Sample(int count, ulong seed, ProblemLimits? limits = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        return count == 0 ? [] : Problems(limits).Sample(count, new Rnd(seed), size: 100);
    }

    /// <summary>Generator and shrinker together.</summary>
    public static Arbitrary<ProblemSpec> Arbitrary(ProblemLimits? limits = null) => Arb.From(Problems(limits), Shrink);

    /// <summary>
    /// Strictly simpler variants of a spec, most aggressive first: plain values and layout, masks and scale removed,
    /// then every size towards 1. The data seed is kept, so the values of what remains stay comparable.
    /// </summary>
    public static IEnumerable<ProblemSpec> Shrink(ProblemSpec spec)
    {
        if (spec.Values != ValueDistribution.Normal) yield return spec with { Values = ValueDistribution.Normal };
        if (spec.Layout != MemoryLayout.Contiguous) yield return spec with { Layout = MemoryLayout.Contiguous };
        if (spec.Causal is not null) yield return spec with { Causal = null };
        if (spec.Window is not null) yield return spec with { Window = null };
        if (spec.Bias != BiasKind.None) yield return spec with { Bias = BiasKind.None };
        if (spec.KeepMask != KeepMaskKind.None) yield return spec with { KeepMask = KeepMaskKind.None };
        if (spec.Scale is not null) yield return spec with { Scale = null };
        if (spec.Dropout.IsActive) yield return spec with { Dropout = default };
        foreach (int batch in Smaller(spec.Batch)) yield return spec with { Batch = batch };
        if (spec.QueryHeads > 1) yield return spec with { QueryHeads = 1, KvHeads = 1 };
        if (spec.KvHeads > 1) yield return spec with { QueryHeads = spec.QueryHeads / spec.KvHeads, KvHeads = 1 };
        if (spec.QueryHeads > spec.KvHeads) yield return spec with { QueryHeads = spec.KvHeads };
        foreach (int lq in Smaller(spec.QueryLength)) yield return spec with { QueryLength = lq };
        foreach (int lk in Smaller(spec.KeyLength)) yield return spec with { KeyLength = lk };
        foreach (int d in Smaller(spec.HeadDim)) yield return spec with { HeadDim = d, ValueDim = spec.ValueDim == spec.HeadDim ? d : spec.ValueDim };
        foreach (int dv in Smaller(spec.ValueDim)) yield return spec with { ValueDim = dv };
    }

    /// <summary>Mostly the default 1/√D, sometimes a plain constant, and (with <see cref="ProblemLimits.RangeEdge"/>) a scale that saturates scores.</summary>
    private static Gen<float?> Scale(ProblemLimits l)
    {
        var scales = new List<(int, Gen<float?>)> { (6, Gen.Constant<float?>(null)), (2, Gen.Elements<float?>(0.01f, 0.3f, 1f, 2.5f)) };
        if (l.RangeEdge) scales.Add((1, Gen.Elements<float?>(1e30f, float.MaxValue)));
        return Gen.Frequency(scales.ToArray());
    }

    /// <summary>Benign and hostile value distributions; values at the float range's edge with <see cref="ProblemLimits.RangeEdge"/>.</summary>
    private static Gen<ValueDistribution> Values(ProblemLimits l)
    {
        var values = new List<(int, Gen<ValueDistribution>)>
        {
            (3, Gen.Constant(ValueDistribution.Normal)), (1, Gen.Constant(ValueDistribution.Uniform)),
            (1, Gen.Constant(ValueDistribution.Large)), (1, Gen.Constant(ValueDistribution.Outliers)),
        };
        if (l.RangeEdge) values.Add((1, Gen.Constant(ValueDistribution.NearRangeEdge)));
        return Gen.Frequency(values.ToArray());
    }

    /// <summary>Mostly short (odd tile edges), sometimes up to the limit; limits past 300 also draw long lengths often.</summary>
    private static Gen<int> Length(int max)
    {
        var lengths = new List<(int, Gen<int>)>
        {
            (6, Gen.Choose(1, Math.Min(40, max))), (3, Gen.Choose(1, Math.Min(128, max))), (1, Gen.Choose(1, max)),
        };
        if (max > 300) lengths.Add((3, Gen.Choose(300, max)));
        return Gen.Frequency(lengths.ToArray());
    }

    private static Gen<int> HeadDim(ProblemLimits l) => Gen.Frequency(
        (1, Gen.Elements(InterestingHeadDims.Where(d => d <= l.MaxHeadDim).DefaultIfEmpty(1).ToArray())),
        (1, Gen.Choose(1, l.MaxHeadDim)));

    private static Gen<WindowSpec?> Window() =>
        from left in Gen.Frequency((1, Gen.Constant<int?>(null)), (4, Gen.Choose(0, 48).Select(x => (int?)x)))
        from right in Gen.Frequency((1, Gen.Constant<int?>(null)), (2, Gen.Constant<int?>(0)), (2, Gen.Choose(0, 48).Select(x => (int?)x)))
        from alignment in Gen.Elements(CausalAlignment.TopLeft, CausalAlignment.BottomRight)
        select (WindowSpec?)new WindowSpec(left, right, alignment);

    private static int[] Divisors(int n) => Enumerable.Range(1, n).Where(d => n % d == 0).ToArray();

    /// <summary>1, half, and one less: distinct values strictly below <paramref name="value"/>.</summary>
    private static IEnumerable<int> Smaller(int value) =>
        value <= 1 ? [] : new[] { 1, value / 2, value - 1 }.Where(x => x >= 1 && x < value).Distinct();
}

/// <summary>For <c>[Property(Arbitrary = [typeof(AttentionArbitraries)])]</c>: problems with the default limits.</summary>
public static class AttentionArbitraries
{
    /// <summary>The arbitrary of <see cref="ProblemSpec"/> with the default limits, for FsCheck's <c>[Property(Arbitrary = ...)]</c>.</summary>
    public static Arbitrary<ProblemSpec> ProblemSpec() => AttentionGen.Arbitrary();
}
