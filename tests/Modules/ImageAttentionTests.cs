using System.Numerics.Tensors;

namespace AttentionEngine.Tests.Modules;

/// <summary>Self-attention over feature maps equals the sequence layer on the transposed map plus the residual, bit for bit.</summary>
public class ImageAttentionTests
{
    private const int C = 24, Heads = 4, Batch = 2, Height = 5, Width = 7, Positions = Height * Width;

    private static MultiHeadAttention<float> Layer(bool gated)
    {
        var random = new Random(21);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(random.NextDouble() - 0.5) / 3).ToArray();
        var layer = new MultiHeadAttention<float>(new MultiHeadAttentionConfig
        {
            EmbedDim = C, Heads = Heads, KvHeads = 2, Gate = gated ? new OutputGate(GateKind.Headwise) : null,
        });
        layer.Load(new ReadOnlyTensorSpan<float>(Values(C * C), [C, C], []), new ReadOnlyTensorSpan<float>(Values(C / 2 * C), [C / 2, C], []),
            new ReadOnlyTensorSpan<float>(Values(C / 2 * C), [C / 2, C], []), new ReadOnlyTensorSpan<float>(Values(C * C), [C, C], []),
            Values(C), Values(C / 2), Values(C / 2), Values(C));
        if (gated) layer.LoadGate(new ReadOnlyTensorSpan<float>(Values(Heads * C), [Heads, C], []), Values(Heads));
        return layer;
    }

    private static float[] Map(int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, Batch * C * Positions).Select(_ => (float)(random.NextDouble() * 2 - 1)).ToArray();
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, true)]
    [InlineData(false, false)]
    public void A_feature_map_gets_the_sequence_layer_of_its_pixels_plus_itself(bool gated, bool residual)
    {
        using var layer = Layer(gated);
        var map = Map(22);
        var output = new float[map.Length];
        layer.ForwardImage<float>(new ReadOnlyTensorSpan<float>(map, [Batch, C, Height, Width], []), new TensorSpan<float>(output, [Batch, C, Height, Width], []), residual);

        var tokens = new float[map.Length]; // [B, positions, C]: the transposed map
        for (int b = 0; b < Batch; b++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < Positions; p++) tokens[(b * Positions + p) * C + c] = map[(b * C + c) * Positions + p];
        var sequenceOutput = new float[map.Length];
        layer.Forward<float>(new ReadOnlyTensorSpan<float>(tokens, [Batch, Positions, C], []), new TensorSpan<float>(sequenceOutput, [Batch, Positions, C], []));
        for (int b = 0; b < Batch; b++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < Positions; p++)
                {
                    float expected = sequenceOutput[(b * Positions + p) * C + c] + (residual ? map[(b * C + c) * Positions + p] : 0);
                    Assert.Equal(expected, output[(b * C + c) * Positions + p]);
                }

        var inPlace = (float[])map.Clone();
        layer.ForwardImage<float>(new ReadOnlyTensorSpan<float>(inPlace, [Batch, C, Height, Width], []), new TensorSpan<float>(inPlace, [Batch, C, Height, Width], []), residual);
        Assert.Equal(output, inPlace);
    }

    [Fact]
    public void Maps_that_do_not_fit_are_refused_with_the_reason()
    {
        using var layer = Layer(false);
        var memory = new float[Batch * C * Height * (Width + 2)];
        var e = Assert.Throws<ArgumentException>(() => layer.ForwardImage<float>(
            TensorLayout.ReadOnlyView<float>(memory, [Batch, C, Height, Width], [C * Height * (Width + 2), Height * (Width + 2), Width + 2, 1]),
            new TensorSpan<float>(new float[Batch * C * Positions], [Batch, C, Height, Width], [])));
        Assert.Equal("input", e.ParamName);
        Assert.Contains("height's stride must be width (7) times width's stride", e.Message);
        var channels = Assert.Throws<ArgumentException>(() => layer.ForwardImage<float>(new ReadOnlyTensorSpan<float>(new float[2 * 8 * 35], [2, 8, 5, 7], []), new TensorSpan<float>(new float[2 * 8 * 35], [2, 8, 5, 7], [])));
        Assert.Contains("channels) is 8; expected EmbedDim = 24", channels.Message);
        var shape = Assert.Throws<ArgumentException>(() => layer.ForwardImage<float>(new ReadOnlyTensorSpan<float>(Map(1), [Batch, C, Height, Width], []), new TensorSpan<float>(new float[Batch * C * Positions], [Batch, C, Width, Height], [])));
        Assert.Equal("output", shape.ParamName);
    }
}
