using AttentionEngine.Kernels;
using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine.Tests.Modules;

/// <summary>Determinism, NaN containment, allocation and argument checks of <see cref="MatMul"/>.</summary>
[Collection(nameof(SerialTests))]
public class MatMulBehaviourTests
{
    [Theory]
    [InlineData(700, 530, 600)]
    [InlineData(37, 1100, 300)]
    public void Results_are_bitwise_identical_for_every_thread_count(int m, int n, int k)
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        var random = new Random(5);
        var a = TestMatrix<float>.Random(m, k, MatrixLayout.RowMajor, random);
        var w = TestMatrix<BFloat16>.Random(n, k, MatrixLayout.RowMajor, random);
        var bias = Enumerable.Range(0, n).Select(i => (BFloat16)(i * 0.01f)).ToArray();
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3, 7 })
        {
            var y = new TestMatrix<float>(m, n, MatrixLayout.RowMajor);
            MatMul.Linear<float, BFloat16, float>(a.ReadOnlySpan, w.ReadOnlySpan, y.Span, bias, threads);
            var values = y.Memory[..(m * n)];
            if (first is null) first = values;
            else Assert.True(first.AsSpan().SequenceEqual(values), $"{threads} threads changed the bits");
        }
    }

    [Theory]
    [InlineData(1, 8, 1000, 700)]  // the narrow path (few rows, weights read as dot products)
    [InlineData(3, 11, 77, 300)]
    [InlineData(20, 32, 300, 530)]  // the narrow path's most rows
    [InlineData(40, 70, 300, 530)]  // the packed path
    public void A_row_gets_the_same_bits_whatever_other_rows_share_the_call(int fewer, int more, int n, int k)
    {
        var random = new Random(8);
        var a = TestMatrix<float>.Random(more, k, MatrixLayout.RowMajor, random);
        var w = TestMatrix<BFloat16>.Random(n, k, MatrixLayout.RowMajor, random);
        var bias = Enumerable.Range(0, n).Select(i => (BFloat16)(i * 0.25f - 3)).ToArray();
        var all = new TestMatrix<Half>(more, n, MatrixLayout.RowMajor);
        MatMul.Linear<float, BFloat16, Half>(a.ReadOnlySpan, w.ReadOnlySpan, all.Span, bias);
        var few = new TestMatrix<Half>(fewer, n, MatrixLayout.RowMajor);
        MatMul.Linear<float, BFloat16, Half>(TensorLayout.ReadOnlyView<float>(a.Memory, [fewer, k], [k, 1]), w.ReadOnlySpan, few.Span, bias, maxDegreeOfParallelism: 1);
        Assert.Equal(all.Memory[..(fewer * n)], few.Memory[..(fewer * n)]);
    }

    [Fact]
    public void A_NaN_in_one_row_of_A_and_one_column_of_B_stays_in_its_row_and_column()
    {
        var random = new Random(6);
        int m = 50, n = 40, k = 300;
        var a = TestMatrix<float>.Random(m, k, MatrixLayout.RowMajor, random);
        var b = TestMatrix<float>.Random(k, n, MatrixLayout.RowMajor, random);
        var clean = new TestMatrix<float>(m, n, MatrixLayout.RowMajor);
        MatMul.Multiply<float, float, float>(a.ReadOnlySpan, b.ReadOnlySpan, clean.Span);
        a[17, 260] = float.NaN;
        b[3, 29] = float.PositiveInfinity;
        var poisoned = new TestMatrix<float>(m, n, MatrixLayout.RowMajor);
        MatMul.Multiply<float, float, float>(a.ReadOnlySpan, b.ReadOnlySpan, poisoned.Span);
        for (int r = 0; r < m; r++)
            for (int c = 0; c < n; c++)
            {
                if (r == 17) Assert.True(float.IsNaN(poisoned[r, c]), $"({r}, {c}) should be NaN");
                else if (c == 29) Assert.True(float.IsInfinity(poisoned[r, c]) || float.IsNaN(poisoned[r, c]), $"({r}, {c}) should be non-finite");
                else Assert.Equal(clean[r, c], poisoned[r, c]); // every other element: the same bits
            }
    }

    [Fact]
    public void K_zero_gives_the_bias_and_empty_products_do_nothing()
    {
        var a = new TestMatrix<float>(3, 0, MatrixLayout.RowMajor);
        var b = new TestMatrix<float>(0, 4, MatrixLayout.RowMajor);
        var c = new TestMatrix<Half>(3, 4, MatrixLayout.ColumnMajor);
        MatMul.Multiply<float, float, Half>(a.ReadOnlySpan, b.ReadOnlySpan, c.Span, new float[] { 1, 2, 3, 4 });
        for (int r = 0; r < 3; r++)
            for (int n = 0; n < 4; n++) Assert.Equal((Half)(n + 1), c[r, n]);
        MatMul.Multiply<float, float, Half>(a.ReadOnlySpan, b.ReadOnlySpan, c.Span);
        Assert.Equal((Half)0, c[2, 3]);
        var none = new TestMatrix<float>(0, 4, MatrixLayout.RowMajor);
        MatMul.Multiply<float, float, float>(new TestMatrix<float>(0, 5, MatrixLayout.RowMajor).ReadOnlySpan, new TestMatrix<float>(5, 4, MatrixLayout.RowMajor).ReadOnlySpan, none.Span);
    }

    [Fact]
    public void Steady_calls_allocate_nothing_on_the_calling_thread()
    {
        var random = new Random(7);
        var x = TestMatrix<float>.Random(200, 300, MatrixLayout.RowMajor, random);
        var w = TestMatrix<BFloat16>.Random(100, 300, MatrixLayout.RowMajor, random);
        var bias = new BFloat16[100];
        var y = new TestMatrix<Half>(200, 100, MatrixLayout.RowMajor);
        void Call() => MatMul.Linear<float, BFloat16, Half>(x.ReadOnlySpan, w.ReadOnlySpan, y.Span, bias, 2);
        // Past tiered compilation's call-count threshold (30) first: its promotions can allocate on the calling thread.
        for (int n = 0; n < 40; n++) Call();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int n = 0; n < 20; n++) Call();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    public static TheoryData<string, string> BadCalls => new()
    {
        { "a has rank 3", "a" },
        { "rows must be 5 to match", "b" },
        { "expected [4, 6]", "c" },
        { "bias has 2 elements; expected 6", "bias" },
        { "maxDegreeOfParallelism is 0", "maxDegreeOfParallelism" },
        { "several of its elements share memory", "c" },
        { "c overlaps a", "c" },
        { "weight is [6, 4]; expected [out, 5]", "weight" },
    };

    [Theory]
    [MemberData(nameof(BadCalls))]
    public void Bad_arguments_name_the_tensor_and_the_values(string message, string parameter)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => BadCall(message));
        Assert.Contains(message, e.Message);
        Assert.Equal(parameter, e.ParamName);
    }

    private static void BadCall(string which)
    {
        var memory = new float[200];
        var a = TensorLayout.ReadOnlyView<float>(memory, [4, 5], [5, 1]);
        var b = TensorLayout.ReadOnlyView<float>(memory, [5, 6], [6, 1]);
        var c = TensorLayout.View(new float[24].AsSpan(), [4, 6], [6, 1]);
        switch (which)
        {
            case "a has rank 3": MatMul.Multiply<float, float, float>(TensorLayout.ReadOnlyView<float>(memory, [2, 2, 5], [10, 5, 1]), b, c); break;
            case "rows must be 5 to match": MatMul.Multiply<float, float, float>(a, TensorLayout.ReadOnlyView<float>(memory, [4, 6], [6, 1]), c); break;
            case "expected [4, 6]": MatMul.Multiply<float, float, float>(a, b, TensorLayout.View(new float[24].AsSpan(), [6, 4], [4, 1])); break;
            case "bias has 2 elements; expected 6": MatMul.Multiply<float, float, float>(a, b, c, new float[2]); break;
            case "maxDegreeOfParallelism is 0": MatMul.Multiply<float, float, float>(a, b, c, maxDegreeOfParallelism: 0); break;
            case "several of its elements share memory": MatMul.Multiply<float, float, float>(a, b, new System.Numerics.Tensors.TensorSpan<float>(new float[6], [4, 6], [0, 1])); break;
            case "c overlaps a": MatMul.Multiply<float, float, float>(a, b, TensorLayout.View(memory.AsSpan(10), [4, 6], [6, 1])); break;
            default: MatMul.Linear<float, float, float>(a, TensorLayout.ReadOnlyView<float>(memory, [6, 4], [4, 1]), c); break;
        }
    }

    [Fact]
    public void Dimensions_past_int_range_are_refused_by_name()
    {
        // A broadcast view (stride 0) reaches 3e9 columns over one element: the GEMM takes int dimensions, so K is refused.
        long huge = 3_000_000_000;
        var e = Assert.Throws<ArgumentException>(() => MatMul.Multiply<float, float, float>(
            new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(new float[1], [2, (nint)huge], [0, 0]),
            new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(new float[1], [(nint)huge, 2], [0, 0]),
            new System.Numerics.Tensors.TensorSpan<float>(new float[4], [2, 2], [])));
        Assert.Equal("a", e.ParamName);
        Assert.Contains($"[2, {huge}]", e.Message);
    }

    [Fact]
    public void Unsupported_element_types_are_refused_before_any_work()
    {
        var e = Assert.Throws<NotSupportedException>(() => MatMul.Multiply<int, float, float>(
            new System.Numerics.Tensors.ReadOnlyTensorSpan<int>(new int[4], [2, 2], []), new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(new float[4], [2, 2], []),
            new System.Numerics.Tensors.TensorSpan<float>(new float[4], [2, 2], [])));
        Assert.Contains("Int32", e.Message);
    }
}
