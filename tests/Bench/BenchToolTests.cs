using AttentionEngine.Bench.Gemm;
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

    [Fact]
    public void Gemm_shapes_parse_their_layouts_and_refuse_the_rest()
    {
        Assert.Equal(new GemmCase(1024, 512, 2048, Linear: false, TransposedA: true), GemmCase.Parse("1024x512x2048 gradient"));
        Assert.Equal(new GemmCase(8, 16, 32, Linear: true, TransposedA: true), GemmCase.Parse("8x16x32 linear gradient"));
        Assert.Equal(new GemmCase(8, 16, 32, Linear: true), GemmCase.Parse("8x16x32 linear"));
        foreach (var bad in new[] { "8x16x32 gradient gradient", "8x16x32 transposed", "8x16", "8x0x32", "" })
            Assert.Contains("is not a product", Assert.Throws<FormatException>(() => GemmCase.Parse(bad)).Message);
    }

    /// <summary>The ONNX Runtime Gemm peer (transA, transB) multiplies what our MatMul multiplies, in every layout bench gemm times.</summary>
    [Theory]
    [InlineData("37x29x41")]
    [InlineData("37x29x41 linear")]
    [InlineData("37x29x41 gradient")]
    [InlineData("37x29x41 linear gradient")]
    public void The_onnx_runtime_gemm_peer_computes_the_same_product(string shape)
    {
        var c = GemmCase.Parse(shape);
        using var a = c.TransposedA ? TensorRandom.Create<float>(1, ValueDistribution.Normal, c.K, c.M) : TensorRandom.Create<float>(1, ValueDistribution.Normal, c.M, c.K);
        using var b = c.Linear ? TensorRandom.Create<float>(2, ValueDistribution.Normal, c.N, c.K) : TensorRandom.Create<float>(2, ValueDistribution.Normal, c.K, c.N);
        using var ours = NativeTensor<float>.Zeros(c.M, c.N);
        using var theirs = NativeTensor<float>.Zeros(c.M, c.N);
        var aView = c.TransposedA ? TensorLayout.View(a.Storage, [c.M, c.K], [1, c.M]) : a.AsTensorSpan();
        var bView = c.Linear ? TensorLayout.View(b.Storage, [c.K, c.N], [1, c.K]) : b.AsTensorSpan();
        MatMul.Multiply<float, float, float>(aView, bView, ours.AsTensorSpan());
        using (var peer = new OnnxGemmPeer(c, a, b, theirs, threads: 1)) peer.Run();
        for (int n = 0; n < c.M * c.N; n++) Assert.True(Math.Abs(ours.Storage[n] - theirs.Storage[n]) < 1e-4, $"{shape}: element {n}: {ours.Storage[n]} vs {theirs.Storage[n]}");
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

    [Fact]
    public void The_grid_covers_the_issues_sizes_at_fixed_tokens()
    {
        var cases = GridCases.All();
        var prefill = cases.Where(c => !c.Decode).ToArray();
        Assert.Equal(GridCases.SequenceLengths.Count * 4, prefill.Length); // D 64/128 x causal or not
        Assert.Contains(prefill, c => c.QueryLength == 64);
        Assert.Contains(prefill, c => c.QueryLength == 8192);
        Assert.Contains(prefill, c => c.QueryLength % 2 == 1); // odd sizes
        Assert.All(prefill, c => Assert.InRange(c.Batch * c.Heads * c.QueryLength, GridCases.Tokens * 0.8, GridCases.Tokens * 1.2));
        var decode = cases.Where(c => c.Decode).Select(c => c.KeyLength).ToArray();
        Assert.Equal(64, decode.Min());
        Assert.Equal(32768, decode.Max());
    }

    [Fact]
    public void The_grid_markdown_gives_every_ratio_and_the_worst_point()
    {
        var limits = new MachineLimits(200, 30, 2);
        var fast = PerformanceCase.Parse("B1 H8 N256 D64");
        var slow = PerformanceCase.Parse("B1 H32 Hkv8 Lq1 Lk64 D128");
        var rows = new[]
        {
            TimedResult.Of("Cpu", fast, "f32", 0.001, limits, 4), TimedResult.Of("OnnxRuntime", fast, "f32", 0.002, limits, 4),
            TimedResult.Of("Cpu", slow, "f32", 0.004, limits, 4), TimedResult.Of("OnnxRuntime", slow, "f32", 0.001, limits, 4),
        };
        string markdown = GridRun.Markdown(new ResultsDocument("grid", "test CPU", "Avx2", 2, 200, 30, rows));
        Assert.Contains("| B1 H8 N256 D64 | 1.000 |", markdown);
        Assert.Contains("| 2.00x |", markdown);
        Assert.Contains("| 0.25x |", markdown);
        Assert.Contains("1 of 2 points slower than ONNX Runtime; the worst is B1 H32 Hkv8 Lq1 Lk64 D128 at 0.25x.", markdown);
    }

    [Fact]
    public void Grid_options_go_together()
    {
        Assert.False(new RunSettings { Charts = "x" }.Validate().Successful);
        Assert.False(new RunSettings { Grid = true, Shapes = "N64" }.Validate().Successful);
        Assert.True(new RunSettings { Grid = true, Markdown = "grid.md" }.Validate().Successful);
    }

    [Fact]
    public void Head_heatmaps_are_one_png_with_a_panel_per_head()
    {
        var path = Path.Combine(Path.GetTempPath(), $"heads-{Guid.NewGuid():N}.png");
        try
        {
            var panels = Enumerable.Range(0, 5).Select(h => ($"head {h}", new double[,] { { 1, 0 }, { 0.25 * h, 1 - 0.25 * h } })).ToList();
            HeadHeatmaps.Write(path, panels);
            var bytes = File.ReadAllBytes(path);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, bytes[..4]);
            int width = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19];
            int height = (bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23];
            Assert.Equal((4 * 420, 2 * 380), (width, height)); // 5 panels: a row of four, then one
        }
        finally
        {
            File.Delete(path);
        }
    }
    [Fact]
    public void Every_option_description_is_valid_console_markup()
    {
        // Spectre.Console renders descriptions as markup: an unescaped "[N, K]" made `bench gemm --help` fail.
        var descriptions = typeof(GridCases).Assembly.GetTypes()
            .SelectMany(t => t.GetProperties())
            .Select(p => (Name: $"{p.DeclaringType!.Name}.{p.Name}", Text: p.GetCustomAttributes(typeof(System.ComponentModel.DescriptionAttribute), false)
                .Cast<System.ComponentModel.DescriptionAttribute>().SingleOrDefault()?.Description))
            .Where(d => d.Text != null)
            .ToList();
        Assert.True(descriptions.Count > 20, $"found only {descriptions.Count} option descriptions");
        foreach (var (name, text) in descriptions)
        {
            var error = Record.Exception(() => new Spectre.Console.Markup(text!)); // parses (and resolves styles) on construction
            Assert.True(error == null, $"{name}: {error?.Message}");
        }
    }
}
