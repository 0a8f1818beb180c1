using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// The training forward (which keeps the layer's activations) and the backward from them: the same output and the
/// same gradients, bit for bit, as the plain forward and the recomputing backward (which the finite-difference tests
/// check against the float64 layer); the activations only read; stale or mismatched ones refused by name.
/// </summary>
public class MultiHeadAttentionTrainingTests
{
    private sealed class Setup : IDisposable
    {
        public required MultiHeadAttention<float> Layer { get; init; }
        public required float[] Input { get; init; }
        public required float[] Upstream { get; init; }
        public required bool[]? Padding { get; init; }
        public required int Batch { get; init; }
        public required int Length { get; init; }
        public required int Embed { get; init; }
        public Mask? Mask { get; init; }
        public AttentionDropout Dropout { get; init; }
        public long Offset { get; init; }

        public ReadOnlyTensorSpan<float> X => new(Input, [Batch, Length, Embed], []);
        public ReadOnlyTensorSpan<float> DY => new(Upstream, [Batch, Length, Embed], []);

        public MultiHeadAttentionOptions Options(int? threads = null) => new()
        {
            Mask = Mask, Dropout = Dropout, PositionOffset = Offset, MaxDegreeOfParallelism = threads,
            KeyPadding = Padding is null ? default : new ReadOnlyTensorSpan<bool>(Padding, [Batch, Length], []),
        };

        public void Dispose() => Layer.Dispose();
    }

    private static Setup Make(int heads, int kvHeads, bool bias, RotaryLayout? rotary, GateKind? gate, bool causal, bool padding, double dropout, int seed,
        int batch = 2, int length = 70)
    {
        const int d = 8;
        int e = heads * d, hd = heads * d, kv = kvHeads * d;
        var random = new Random(seed);
        var config = LayerData.Config(heads, kvHeads, d, bias, rotary, gate);
        float[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        float[] Bias(int n) => bias ? Values(n, 0.1) : [];
        var layer = new MultiHeadAttention<float>(config);
        double w = 1 / Math.Sqrt(e);
        layer.Load(new ReadOnlyTensorSpan<float>(Values(hd * e, w), [hd, e], []), new ReadOnlyTensorSpan<float>(Values(kv * e, w), [kv, e], []),
            new ReadOnlyTensorSpan<float>(Values(kv * e, w), [kv, e], []), new ReadOnlyTensorSpan<float>(Values(e * hd, w), [e, hd], []),
            Bias(hd), Bias(kv), Bias(kv), Bias(e));
        if (config.GateWidth > 0) layer.LoadGate(new ReadOnlyTensorSpan<float>(Values(config.GateWidth * e, w), [config.GateWidth, e], []), Bias(config.GateWidth));
        bool[]? keyPadding = null;
        if (padding)
        {
            keyPadding = new bool[batch * length];
            for (int n = 0; n < keyPadding.Length; n++) keyPadding[n] = random.NextDouble() < 0.2;
        }
        return new Setup
        {
            Layer = layer, Input = Values(batch * length * e, 1), Upstream = Values(batch * length * e, 1), Padding = keyPadding,
            Batch = batch, Length = length, Embed = e, Mask = causal ? Mask.Causal() : null,
            Dropout = new AttentionDropout(dropout, (ulong)seed, 5), Offset = rotary is null ? 0 : 7,
        };
    }

    [Theory]
    [InlineData(2, 1, false, null, null, false, false, 0, 1)]
    [InlineData(4, 2, true, RotaryLayout.Interleaved, null, true, false, 0, 2)]
    [InlineData(4, 2, true, RotaryLayout.HalfSplit, GateKind.Headwise, true, true, 0, 3)]
    [InlineData(3, 3, false, null, GateKind.Elementwise, false, true, 0.25, 4)]
    [InlineData(4, 1, true, RotaryLayout.HalfSplit, GateKind.Elementwise, true, true, 0.4, 5)]
    public void Saved_activations_give_the_recomputing_backward_bit_for_bit(int heads, int kvHeads, bool bias, RotaryLayout? rotary, GateKind? gate,
        bool causal, bool padding, double dropout, int seed)
    {
        using var s = Make(heads, kvHeads, bias, rotary, gate, causal, padding, dropout, seed);
        int count = s.Batch * s.Length * s.Embed;
        var plain = new float[count];
        s.Layer.Forward<float>(s.X, new TensorSpan<float>(plain, [s.Batch, s.Length, s.Embed], []), s.Options());
        using var activations = s.Layer.CreateActivations();
        Assert.False(activations.IsFilled);
        var trained = new float[count];
        s.Layer.Forward<float>(s.X, new TensorSpan<float>(trained, [s.Batch, s.Length, s.Embed], []), activations, s.Options());
        Assert.True(activations.IsFilled);
        Assert.Equal((s.Batch, s.Length), (activations.Batch, activations.Length));
        Assert.Equal(plain, trained);

        var (recomputed, recomputedInput) = (s.Layer.CreateGradients(), new float[count]);
        s.Layer.Backward<float>(s.X, s.DY, new TensorSpan<float>(recomputedInput, [s.Batch, s.Length, s.Embed], []), recomputed, s.Options());
        for (int call = 0; call < 2; call++)
        {
            // Twice (the activations are only read), the second time on one thread (no bit depends on the thread count).
            var (saved, savedInput) = (s.Layer.CreateGradients(), new float[count]);
            s.Layer.Backward<float>(activations, s.DY, new TensorSpan<float>(savedInput, [s.Batch, s.Length, s.Embed], []), saved, s.Options(call == 0 ? null : 1));
            Assert.Equal(recomputedInput, savedInput);
            Assert.Equal(recomputed.Query, saved.Query);
            Assert.Equal(recomputed.Key, saved.Key);
            Assert.Equal(recomputed.Value, saved.Value);
            Assert.Equal(recomputed.Output, saved.Output);
            Assert.Equal(recomputed.Gate, saved.Gate);
            Assert.Equal(recomputed.QueryBias, saved.QueryBias);
            Assert.Equal(recomputed.KeyBias, saved.KeyBias);
            Assert.Equal(recomputed.ValueBias, saved.ValueBias);
            Assert.Equal(recomputed.OutputBias, saved.OutputBias);
            Assert.Equal(recomputed.GateBias, saved.GateBias);
            Assert.Contains(savedInput, x => x != 0);
        }
    }

    [Fact]
    public void Sixteen_bit_activations_take_the_same_path_bit_for_bit()
    {
        // BFloat16 inputs and outputs: the training forward widens the input once and rounds the output once, as the
        // plain forward does, and the saved backward rounds dInput as the recomputing one does.
        using var s = Make(4, 2, true, RotaryLayout.Interleaved, GateKind.Elementwise, true, false, 0, 41, batch: 2, length: 21);
        var x = s.Input.Select(v => (BFloat16)v).ToArray();
        var dy = s.Upstream.Select(v => (BFloat16)v).ToArray();
        nint[] lengths = [s.Batch, s.Length, s.Embed];
        var (plain, trained) = (new BFloat16[x.Length], new BFloat16[x.Length]);
        s.Layer.Forward<BFloat16>(new ReadOnlyTensorSpan<BFloat16>(x, lengths, []), new TensorSpan<BFloat16>(plain, lengths, []), new MultiHeadAttentionOptions { Mask = s.Mask });
        using var activations = s.Layer.CreateActivations();
        s.Layer.Forward<BFloat16>(new ReadOnlyTensorSpan<BFloat16>(x, lengths, []), new TensorSpan<BFloat16>(trained, lengths, []), activations, new MultiHeadAttentionOptions { Mask = s.Mask });
        Assert.Equal(plain, trained);
        var (a, b) = (s.Layer.CreateGradients(), s.Layer.CreateGradients());
        var (da, db) = (new BFloat16[x.Length], new BFloat16[x.Length]);
        s.Layer.Backward<BFloat16>(new ReadOnlyTensorSpan<BFloat16>(x, lengths, []), new ReadOnlyTensorSpan<BFloat16>(dy, lengths, []), new TensorSpan<BFloat16>(da, lengths, []), a,
            new MultiHeadAttentionOptions { Mask = s.Mask });
        s.Layer.Backward<BFloat16>(activations, new ReadOnlyTensorSpan<BFloat16>(dy, lengths, []), new TensorSpan<BFloat16>(db, lengths, []), b, new MultiHeadAttentionOptions { Mask = s.Mask });
        Assert.Equal(da, db);
        Assert.Equal(a.Query, b.Query);
        Assert.Equal(a.Gate, b.Gate);
    }

    [Fact]
    public void A_second_forward_replaces_what_was_saved()
    {
        using var small = Make(2, 1, true, null, null, false, false, 0, 11, batch: 1, length: 9);
        using var large = Make(2, 1, true, null, null, false, false, 0, 11, batch: 2, length: 40);
        using var activations = large.Layer.CreateActivations();
        var output = new float[2 * 40 * large.Embed];
        var y = new TensorSpan<float>(output, [2, 40, large.Embed], []);
        large.Layer.Forward<float>(new ReadOnlyTensorSpan<float>(small.Input, [1, 9, small.Embed], []), new TensorSpan<float>(output, [1, 9, large.Embed], []), activations);
        large.Layer.Forward<float>(large.X, y, activations);
        Assert.Equal((2, 40), (activations.Batch, activations.Length));
        var (a, b) = (large.Layer.CreateGradients(), large.Layer.CreateGradients());
        var (da, db) = (new float[output.Length], new float[output.Length]);
        large.Layer.Backward<float>(activations, large.DY, new TensorSpan<float>(da, [2, 40, large.Embed], []), a);
        large.Layer.Backward<float>(large.X, large.DY, new TensorSpan<float>(db, [2, 40, large.Embed], []), b);
        Assert.Equal(db, da);
        Assert.Equal(b.Query, a.Query);
    }

    [Fact]
    public void Stale_foreign_empty_or_mismatched_activations_are_refused_by_name()
    {
        using var s = Make(4, 2, true, RotaryLayout.Interleaved, GateKind.Headwise, true, true, 0.2, 21, batch: 2, length: 12);
        using var other = Make(4, 2, true, RotaryLayout.Interleaved, GateKind.Headwise, true, true, 0.2, 21, batch: 2, length: 12);
        int count = s.Batch * s.Length * s.Embed;
        var y = new float[count];
        var dx = new float[count];
        var gradients = s.Layer.CreateGradients();
        TensorSpan<float> Y() => new(y, [s.Batch, s.Length, s.Embed], []);
        TensorSpan<float> DX() => new(dx, [s.Batch, s.Length, s.Embed], []);
        using var activations = s.Layer.CreateActivations();

        Assert.Equal("activations", Assert.Throws<ArgumentException>(() => s.Layer.Backward<float>(activations, s.DY, DX(), gradients, s.Options())).ParamName);
        using (var foreign = other.Layer.CreateActivations())
            Assert.Equal("activations", Assert.Throws<ArgumentException>(() => s.Layer.Forward<float>(s.X, Y(), foreign, s.Options())).ParamName);
        var weights = new float[s.Batch * 4 * s.Length * s.Length];
        Assert.Equal("options", Assert.Throws<ArgumentException>(() => s.Layer.Forward<float>(s.X, Y(), activations,
            s.Options() with { Weights = new TensorSpan<float>(weights, [s.Batch, 4, s.Length, s.Length], []) })).ParamName);

        s.Layer.Forward<float>(s.X, Y(), activations, s.Options());
        void Refused(MultiHeadAttentionOptions options, string what)
        {
            ArgumentException? error = null;
            try { s.Layer.Backward<float>(activations, s.DY, DX(), gradients, options); }
            catch (ArgumentException e) { error = e; }
            Assert.NotNull(error);
            Assert.Equal("options", error.ParamName);
            Assert.Contains(what, error.Message);
        }
        Refused(s.Options() with { Mask = null }, "Mask");
        Refused(s.Options() with { Mask = Mask.SlidingWindow(3, 0) }, "Mask");
        Refused(s.Options() with { Scale = 0.5f }, "Scale");
        Refused(s.Options() with { PositionOffset = 8 }, "PositionOffset");
        Refused(s.Options() with { Dropout = new AttentionDropout(0.2, 22, 5) }, "Dropout");
        Refused(s.Options() with { KeyPadding = default }, "KeyPadding");
        var flipped = (bool[])s.Padding!.Clone();
        flipped[13] = !flipped[13];
        Refused(s.Options() with { KeyPadding = new ReadOnlyTensorSpan<bool>(flipped, [s.Batch, s.Length], []) }, "[1, 1]");
        var shorter = new float[s.Batch * (s.Length - 1) * s.Embed];
        Assert.Equal("dOutput", Assert.Throws<ArgumentException>(() => s.Layer.Backward<float>(activations,
            new ReadOnlyTensorSpan<float>(shorter, [s.Batch, s.Length - 1, s.Embed], []), new TensorSpan<float>((float[])shorter.Clone(), [s.Batch, s.Length - 1, s.Embed], []),
            gradients, s.Options())).ParamName);

        // The matching options work; a load of weights makes the activations stale.
        s.Layer.Backward<float>(activations, s.DY, DX(), gradients, s.Options(threads: 1));
        int gates = s.Layer.Config.GateWidth;
        s.Layer.LoadGate(new ReadOnlyTensorSpan<float>(new float[gates * s.Embed], [gates, s.Embed], []), new float[gates]);
        Assert.Contains("loaded", Assert.Throws<ArgumentException>(() => s.Layer.Backward<float>(activations, s.DY, DX(), gradients, s.Options())).Message);

        Assert.True(activations.ByteCount > 0);
        activations.Dispose();
        Assert.Equal(0, activations.ByteCount);
        Assert.Throws<ObjectDisposedException>(() => s.Layer.Forward<float>(s.X, Y(), activations, s.Options()));
        Assert.False(activations.IsFilled);
    }

    [Theory]
    [InlineData(false, null, false, false, 0, 31)]
    [InlineData(true, RotaryLayout.HalfSplit, true, true, 0.3, 32)]
    public void Cross_attention_from_saved_activations_matches_the_recomputing_backward(bool bias, RotaryLayout? rotary, bool causal, bool padding, double dropout, int seed)
    {
        const int heads = 4, kvHeads = 2, d = 8, e = heads * d, ek = 12, ev = 20, batch = 2, lq = 33, lk = 70;
        var random = new Random(seed);
        float[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        float[] Bias(int n) => bias ? Values(n, 0.1) : [];
        using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig
        {
            EmbedDim = e, Heads = heads, KvHeads = kvHeads, KeyDim = ek, ValueDim = ev, Bias = bias,
            Rotary = rotary is { } r ? new RotaryEmbedding(r) : null, Gate = new OutputGate(GateKind.Headwise),
        });
        layer.Load(new ReadOnlyTensorSpan<float>(Values(e * e, 0.2), [e, e], []), new ReadOnlyTensorSpan<float>(Values(kvHeads * d * ek, 0.3), [kvHeads * d, ek], []),
            new ReadOnlyTensorSpan<float>(Values(kvHeads * d * ev, 0.2), [kvHeads * d, ev], []), new ReadOnlyTensorSpan<float>(Values(e * e, 0.2), [e, e], []),
            Bias(e), Bias(kvHeads * d), Bias(kvHeads * d), Bias(e));
        layer.LoadGate(new ReadOnlyTensorSpan<float>(Values(heads * e, 0.2), [heads, e], []), Bias(heads));
        var (q, k, v, dy) = (Values(batch * lq * e, 1), Values(batch * lk * ek, 1), Values(batch * lk * ev, 1), Values(batch * lq * e, 1));
        var keyPadding = padding ? Enumerable.Range(0, batch * lk).Select(_ => random.NextDouble() < 0.2).ToArray() : null;
        MultiHeadAttentionOptions Options() => new()
        {
            Mask = causal ? Mask.Causal(CausalAlignment.BottomRight) : null, Dropout = new AttentionDropout(dropout, 3, 4),
            PositionOffset = 5, KeyPositionOffset = 2,
            KeyPadding = keyPadding is null ? default : new ReadOnlyTensorSpan<bool>(keyPadding, [batch, lk], []),
        };
        ReadOnlyTensorSpan<float> Qs() => new(q, [batch, lq, e], []);
        ReadOnlyTensorSpan<float> Ks() => new(k, [batch, lk, ek], []);
        ReadOnlyTensorSpan<float> Vs() => new(v, [batch, lk, ev], []);
        var (plain, trained) = (new float[q.Length], new float[q.Length]);
        layer.Forward<float>(Qs(), Ks(), Vs(), new TensorSpan<float>(plain, [batch, lq, e], []), Options());
        using var activations = layer.CreateActivations();
        layer.Forward<float>(Qs(), Ks(), Vs(), new TensorSpan<float>(trained, [batch, lq, e], []), activations, Options());
        Assert.Equal(plain, trained);
        Assert.True(activations.IsCrossAttention);
        // Per query token: input, Q and gate, attention and gated outputs, LSEs; per key token: key and value inputs, K and V.
        long floats = (long)batch * lq * (e + (e + heads) + 2 * e + heads) + (long)batch * lk * (ek + ev + 2 * kvHeads * d);
        Assert.True(activations.ByteCount >= floats * sizeof(float), $"{activations.ByteCount} bytes for {floats} floats");
        Assert.Equal((batch, lq, lk), (activations.Batch, activations.Length, activations.KeyLength));

        (MultiHeadAttentionGradients, float[], float[], float[]) Run(bool saved)
        {
            var (g, dq, dk, dv) = (layer.CreateGradients(), new float[q.Length], new float[k.Length], new float[v.Length]);
            var dqs = new TensorSpan<float>(dq, [batch, lq, e], []);
            var dks = new TensorSpan<float>(dk, [batch, lk, ek], []);
            var dvs = new TensorSpan<float>(dv, [batch, lk, ev], []);
            var dys = new ReadOnlyTensorSpan<float>(dy, [batch, lq, e], []);
            if (saved) layer.Backward<float>(activations, dys, dqs, dks, dvs, g, Options());
            else layer.Backward<float>(Qs(), Ks(), Vs(), dys, dqs, dks, dvs, g, Options());
            return (g, dq, dk, dv);
        }
        var (a, dqa, dka, dva) = Run(saved: false);
        var (b, dqb, dkb, dvb) = Run(saved: true);
        Assert.Equal(dqa, dqb);
        Assert.Equal(dka, dkb);
        Assert.Equal(dva, dvb);
        foreach (var (x, y) in new[] { (a.Query, b.Query), (a.Key, b.Key), (a.Value, b.Value), (a.Output, b.Output), (a.Gate, b.Gate), (a.QueryBias, b.QueryBias),
                     (a.KeyBias, b.KeyBias), (a.ValueBias, b.ValueBias), (a.OutputBias, b.OutputBias), (a.GateBias, b.GateBias) })
            Assert.Equal(x, y);
        Assert.Contains(dkb, x => x != 0);

        // The self-attention backward refuses cross-attention activations, and a changed key offset is refused.
        var dx = new float[q.Length];
        Assert.Equal("activations", Assert.Throws<ArgumentException>(() => layer.Backward<float>(activations, new ReadOnlyTensorSpan<float>(dy, [batch, lq, e], []),
            new TensorSpan<float>(dx, [batch, lq, e], []), layer.CreateGradients(), Options())).ParamName);
        var wrongKey = new float[batch * lk * ev];
        Assert.Equal("dKey", Assert.Throws<ArgumentException>(() => layer.Backward<float>(activations, new ReadOnlyTensorSpan<float>(dy, [batch, lq, e], []),
            new TensorSpan<float>(dx, [batch, lq, e], []), new TensorSpan<float>(wrongKey, [batch, lk, ev], []), new TensorSpan<float>(new float[v.Length], [batch, lk, ev], []),
            layer.CreateGradients(), Options())).ParamName);
    }

    [Fact]
    public void Garbage_in_padded_key_tokens_never_reaches_the_output_or_the_query_side_gradients()
    {
        // Cross-attention with key padding: the padded key and value tokens hold NaN and infinities, so their projected K
        // and V rows do too. The training forward's output, and the saved backward's dQuery and query-side, gate and output
        // weight gradients, must match the same call with those tokens zeroed (the hidden keys' guarded pass may round
        // differently, hence a tolerance), and stay finite. (∂W_k and ∂W_v multiply the padded tokens' inputs by their
        // zero gradients, 0 · NaN, as in PyTorch, so they are not compared.)
        const int heads = 2, d = 8, e = heads * d, ek = 8, ev = 8, batch = 2, lq = 9, lk = 70;
        var random = new Random(51);
        float[] Values(int n, double scale) => Enumerable.Range(0, n).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale)).ToArray();
        using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig
        {
            EmbedDim = e, Heads = heads, KeyDim = ek, ValueDim = ev, Bias = true, Gate = new OutputGate(GateKind.Headwise),
        });
        layer.Load(new ReadOnlyTensorSpan<float>(Values(e * e, 0.3), [e, e], []), new ReadOnlyTensorSpan<float>(Values(e * ek, 0.3), [e, ek], []),
            new ReadOnlyTensorSpan<float>(Values(e * ev, 0.3), [e, ev], []), new ReadOnlyTensorSpan<float>(Values(e * e, 0.3), [e, e], []),
            Values(e, 0.1), Values(e, 0.1), Values(e, 0.1), Values(e, 0.1));
        layer.LoadGate(new ReadOnlyTensorSpan<float>(Values(heads * e, 0.3), [heads, e], []), Values(heads, 0.1));
        var (q, dy) = (Values(batch * lq * e, 1), Values(batch * lq * e, 1));
        var (cleanKey, cleanValue) = (Values(batch * lk * ek, 1), Values(batch * lk * ev, 1));
        var keyPadding = new bool[batch * lk];
        for (int j = 0; j < keyPadding.Length; j++) keyPadding[j] = j % 7 == 3 || j >= batch * lk - 5;
        var (key, value) = ((float[])cleanKey.Clone(), (float[])cleanValue.Clone());
        for (int j = 0; j < keyPadding.Length; j++)
        {
            if (!keyPadding[j]) continue;
            for (int c = 0; c < ek; c++) { key[j * ek + c] = c % 3 == 0 ? float.NaN : c % 3 == 1 ? float.PositiveInfinity : float.MaxValue; cleanKey[j * ek + c] = 0; }
            for (int c = 0; c < ev; c++) { value[j * ev + c] = c % 2 == 0 ? float.NegativeInfinity : float.NaN; cleanValue[j * ev + c] = 0; }
        }
        (float[] Output, float[] DQuery, MultiHeadAttentionGradients Gradients) Run(float[] k, float[] v)
        {
            var options = new MultiHeadAttentionOptions { KeyPadding = new ReadOnlyTensorSpan<bool>(keyPadding, [batch, lk], []) };
            using var activations = layer.CreateActivations();
            var output = new float[q.Length];
            layer.Forward<float>(new ReadOnlyTensorSpan<float>(q, [batch, lq, e], []), new ReadOnlyTensorSpan<float>(k, [batch, lk, ek], []),
                new ReadOnlyTensorSpan<float>(v, [batch, lk, ev], []), new TensorSpan<float>(output, [batch, lq, e], []), activations, options);
            var (dq, gradients) = (new float[q.Length], layer.CreateGradients());
            layer.Backward<float>(activations, new ReadOnlyTensorSpan<float>(dy, [batch, lq, e], []), new TensorSpan<float>(dq, [batch, lq, e], []),
                new TensorSpan<float>(new float[k.Length], [batch, lk, ek], []), new TensorSpan<float>(new float[v.Length], [batch, lk, ev], []), gradients, options);
            return (output, dq, gradients);
        }
        var hostile = Run(key, value);
        var clean = Run(cleanKey, cleanValue);
        void Close(string name, float[] actual, float[] expected)
        {
            double scale = Math.Max(1, expected.Max(Math.Abs));
            for (int n = 0; n < expected.Length; n++)
                Assert.True(float.IsFinite(actual[n]) && Math.Abs(actual[n] - expected[n]) <= 1e-5 * scale, $"{name}[{n}]: {actual[n]} against {expected[n]} with the tokens zeroed");
        }
        Close("output", hostile.Output, clean.Output);
        Close("dQuery", hostile.DQuery, clean.DQuery);
        Close("dWq", hostile.Gradients.Query, clean.Gradients.Query);
        Close("dWo", hostile.Gradients.Output, clean.Gradients.Output);
        Close("dWg", hostile.Gradients.Gate, clean.Gradients.Gate);
        Close("dbq", hostile.Gradients.QueryBias, clean.Gradients.QueryBias);
        Close("dbo", hostile.Gradients.OutputBias, clean.Gradients.OutputBias);
    }

    [Fact]
    public void The_self_attention_training_forward_needs_a_self_attention_layer()
    {
        using var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig { EmbedDim = 8, Heads = 2, KeyDim = 6, ValueDim = 6 });
        using var activations = layer.CreateActivations();
        var x = new float[2 * 3 * 8];
        var error = Assert.Throws<ArgumentException>(() => layer.Forward<float>(new ReadOnlyTensorSpan<float>(x, [2, 3, 8], []), new TensorSpan<float>((float[])x.Clone(), [2, 3, 8], []), activations));
        Assert.Equal("input", error.ParamName);
    }
}
