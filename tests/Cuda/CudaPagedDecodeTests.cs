using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// <see cref="CudaBackend.ForwardPaged{T}"/>: decode over a paged KV cache (vLLM's layout, a block table per sequence,
/// sequences of different lengths sharing one pool of pages). Each sequence is checked under the tolerance rule
/// against the oracle of the same sequence stored contiguously, with the pool's unused pages, the slots past each
/// sequence's end and the keys its mask hides all holding NaN and infinities; bad tables, lengths and options are refused
/// before anything runs.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaPagedDecodeTests
{
    private const int PageSize = 16;

    [Theory]
    [InlineData("F32", 2, 80, 64, 0)]
    [InlineData("BF16", 1, 64, 64, 0)]
    [InlineData("F16", 3, 128, 96, 40)]
    public void Every_sequence_matches_the_oracle_of_its_contiguous_cache(string elementName, int queries, int headDim, int valueDim, int window)
    {
        switch (elementName)
        {
            case "F32": Check<float>(queries, headDim, valueDim, window); break;
            case "BF16": Check<BFloat16>(queries, headDim, valueDim, window); break;
            default: Check<Half>(queries, headDim, valueDim, window); break;
        }
    }

    private static void Check<T>(int queries, int headDim, int valueDim, int window) where T : unmanaged
    {
        var backend = CudaBackendTests.Gpu();
        int[] lengths = [0, 1, 37, 300, 129];
        const int heads = 4, kvHeads = 2;
        int batch = lengths.Length, perSequence = (lengths.Max() + PageSize - 1) / PageSize + 1;
        var mask = window > 0 ? Mask.SlidingWindow(window, 0, CausalAlignment.BottomRight) : Mask.Causal(CausalAlignment.BottomRight);

        // The pool: every sequence's pages in shuffled order among spare ones; everything starts as garbage.
        int pages = batch * perSequence + 3;
        var order = Enumerable.Range(0, pages).OrderBy(n => (n * 7919) % pages).ToArray();
        var table = new int[batch * perSequence];
        for (int n = 0; n < table.Length; n++) table[n] = order[n];
        var keyPool = new T[(long)pages * PageSize * kvHeads * headDim];
        var valuePool = new T[(long)pages * PageSize * kvHeads * valueDim];
        for (long n = 0; n < keyPool.Length; n++) keyPool[n] = Garbage<T>(n);
        for (long n = 0; n < valuePool.Length; n++) valuePool[n] = Garbage<T>(n + 1);
        var queriesHost = new T[(long)batch * heads * queries * headDim];

        var problems = new AttentionProblem<T>?[batch];
        try
        {
            for (int b = 0; b < batch; b++)
            {
                if (lengths[b] == 0) continue;
                var spec = new ProblemSpec
                {
                    QueryHeads = heads, KvHeads = kvHeads, QueryLength = queries, KeyLength = lengths[b], HeadDim = headDim, ValueDim = valueDim,
                    Causal = window > 0 ? null : CausalAlignment.BottomRight,
                    Window = window > 0 ? new WindowSpec(window, 0, CausalAlignment.BottomRight) : null, DataSeed = 100 + b,
                };
                var problem = problems[b] = AttentionProblem<T>.Create(spec);
                for (int h = 0; h < heads; h++)
                for (int i = 0; i < queries; i++)
                for (int c = 0; c < headDim; c++)
                    queriesHost[(((long)b * heads + h) * queries + i) * headDim + c] = problem.Q[0, h, i, c];
                for (int j = 0; j < lengths[b]; j++)
                {
                    long slot = (long)table[b * perSequence + j / PageSize] * PageSize + j % PageSize;
                    for (int g = 0; g < kvHeads; g++)
                    {
                        for (int c = 0; c < headDim; c++) keyPool[(slot * kvHeads + g) * headDim + c] = problem.K[0, g, j, c];
                        for (int c = 0; c < valueDim; c++) valuePool[(slot * kvHeads + g) * valueDim + c] = problem.V[0, g, j, c];
                    }
                }
            }

            using var device = CudaDevice.Open(0);
            using var q = DeviceTensor<T>.CopyOf(device, new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(queriesHost, [batch, heads, queries, headDim]));
            using var keyPages = DeviceTensor<T>.CopyOf(device, new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(keyPool, [pages, PageSize, kvHeads, headDim]));
            using var valuePages = DeviceTensor<T>.CopyOf(device, new System.Numerics.Tensors.ReadOnlyTensorSpan<T>(valuePool, [pages, PageSize, kvHeads, valueDim]));
            using var output = DeviceTensor<T>.Zeros(device, batch, heads, queries, valueDim);
            using var lse = DeviceTensor<float>.Zeros(device, batch, heads, queries);
            backend.ForwardPaged(q, keyPages, valuePages, table, lengths, output, new AttentionOptions { Mask = mask }, lse);
            var outputs = output.ToArray();
            var lses = lse.ToArray();

            for (int b = 0; b < batch; b++)
            {
                int rows = heads * queries;
                var got = outputs.AsSpan(b * rows * valueDim, rows * valueDim).ToArray().Select(x => ElementTypes.ToDouble(x)).ToArray();
                var gotLse = lses.AsSpan(b * rows, rows).ToArray().Select(x => (double)x).ToArray();
                if (problems[b] is not { } problem)
                {
                    Assert.All(got, x => Assert.Equal(0.0, x));
                    Assert.All(gotLse, x => Assert.Equal(double.NegativeInfinity, x));
                    continue;
                }
                var baseline = AttentionInvariants.Baseline.Of(problem);
                var outputReport = ToleranceRule.Check<T>(got, baseline.Oracle.Output, baseline.Naive.Output, baseline.ScoreRounding.Output);
                var lseReport = ToleranceRule.Check<float>(gotLse, baseline.Oracle.Lse, baseline.Naive.Lse, baseline.ScoreRounding.Lse);
                Assert.True(outputReport.Passed && lseReport.Passed, $"sequence {b} ({lengths[b]} keys): output {outputReport}; LSE {lseReport}");
            }
        }
        finally
        {
            foreach (var problem in problems) problem?.Dispose();
        }
    }

    /// <summary>NaN, +inf and -inf in turn: what an unused page or a hidden key may hold.</summary>
    private static T Garbage<T>(long n) where T : unmanaged =>
        ElementTypes.FromDouble<T>((n % 3) switch { 0 => double.NaN, 1 => double.PositiveInfinity, _ => double.NegativeInfinity });

    [Fact]
    public void Bad_tables_lengths_and_options_are_refused_before_anything_runs()
    {
        var backend = CudaBackendTests.Gpu();
        using var device = CudaDevice.Open(0);
        using var q = DeviceTensor<float>.Zeros(device, 2, 4, 1, 64);
        using var keyPages = DeviceTensor<float>.Zeros(device, 6, PageSize, 2, 64);
        using var valuePages = DeviceTensor<float>.Zeros(device, 6, PageSize, 2, 64);
        using var output = DeviceTensor<float>.Zeros(device, 2, 4, 1, 64);
        int[] table = [0, 1, 2, 3, 4, 5];
        int[] lengths = [40, 17];
        long launches = CudaEmulation.Active ? CudaEmulation.Launches : 0;

        void Refused<TException>(string name, string text, int[]? t = null, int[]? l = null, Mask? mask = null, DeviceTensor<float>? qq = null)
            where TException : Exception
        {
            var error = Assert.Throws<TException>(() => backend.ForwardPaged(qq ?? q, keyPages, valuePages, t ?? table, l ?? lengths, output,
                new AttentionOptions { Mask = mask ?? Mask.Causal(CausalAlignment.BottomRight) }));
            Assert.Contains(text, error.Message);
            if (error is ArgumentException argument) Assert.Equal(name, argument.ParamName);
        }
        Refused<ArgumentOutOfRangeException>("blockTable", "blockTable[0, 2] is 6", t: [0, 1, 6, 3, 4, 5]);
        Refused<ArgumentOutOfRangeException>("blockTable", "blockTable[1, 1] is -1", t: [0, 1, 2, 3, -1, 5]);
        Refused<ArgumentOutOfRangeException>("keyLengths", "keyLengths[1] is 49", l: [40, 49]);
        Refused<ArgumentOutOfRangeException>("keyLengths", "keyLengths[0] is -1", l: [-1, 3]);
        Refused<ArgumentException>("keyLengths", "one per sequence (2)", l: [3]);
        Refused<ArgumentException>("blockTable", "blockTable has 5 entries", t: [0, 1, 2, 3, 4]);
        Refused<ArgumentException>("options.Mask", "BottomRight", mask: Mask.Causal());
        using (var long9 = DeviceTensor<float>.Zeros(device, 2, 4, 9, 64))
            Refused<NotSupportedException>("", "up to 8", qq: long9);
        using (var wide = DeviceTensor<float>.Zeros(device, 2, 4, 1, 32))
            Refused<ArgumentException>("keyPages", "D = 32", qq: wide);
        var bias = new float[4];
        Assert.Contains("options.Bias", Assert.Throws<NotSupportedException>(() => backend.ForwardPaged(q, keyPages, valuePages, table, lengths, output,
            new AttentionOptions { Bias = new System.Numerics.Tensors.ReadOnlyTensorSpan<float>(bias, [1, 1, 1, 4]) })).Message);
        Assert.Contains("options.ScorePrecision", Assert.Throws<NotSupportedException>(() =>
            backend.ForwardPaged(q, keyPages, valuePages, table, lengths, output, new AttentionOptions { ScorePrecision = ScorePrecision.Int8 })).Message);
        Assert.Equal("options.MaxDegreeOfParallelism", Assert.Throws<ArgumentException>(() =>
            backend.ForwardPaged(q, keyPages, valuePages, table, lengths, output, new AttentionOptions { MaxDegreeOfParallelism = 0 })).ParamName);
        // Entries past a sequence's last page are never read: -1 there is fine (sequence 1 uses one page of its three).
        backend.ForwardPaged(q, keyPages, valuePages, [0, 1, 2, 3, -1, -1], [40, 16], output, new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight) });
        if (CudaEmulation.Active) Assert.Equal(2, CudaEmulation.Launches - launches); // only the valid call ran: split kernel and merge
    }
}
