using System.Numerics.Tensors;
using AttentionEngine.Kernels;

namespace AttentionEngine.Tests.Modules;

/// <summary>Random layer inputs and weights for the module tests, each value exactly representable in its storage type.</summary>
public static class LayerData
{
    /// <summary>
    /// A self-attention layer's configuration as the backward tests draw it: E = heads · headDim, optional biases, rotary
    /// layout and gate (with more than two heads, head 1 ungated: a mixed gate).
    /// </summary>
    public static MultiHeadAttentionConfig Config(int heads, int kvHeads, int headDim, bool bias, RotaryLayout? rotary, GateKind? gate) => new()
    {
        EmbedDim = heads * headDim, Heads = heads, KvHeads = kvHeads, Bias = bias,
        Rotary = rotary is { } r ? new RotaryEmbedding(r) : null,
        Gate = gate is { } g ? new OutputGate(g, heads > 2 ? Enumerable.Range(0, heads).Select(h => h != 1).ToArray() : null) : null,
    };

    /// <summary>[batch, length, width] sequences: the storage (contiguous, or [length, batch, width] memory) and their exact values.</summary>
    public sealed class Sequences<T>(T[] memory, nint[] strides, double[,,] values) where T : unmanaged
    {
        public double[,,] Values { get; } = values;
        public T[] Memory { get; } = memory;
        public ReadOnlyTensorSpan<T> Span => TensorLayout.ReadOnlyView<T>(Memory, [Values.GetLength(0), Values.GetLength(1), Values.GetLength(2)], strides);
    }

    public static Sequences<T> RandomSequences<T>(int batch, int length, int width, bool batchMiddle, Random random) where T : unmanaged
    {
        var values = new double[batch, length, width];
        var memory = new T[batch * length * width];
        nint[] strides = batchMiddle ? [width, batch * width, 1] : [length * width, width, 1];
        for (int b = 0; b < batch; b++)
            for (int t = 0; t < length; t++)
                for (int c = 0; c < width; c++)
                {
                    T x = ElementTypes.FromDouble<T>(Normal(random));
                    memory[b * strides[0] + t * strides[1] + c] = x;
                    values[b, t, c] = ElementTypes.ToDouble(x);
                }
        return new Sequences<T>(memory, strides, values);
    }

    public static double[,] Matrix<T>(int rows, int columns, double scale, Random random) where T : unmanaged
    {
        var m = new double[rows, columns];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++) m[r, c] = ElementTypes.ToDouble(ElementTypes.FromDouble<T>(Normal(random) * scale));
        return m;
    }

    public static double[] Vector<T>(int n, Random random) where T : unmanaged =>
        Enumerable.Range(0, n).Select(_ => ElementTypes.ToDouble(ElementTypes.FromDouble<T>(random.NextDouble() - 0.5))).ToArray();

    public static T[] Elements<T>(double[,] m) where T : unmanaged => m.Cast<double>().Select(ElementTypes.FromDouble<T>).ToArray();

    /// <summary>Random key padding, with the whole of sequence 0 padded now and then (its rows must come out as the bias alone).</summary>
    public static bool[,] Padding(int batch, int keys, Random random)
    {
        var padding = new bool[batch, keys];
        bool allPadded = random.Next(4) == 0;
        for (int b = 0; b < batch; b++)
            for (int j = 0; j < keys; j++) padding[b, j] = (b == 0 && allPadded) || random.Next(3) == 0;
        return padding;
    }

    private static double Normal(Random random) => Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
