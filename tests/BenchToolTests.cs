using AttentionEngine.Bench.Peers;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Bench.Plotting;

namespace AttentionEngine.Tests;

/// <summary>The bench tool's own logic: shape parsing, the ONNX Runtime peer, charts.</summary>
public class BenchToolTests
{
    [Fact]
    public void Shapes_parse_with_defaults_and_name_the_bad_part()
    {
        var c = PerformanceCase.Parse("B2 H32 Hkv8 Lq1 Lk4096 D128");
        Assert.Equal((2, 32, 8, 1, 4096, 128, false), (c.Batch, c.Heads, c.KvHeads, c.QueryLength, c.KeyLength, c.HeadDim, c.Causal));
        Assert.True(c.Decode);
        var square = PerformanceCase.Parse("N1024 causal");
        Assert.Equal((1, 8, 8, 1024, 1024, 64, true), (square.Batch, square.Heads, square.KvHeads, square.QueryLength, square.KeyLength, square.HeadDim, square.Causal));
        Assert.Equal(2, PerformanceCase.ParseList("N64; B2 N32 D16").Count);
        Assert.Contains("'X3'", Assert.Throws<FormatException>(() => PerformanceCase.Parse("N64 X3")).Message);
        Assert.Contains("'D0'", Assert.Throws<FormatException>(() => PerformanceCase.Parse("N64 D0")).Message);
        Assert.Contains("give N", Assert.Throws<FormatException>(() => PerformanceCase.Parse("B1 H8 D64")).Message);
        Assert.Contains("multiple of Hkv", Assert.Throws<FormatException>(() => PerformanceCase.Parse("H6 Hkv4 N8")).Message);
    }

    [Theory]
    [InlineData("B2 H4 Hkv2 N70 D32 causal")]
    [InlineData("B1 H8 Lq1 Lk300 D64")]
    public void The_onnx_runtime_peer_computes_the_same_attention(string shape)
    {
        // Proves the hand-built ONNX model (opset-23 Attention, GQA, causal) is the problem we time against.
        var c = PerformanceCase.Parse(shape);
        using var tensors = CaseTensors<float>.Create(c);
        using var theirs = NativeTensor<float>.Zeros(c.Batch, c.Heads, c.QueryLength, c.HeadDim);
        using var peer = new OnnxAttentionPeer(c, tensors, theirs, threads: 1);
        peer.Run();
        CpuBackend.Default.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output,
            new AttentionOptions { Mask = c.Causal ? Mask.Causal() : null });
        var ours = tensors.Output.ToArray();
        var other = theirs.ToArray();
        double difference = ours.Zip(other, (a, b) => Math.Abs((double)a - b)).Max();
        Assert.True(difference < 1e-5, $"max difference {difference}");
        Assert.Contains(other, x => x != 0);
    }

    [Fact]
    public void Plot_writes_a_png_per_shape_family()
    {
        var limits = new MachineLimits(200, 30, 2);
        var rows = new[] { "B1 H8 N256 D64", "B1 H8 N512 D64", "B1 H8 Lq1 Lk4096 D64" }
            .Select(PerformanceCase.Parse)
            .Select((c, n) => TimedResult.Of("Cpu", c, "f32", 0.001 * (n + 1), limits, 4))
            .ToArray();
        string folder = Path.Combine(Path.GetTempPath(), $"bench-plot-{Guid.NewGuid():N}");
        string input = Path.Combine(folder, "run.json");
        Directory.CreateDirectory(folder);
        try
        {
            File.WriteAllText(input, new ResultsDocument("run", "test CPU", "Avx512", 2, 200, 30, rows).ToJson());
            int exit = new PlotCommand().Execute(null!, new PlotSettings { Folder = folder, Inputs = [input] }, CancellationToken.None);
            Assert.Equal(0, exit);
            var pngs = Directory.GetFiles(folder, "*.png");
            Assert.Equal(2, pngs.Length); // prefill family and decode family
            Assert.All(pngs, p => Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(p).Take(4)));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
