using System.Numerics.Tensors;
using AttentionEngine.Kernels;

namespace AttentionEngine.Tests.Modules;

/// <summary>Loading, determinism, hidden-token robustness, weights outputs and argument checks of <see cref="MultiHeadAttention{TWeight}"/>.</summary>
[Collection(nameof(SerialTests))]
public class MultiHeadAttentionBehaviourTests
{
    private const int E = 32, H = 4, S = 40, Batch = 2;

    private static MultiHeadAttentionConfig Config(bool gated = false) => new()
    {
        EmbedDim = E, Heads = H, Rotary = new RotaryEmbedding(RotaryLayout.HalfSplit),
        Gate = gated ? new OutputGate(GateKind.Elementwise, [true, false, true, false]) : null,
    };

    /// <summary>A layer with random PyTorch-layout weights; returns them too.</summary>
    private static MultiHeadAttention<float> Layer(int seed, out float[] inProj, out float[] inBias, out float[] outProj, out float[] outBias, bool gated = false)
    {
        var random = new Random(seed);
        float Next() => (float)(random.NextDouble() - 0.5) / 3;
        inProj = Enumerable.Range(0, 3 * E * E).Select(_ => Next()).ToArray();
        inBias = Enumerable.Range(0, 3 * E).Select(_ => Next()).ToArray();
        outProj = Enumerable.Range(0, E * E).Select(_ => Next()).ToArray();
        outBias = Enumerable.Range(0, E).Select(_ => Next()).ToArray();
        var layer = new MultiHeadAttention<float>(Config(gated));
        layer.LoadPyTorch(new ReadOnlyTensorSpan<float>(inProj, [3 * E, E], []), inBias, new ReadOnlyTensorSpan<float>(outProj, [E, E], []), outBias);
        if (gated)
        {
            var gate = Enumerable.Range(0, 2 * (E / H) * E).Select(_ => Next()).ToArray();
            layer.LoadGate(new ReadOnlyTensorSpan<float>(gate, [2 * (E / H), E], []), gate.AsSpan(0, 2 * (E / H)));
        }
        return layer;
    }

    private static float[] Input(int seed, int batch = Batch, int length = S)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, batch * length * E).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    private static TensorSpan<float> Sequences(float[] values, int batch = Batch, int length = S) => new(values, [batch, length, E], []);

    [Fact]
    public void PyTorch_packed_weights_and_separate_matrices_give_the_same_bits()
    {
        using var packed = Layer(1, out var inProj, out var inBias, out var outProj, out var outBias);
        using var separate = new MultiHeadAttention<float>(Config());
        ReadOnlyTensorSpan<float> Rows(int first) => new(inProj.AsSpan(first * E, E * E).ToArray(), [E, E], []);
        separate.Load(Rows(0), Rows(E), Rows(2 * E), new ReadOnlyTensorSpan<float>(outProj, [E, E], []),
            inBias.AsSpan(0, E), inBias.AsSpan(E, E), inBias.AsSpan(2 * E, E), outBias);
        var x = Input(2);
        var a = new float[x.Length];
        var b = new float[x.Length];
        packed.Forward<float>(Sequences(x), Sequences(a), new MultiHeadAttentionOptions { Mask = Mask.Causal() });
        separate.Forward<float>(Sequences(x), Sequences(b), new MultiHeadAttentionOptions { Mask = Mask.Causal() });
        Assert.Equal(a, b);
    }

    [Fact]
    public void Results_are_bitwise_identical_for_every_thread_count_and_in_place()
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        using var layer = Layer(3, out _, out _, out _, out _, gated: true);
        var x = Input(4);
        float[]? first = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var y = new float[x.Length];
            layer.Forward<float>(Sequences(x), Sequences(y), new MultiHeadAttentionOptions { MaxDegreeOfParallelism = threads, PositionOffset = 7 });
            if (first is null) first = y;
            else Assert.Equal(first, y);
        }
        var inPlace = (float[])x.Clone();
        layer.Forward<float>(Sequences(inPlace), Sequences(inPlace), new MultiHeadAttentionOptions { PositionOffset = 7 });
        Assert.Equal(first, inPlace);
    }

    [Fact]
    public void Padded_key_tokens_holding_NaN_change_no_bit()
    {
        using var layer = Layer(5, out _, out _, out _, out _);
        var query = Input(6, length: 9);
        var memory = Input(7, length: 30);
        var padding = new bool[Batch * 30];
        for (int j = 20; j < 30; j++) padding[j] = padding[30 + j] = true; // the last 10 tokens of each sequence are padding
        padding[30 + 3] = true;
        var clean = new float[query.Length];
        var options = new MultiHeadAttentionOptions { KeyPadding = new ReadOnlyTensorSpan<bool>(padding, [Batch, 30], []) };
        layer.Forward<float>(Sequences(query, length: 9), Sequences(memory, length: 30), Sequences(memory, length: 30), Sequences(clean, length: 9), options);
        for (int t = 0; t < Batch * 30; t++)
            if (padding[t])
                for (int c = 0; c < E; c++) memory[t * E + c] = c % 3 == 0 ? float.NaN : c % 3 == 1 ? float.PositiveInfinity : -1e30f;
        var poisoned = new float[query.Length];
        layer.Forward<float>(Sequences(query, length: 9), Sequences(memory, length: 30), Sequences(memory, length: 30), Sequences(poisoned, length: 9), options);
        Assert.Equal(clean, poisoned);
        Assert.All(poisoned, y => Assert.True(float.IsFinite(y)));
    }

    [Fact]
    public void Weights_are_per_head_probabilities_and_their_average()
    {
        using var layer = Layer(8, out _, out _, out _, out _);
        var x = Input(9);
        var y = new float[x.Length];
        var weights = new float[Batch * H * S * S];
        var average = new float[Batch * S * S];
        layer.Forward<float>(Sequences(x), Sequences(y), new MultiHeadAttentionOptions
        {
            Mask = Mask.Causal(),
            Weights = new TensorSpan<float>(weights, [Batch, H, S, S], []),
            AverageWeights = new TensorSpan<float>(average, [Batch, S, S], []),
        });
        var alone = new float[Batch * S * S];
        layer.Forward<float>(Sequences(x), Sequences(new float[x.Length]), new MultiHeadAttentionOptions
        {
            Mask = Mask.Causal(), AverageWeights = new TensorSpan<float>(alone, [Batch, S, S], []),
        });
        Assert.Equal(average, alone);
        for (int b = 0; b < Batch; b++)
            for (int i = 0; i < S; i++)
            {
                double rowSum = 0;
                for (int j = 0; j < S; j++)
                {
                    double mean = 0;
                    for (int h = 0; h < H; h++)
                    {
                        float w = weights[((b * H + h) * S + i) * S + j];
                        if (j > i) Assert.Equal(0f, w);
                        mean += w / H;
                    }
                    Assert.Equal(mean, average[(b * S + i) * S + j], 5);
                    rowSum += average[(b * S + i) * S + j];
                }
                Assert.Equal(1.0, rowSum, 4);
            }
    }

    [Fact]
    public void Steady_calls_allocate_nothing_on_the_calling_thread()
    {
        using var layer = Layer(10, out _, out _, out _, out _, gated: true);
        var x = Input(11);
        var y = new float[x.Length];
        var causal = Mask.Causal();
        void Call() => layer.Forward<float>(Sequences(x), Sequences(y), new MultiHeadAttentionOptions { Mask = causal, MaxDegreeOfParallelism = 2 });
        // Past tiered compilation's call-count threshold (30) first: its promotions can allocate on the calling thread.
        for (int n = 0; n < 40; n++) Call();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int n = 0; n < 10; n++) Call();
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    public static TheoryData<string> BadConfigs => new() { "Heads (3) does not divide EmbedDim", "KvHeads (3) does not divide Heads", "Rotary.Dimensions is 5", "Gate.GatedHeads has 2 entries", "EmbedDim is 0" };

    [Theory]
    [MemberData(nameof(BadConfigs))]
    public void Bad_configurations_name_the_setting(string message)
    {
        MultiHeadAttentionConfig config = message switch
        {
            "Heads (3) does not divide EmbedDim" => new() { EmbedDim = 32, Heads = 3 },
            "KvHeads (3) does not divide Heads" => new() { EmbedDim = 32, Heads = 4, KvHeads = 3 },
            "Rotary.Dimensions is 5" => new() { EmbedDim = 32, Heads = 4, Rotary = new RotaryEmbedding(RotaryLayout.Interleaved, Dimensions: 5) },
            "Gate.GatedHeads has 2 entries" => new() { EmbedDim = 32, Heads = 4, Gate = new OutputGate(GateKind.Headwise, [true, false]) },
            _ => new() { EmbedDim = 0, Heads = 4 },
        };
        var e = Assert.ThrowsAny<ArgumentException>(() => new MultiHeadAttention<float>(config));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void Bad_weights_and_inputs_name_the_tensor()
    {
        using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = 8, Heads = 2, KvHeads = 1 });
        var x = new float[2 * 3 * 8];
        var notLoaded = Assert.Throws<InvalidOperationException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 3, 8], []), new TensorSpan<float>(new float[48], [2, 3, 8], [])));
        Assert.Contains("not loaded", notLoaded.Message);
        var pytorch = Assert.Throws<ArgumentException>(() => layer.LoadPyTorch(new ReadOnlyTensorSpan<float>(new float[192], [24, 8], []), new float[24], new ReadOnlyTensorSpan<float>(new float[64], [8, 8], []), new float[8]));
        Assert.Contains("KvHeads = Heads", pytorch.Message);
        static ReadOnlyTensorSpan<float> Q() => new(new float[64], [8, 8], []);
        static ReadOnlyTensorSpan<float> Kv() => new(new float[32], [4, 8], []);
        var wrongK = Assert.Throws<ArgumentException>(() => layer.Load(Q(), Q(), Kv(), Q(), new float[8], new float[4], new float[4], new float[8]));
        Assert.Equal("wk", wrongK.ParamName);
        Assert.Contains("expected [4, 8]", wrongK.Message);
        var missingBias = Assert.Throws<ArgumentException>(() => layer.Load(Q(), Kv(), Kv(), Q()));
        Assert.Equal("bq", missingBias.ParamName);
        layer.Load(Q(), Kv(), Kv(), Q(), new float[8], new float[4], new float[4], new float[8]);
        var noGate = Assert.Throws<InvalidOperationException>(() => layer.LoadGate(Q()));
        Assert.Contains("no output gate", noGate.Message);
        var wrongWidth = Assert.Throws<ArgumentException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 4, 6], []), new TensorSpan<float>(new float[48], [2, 4, 6], [])));
        Assert.Equal("input", wrongWidth.ParamName);
        Assert.Contains("expected EmbedDim = 8", wrongWidth.Message);
        var wrongOutput = Assert.Throws<ArgumentException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 3, 8], []), new TensorSpan<float>(new float[48], [3, 2, 8], [])));
        Assert.Equal("output", wrongOutput.ParamName);
        var wrongPadding = Assert.Throws<ArgumentException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 3, 8], []), new TensorSpan<float>(new float[48], [2, 3, 8], []),
            new MultiHeadAttentionOptions { KeyPadding = new ReadOnlyTensorSpan<bool>(new bool[4], [2, 2], []) }));
        Assert.Equal("options.KeyPadding", wrongPadding.ParamName);
        var wrongKey = Assert.Throws<ArgumentException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 3, 8], []),
            new ReadOnlyTensorSpan<float>(new float[40], [1, 5, 8], []), new ReadOnlyTensorSpan<float>(new float[40], [1, 5, 8], []), new TensorSpan<float>(new float[48], [2, 3, 8], [])));
        Assert.Equal("key", wrongKey.ParamName);
    }

    [Fact]
    public void Backward_is_bitwise_identical_for_every_thread_count_and_refuses_what_it_cannot_return()
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        using var layer = Layer(12, out _, out _, out _, out _, gated: true);
        var x = Input(13);
        var dy = Input(14);
        float[]? firstInput = null, firstQuery = null;
        foreach (int threads in new[] { 1, 2, 3 })
        {
            var gradients = layer.CreateGradients();
            var dx = new float[x.Length];
            layer.Backward<float>(Sequences(x), Sequences(dy), Sequences(dx), gradients, new MultiHeadAttentionOptions { Mask = Mask.Causal(), MaxDegreeOfParallelism = threads });
            if (firstInput is null) (firstInput, firstQuery) = (dx, gradients.Query);
            else
            {
                Assert.Equal(firstInput, dx);
                Assert.Equal(firstQuery, gradients.Query);
            }
        }
        var e = Assert.Throws<ArgumentException>(() => layer.Backward<float>(Sequences(x), Sequences(dy), Sequences(new float[x.Length]), layer.CreateGradients(),
            new MultiHeadAttentionOptions { AverageWeights = new TensorSpan<float>(new float[Batch * S * S], [Batch, S, S], []) }));
        Assert.Contains("returns no attention weights", e.Message);
        using var other = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = 16, Heads = 2 });
        var wrong = Assert.Throws<ArgumentException>(() => layer.Backward<float>(Sequences(x), Sequences(dy), Sequences(new float[x.Length]), other.CreateGradients()));
        Assert.Equal("gradients", wrong.ParamName);
    }
}
