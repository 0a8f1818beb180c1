using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// The layer's backward against central finite differences of the float64 reference layer: loss = Σ output ⊙ G for a
/// random G, every parameter and every input element perturbed by ±h (h = 1e-4; the reference is float64, so the
/// difference quotient is accurate to ~1e-8). The fp32 gradients must agree within 2e-3 of the gradient's scale: fp32
/// carries ~1e-7 per operation, and these small layers chain a few hundred.
/// </summary>
public class MultiHeadAttentionBackwardTests
{
    [Theory]
    [InlineData(2, 1, false, null, null, false, false, 1)]
    [InlineData(2, 2, true, RotaryLayout.Interleaved, null, true, false, 2)]
    [InlineData(4, 2, true, RotaryLayout.HalfSplit, GateKind.Headwise, true, true, 3)]
    [InlineData(2, 1, true, null, GateKind.Elementwise, false, true, 4)]
    [InlineData(3, 3, false, RotaryLayout.HalfSplit, GateKind.Elementwise, true, false, 5)]
    [InlineData(4, 2, true, RotaryLayout.HalfSplit, GateKind.Headwise, true, true, 9, 0.3)]    // training-mode dropout, at its fixed mask
    [InlineData(2, 2, false, null, null, false, false, 10, 0.6)]
    public void Gradients_match_finite_differences_of_the_float64_layer(int heads, int kvHeads, bool bias, RotaryLayout? rotary, GateKind? gate, bool causal, bool padding, int seed,
        double dropoutProbability = 0)
    {
        var dropout = new AttentionDropout(dropoutProbability, (ulong)seed, 2);
        const int d = 4, batch = 2, length = 5;
        int e = heads * d, hd = heads * d, kv = kvHeads * d;
        var random = new Random(seed);
        var config = LayerData.Config(heads, kvHeads, d, bias, rotary, gate);
        int gateRows = config.GateWidth;
        double[,] Matrix(int rows, int columns) => LayerData.Matrix<float>(rows, columns, 1 / Math.Sqrt(columns), random);
        double[] Vector(int n) => bias ? LayerData.Vector<float>(n, random) : new double[n];
        var reference = new ReferenceLayer(config, x => x)
        {
            Wq = Matrix(hd, e), Wk = Matrix(kv, e), Wv = Matrix(kv, e), Wo = Matrix(e, hd), Bq = Vector(hd), Bk = Vector(kv), Bv = Vector(kv), Bo = Vector(e),
            Wg = gateRows > 0 ? Matrix(gateRows, e) : null, Bg = gateRows > 0 ? Vector(gateRows) : null, Dropout = dropout,
        };
        var input = LayerData.RandomSequences<float>(batch, length, e, false, random);
        var keyPadding = padding ? new bool[batch, length] : null;
        if (keyPadding is not null) { keyPadding[0, 1] = true; keyPadding[1, 4] = true; }
        var upstream = new double[batch, length, e];
        for (int b = 0; b < batch; b++) for (int t = 0; t < length; t++) for (int c = 0; c < e; c++) upstream[b, t, c] = random.NextDouble() * 2 - 1;
        double Loss(double[,,] x)
        {
            var y = reference.Forward(x, x, x, causal, keyPadding, 3, 3, null);
            double sum = 0;
            for (int b = 0; b < batch; b++) for (int t = 0; t < length; t++) for (int c = 0; c < e; c++) sum += y[b, t, c] * upstream[b, t, c];
            return sum;
        }

        using var layer = new MultiHeadAttention<float>(config);
        float[] F(double[,] m) => LayerData.Elements<float>(m);
        float[] B(double[] v) => bias ? v.Select(x => (float)x).ToArray() : [];
        layer.Load(new ReadOnlyTensorSpan<float>(F(reference.Wq), [hd, e], []), new ReadOnlyTensorSpan<float>(F(reference.Wk), [kv, e], []),
            new ReadOnlyTensorSpan<float>(F(reference.Wv), [kv, e], []), new ReadOnlyTensorSpan<float>(F(reference.Wo), [e, hd], []),
            B(reference.Bq), B(reference.Bk), B(reference.Bv), B(reference.Bo));
        if (gateRows > 0) layer.LoadGate(new ReadOnlyTensorSpan<float>(F(reference.Wg!), [gateRows, e], []), B(reference.Bg!));
        var gradients = layer.CreateGradients();
        var dInput = new float[batch * length * e];
        var dOutput = upstream.Cast<double>().Select(x => (float)x).ToArray();
        var paddingFlat = keyPadding?.Cast<bool>().ToArray();
        layer.Backward<float>(input.Span, new ReadOnlyTensorSpan<float>(dOutput, [batch, length, e], []), new TensorSpan<float>(dInput, [batch, length, e], []), gradients,
            new MultiHeadAttentionOptions
            {
                Mask = causal ? Mask.Causal() : null, PositionOffset = 3, Dropout = dropout,
                KeyPadding = paddingFlat is null ? default : new ReadOnlyTensorSpan<bool>(paddingFlat, [batch, length], []),
            });
        // The upstream gradient was rounded to float for our side; the reference keeps the double one (differences ~1e-8).

        var check = new GradientCheck(() => Loss(input.Values));
        check.Matrix("dWq", gradients.Query, reference.Wq);
        check.Matrix("dWk", gradients.Key, reference.Wk);
        check.Matrix("dWv", gradients.Value, reference.Wv);
        check.Matrix("dWo", gradients.Output, reference.Wo);
        if (gateRows > 0) check.Matrix("dWg", gradients.Gate, reference.Wg!);
        if (bias)
        {
            check.Vector("dbq", gradients.QueryBias, reference.Bq);
            check.Vector("dbk", gradients.KeyBias, reference.Bk);
            check.Vector("dbv", gradients.ValueBias, reference.Bv);
            check.Vector("dbo", gradients.OutputBias, reference.Bo);
            if (gateRows > 0) check.Vector("dbg", gradients.GateBias, reference.Bg!);
        }
        check.Input("dInput", dInput, input.Values);
    }

    [Theory]
    [InlineData(2, 1, true, RotaryLayout.HalfSplit, GateKind.Headwise, 8, 8, true, 6)]   // kdim = vdim = E: weights stored fused
    [InlineData(2, 2, false, null, GateKind.Elementwise, 5, 7, false, 7)]                // own kdim and vdim
    [InlineData(4, 2, true, RotaryLayout.Interleaved, null, 6, 6, true, 8)]
    public void Cross_attention_gradients_match_finite_differences(int heads, int kvHeads, bool bias, RotaryLayout? rotary, GateKind? gate, int keyDim, int valueDim, bool padding, int seed)
    {
        const int d = 4, batch = 2, lq = 4, lk = 6;
        int e = heads * d, hd = heads * d, kv = kvHeads * d;
        if (keyDim == 8 && valueDim == 8) keyDim = valueDim = e;
        var random = new Random(seed);
        var config = new MultiHeadAttentionConfig
        {
            EmbedDim = e, Heads = heads, KvHeads = kvHeads, Bias = bias, KeyDim = keyDim, ValueDim = valueDim,
            Rotary = rotary is { } r ? new RotaryEmbedding(r) : null, Gate = gate is { } g ? new OutputGate(g) : null,
        };
        int gateRows = config.GateWidth;
        double[,] Matrix(int rows, int columns) => LayerData.Matrix<float>(rows, columns, 1 / Math.Sqrt(columns), random);
        double[] Vector(int n) => bias ? LayerData.Vector<float>(n, random) : new double[n];
        var reference = new ReferenceLayer(config, x => x)
        {
            Wq = Matrix(hd, e), Wk = Matrix(kv, keyDim), Wv = Matrix(kv, valueDim), Wo = Matrix(e, hd), Bq = Vector(hd), Bk = Vector(kv), Bv = Vector(kv), Bo = Vector(e),
            Wg = gateRows > 0 ? Matrix(gateRows, e) : null, Bg = gateRows > 0 ? Vector(gateRows) : null,
        };
        var query = LayerData.RandomSequences<float>(batch, lq, e, false, random);
        var key = LayerData.RandomSequences<float>(batch, lk, keyDim, true, random);
        var value = LayerData.RandomSequences<float>(batch, lk, valueDim, false, random);
        var keyPadding = padding ? new bool[batch, lk] : null;
        if (keyPadding is not null) { keyPadding[0, 0] = true; keyPadding[1, 5] = true; }
        var upstream = new double[batch, lq, e];
        for (int b = 0; b < batch; b++) for (int t = 0; t < lq; t++) for (int c = 0; c < e; c++) upstream[b, t, c] = random.NextDouble() * 2 - 1;
        double Loss()
        {
            var y = reference.Forward(query.Values, key.Values, value.Values, false, keyPadding, 2, 5, null);
            double sum = 0;
            for (int b = 0; b < batch; b++) for (int t = 0; t < lq; t++) for (int c = 0; c < e; c++) sum += y[b, t, c] * upstream[b, t, c];
            return sum;
        }

        using var layer = new MultiHeadAttention<float>(config);
        float[] F(double[,] m) => LayerData.Elements<float>(m);
        float[] B(double[] v) => bias ? v.Select(x => (float)x).ToArray() : [];
        layer.Load(new ReadOnlyTensorSpan<float>(F(reference.Wq), [hd, e], []), new ReadOnlyTensorSpan<float>(F(reference.Wk), [kv, keyDim], []),
            new ReadOnlyTensorSpan<float>(F(reference.Wv), [kv, valueDim], []), new ReadOnlyTensorSpan<float>(F(reference.Wo), [e, hd], []),
            B(reference.Bq), B(reference.Bk), B(reference.Bv), B(reference.Bo));
        if (gateRows > 0) layer.LoadGate(new ReadOnlyTensorSpan<float>(F(reference.Wg!), [gateRows, e], []), B(reference.Bg!));
        var gradients = layer.CreateGradients();
        var (dQuery, dKey, dValue) = (new float[batch * lq * e], new float[batch * lk * keyDim], new float[batch * lk * valueDim]);
        var paddingFlat = keyPadding?.Cast<bool>().ToArray();
        layer.Backward<float>(query.Span, key.Span, value.Span, new ReadOnlyTensorSpan<float>(upstream.Cast<double>().Select(x => (float)x).ToArray(), [batch, lq, e], []),
            new TensorSpan<float>(dQuery, [batch, lq, e], []), new TensorSpan<float>(dKey, [batch, lk, keyDim], []), new TensorSpan<float>(dValue, [batch, lk, valueDim], []),
            gradients, new MultiHeadAttentionOptions
            {
                PositionOffset = 2, KeyPositionOffset = 5,
                KeyPadding = paddingFlat is null ? default : new ReadOnlyTensorSpan<bool>(paddingFlat, [batch, lk], []),
            });

        var check = new GradientCheck(Loss);
        check.Matrix("dWq", gradients.Query, reference.Wq);
        check.Matrix("dWk", gradients.Key, reference.Wk);
        check.Matrix("dWv", gradients.Value, reference.Wv);
        check.Matrix("dWo", gradients.Output, reference.Wo);
        if (gateRows > 0) check.Matrix("dWg", gradients.Gate, reference.Wg!);
        if (bias)
        {
            check.Vector("dbq", gradients.QueryBias, reference.Bq);
            check.Vector("dbk", gradients.KeyBias, reference.Bk);
            check.Vector("dbv", gradients.ValueBias, reference.Bv);
            check.Vector("dbo", gradients.OutputBias, reference.Bo);
        }
        check.Input("dQuery", dQuery, query.Values);
        check.Input("dKey", dKey, key.Values); // key sits [S, B, E] in memory; dKey is dense: the logical order is what counts
        check.Input("dValue", dValue, value.Values);
    }

    /// <summary>
    /// Central differences of a float64 loss with respect to values it reads (perturbed in place by ±h, then restored),
    /// against a backward's fp32 gradient: within 2e-3 of the largest numeric derivative.
    /// </summary>
    private sealed class GradientCheck(Func<double> loss)
    {
        private const double H = 1e-4;

        public void Matrix(string name, float[] ours, double[,] m)
        {
            int columns = m.GetLength(1);
            Compare(name, ours, i => Central(x => m[i / columns, i % columns] = x, m[i / columns, i % columns]));
        }

        public void Vector(string name, float[] ours, double[] v) => Compare(name, ours, i => Central(x => v[i] = x, v[i]));

        public void Input(string name, float[] ours, double[,,] x)
        {
            int length = x.GetLength(1), width = x.GetLength(2);
            Compare(name, ours, i =>
            {
                int b = i / (length * width), t = i / width % length, c = i % width;
                return Central(v => x[b, t, c] = v, x[b, t, c]);
            });
        }

        private double Central(Action<double> set, double original)
        {
            set(original + H);
            double up = loss();
            set(original - H);
            double down = loss();
            set(original);
            return (up - down) / (2 * H);
        }

        private static void Compare(string name, float[] ours, Func<int, double> numericAt)
        {
            var numeric = Enumerable.Range(0, ours.Length).Select(numericAt).ToArray();
            double scale = Math.Max(1e-3, numeric.Max(Math.Abs));
            for (int n = 0; n < ours.Length; n++)
                Assert.True(Math.Abs(ours[n] - numeric[n]) <= 2e-3 * scale, $"{name}[{n}]: backward {ours[n]}, finite differences {numeric[n]} (scale {scale})");
        }
    }
}
