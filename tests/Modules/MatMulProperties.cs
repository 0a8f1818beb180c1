using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// The packed GEMM against a float64 matmul of the same inputs, with the one tolerance rule (the naive yardstick is the
/// textbook fp32 dot product, rounded to C's type), over drawn shapes that cross every blocking edge (micro-tile 6 x
/// 2 vectors, MC = 144 rows, KC = 256), every layout of A, B and C (padding full of NaN that must never be read), bias
/// or none, 1-3 threads, and every vector width this machine runs.
/// </summary>
public class MatMulProperties
{
    public sealed record GemmSpec(int M, int N, int K, MatrixLayout A, MatrixLayout B, MatrixLayout C, bool Bias, int Threads, CpuIsa Isa, int Seed)
    {
        public override string ToString() => $"M{M} N{N} K{K} A:{A} B:{B} C:{C}{(Bias ? " bias" : "")} threads {Threads} {Isa} seed {Seed}";
    }

    private static readonly CpuIsa[] Widths = new[] { CpuIsa.Avx512, CpuIsa.Avx2, CpuIsa.Vector128 }.Where(CpuIsaSelection.IsSupported).ToArray();

    private static Gen<int> Length(int large) => Gen.Frequency(
        (6, Gen.Choose(0, 20)), (3, Gen.Choose(1, 70)), (1, Gen.Choose(1, large)));

    private static Arbitrary<GemmSpec> Specs(int large) =>
        (from m in Length(large)
         from n in Length(large)
         from k in Gen.Frequency((4, Length(large)), (1, Gen.Choose(250, 530))) // across one and two KC slices
         from a in Gen.Elements(Enum.GetValues<MatrixLayout>())
         from b in Gen.Elements(Enum.GetValues<MatrixLayout>())
         from c in Gen.Elements(Enum.GetValues<MatrixLayout>())
         from bias in Gen.Elements(false, true)
         from threads in Gen.Choose(1, 3)
         from isa in Gen.Elements(Widths)
         from seed in Gen.Choose(0, int.MaxValue)
         select new GemmSpec(m, n, k, a, b, c, bias, threads, isa, seed)).ToArbitrary();

    private static void Verify<TA, TB, TC>(int cases, int large = 320) where TA : unmanaged where TB : unmanaged where TC : unmanaged =>
        Prop.ForAll(Specs(large), spec => Check<TA, TB, TC>(spec)).Check(Config.QuickThrowOnFailure.WithMaxTest(cases));

    internal static void Check<TA, TB, TC>(GemmSpec spec) where TA : unmanaged where TB : unmanaged where TC : unmanaged
    {
        var random = new Random(spec.Seed);
        var a = TestMatrix<TA>.Random(spec.M, spec.K, spec.A, random);
        var b = TestMatrix<TB>.Random(spec.K, spec.N, spec.B, random);
        var c = new TestMatrix<TC>(spec.M, spec.N, spec.C);
        var bias = spec.Bias ? Enumerable.Range(0, spec.N).Select(_ => ElementTypes.FromDouble<TB>(random.NextDouble() * 4 - 2)).ToArray() : [];
        var cv = MatrixView<TC>.Of(c.Span, "c");
        MatMul.Run(MatrixView<TA>.Of(a.ReadOnlySpan, "a"), MatrixView<TB>.Of(b.ReadOnlySpan, "b"), cv, bias, spec.Threads, spec.Isa);

        var oracle = new double[spec.M * spec.N];
        var naive = new double[spec.M * spec.N];
        for (int r = 0; r < spec.M; r++)
            for (int n = 0; n < spec.N; n++)
            {
                double exact = 0;
                float plain = 0;
                for (int k = 0; k < spec.K; k++)
                {
                    exact += a.At(r, k) * b.At(k, n);
                    plain += (float)a.At(r, k) * (float)b.At(k, n);
                }
                double beta = spec.Bias ? ElementTypes.ToDouble(bias[n]) : 0;
                oracle[r * spec.N + n] = exact + beta;
                naive[r * spec.N + n] = ElementTypes.ToDouble(ElementTypes.FromSingle<TC>(plain + (float)beta));
            }
        var report = ToleranceRule.Check<TC>(c.ToDoubles(), oracle, naive);
        Assert.True(report.Passed, $"{spec} {ElementTypes.ShortName<TA>()}·{ElementTypes.ShortName<TB>()}→{ElementTypes.ShortName<TC>()}: {report}");
        // Nothing outside C was written: its spare elements still hold the NaN they were filled with.
        int outside = c.Memory.Count(x => float.IsNaN(ElementTypes.ToSingle(x)));
        Assert.Equal(c.Memory.Length - spec.M * spec.N, outside);
    }

    [Fact] public void Float() => Verify<float, float, float>(150);
    [Fact] public void BFloat16_weights() => Verify<float, BFloat16, float>(60);
    [Fact] public void Half_weights() => Verify<float, Half, float>(60);
    [Fact] public void BFloat16_throughout() => Verify<BFloat16, BFloat16, BFloat16>(40);
    [Fact] public void Half_throughout() => Verify<Half, Half, Half>(40);
    [Fact] public void Float_into_BFloat16() => Verify<float, float, BFloat16>(40);

    [Theory]
    [InlineData(300, 700, 600)] // several task tiles, MC blocks and KC slices, with edges
    [InlineData(1, 1000, 513)]  // one row: the decode-sized projection
    [InlineData(1300, 3, 40)]
    public void Larger_shapes(int m, int n, int k)
    {
        foreach (var isa in Widths)
            Check<float, float, float>(new GemmSpec(m, n, k, MatrixLayout.RowMajor, MatrixLayout.ColumnMajor, MatrixLayout.RowMajor, true, 2, isa, m + n + k));
    }

    /// <summary>
    /// Products cut into several tiles pack A and B once, into panels all tiles share: every layout of A and B (16-bit B
    /// widened while packing), NaN padding around C, edges in M, N and K (two KC slices, the second partial), partial
    /// MC blocks, on one and two threads.
    /// </summary>
    [Theory]
    [InlineData(MatrixLayout.RowMajor, MatrixLayout.ColumnMajor, MatrixLayout.PaddedRows, 1)]
    [InlineData(MatrixLayout.PaddedColumns, MatrixLayout.RowMajor, MatrixLayout.RowMajor, 2)]
    [InlineData(MatrixLayout.PaddedRows, MatrixLayout.PaddedColumns, MatrixLayout.ColumnMajor, 2)]
    public void Shared_packed_panels(MatrixLayout a, MatrixLayout b, MatrixLayout c, int threads)
    {
        Check<float, float, float>(new GemmSpec(880, 530, 300, a, b, c, true, threads, Widths[0], 11));
        Check<float, BFloat16, float>(new GemmSpec(877, 529, 260, a, b, c, false, threads, Widths[0], 12));
    }
}
