using System.Diagnostics;
using System.Text.Json;
using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Sparse;

/// <summary>
/// `bench sparse`: the block-sparse goals of the FlexAttention issue. Time against density (random layouts of full and
/// empty 64-blocks) relative to the dense call; causal as a BlockMask against the built-in causal mask; and the time
/// to create BlockMasks at N = 16,384 with 128-blocks, by arithmetic and by evaluating a functor.
/// </summary>
internal sealed class SparseCommand : Command<SparseSettings>
{
    private sealed record Row(string What, double Milliseconds, string Note);

    public override int Execute(CommandContext context, SparseSettings settings, CancellationToken cancellationToken)
    {
        var c = PerformanceCase.ParseList(settings.Shapes)[0];
        var rows = new List<Row>();
        using var tensors = CaseTensors<float>.Create(c);
        var backend = CpuBackend.Default;
        int threads = settings.Threads;

        double Time(Action call) => Timing.MedianSeconds(call, settings.Seconds) * 1e3;
        double dense = Time(() => backend.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { MaxDegreeOfParallelism = threads }));
        rows.Add(new Row($"{c.Name} dense", dense, "1.00x"));
        foreach (double density in new[] { 1.0, 0.5, 0.25, 0.10, 0.05 })
        {
            cancellationToken.ThrowIfCancellationRequested();
            var blocks = RandomLayout(c, density, seed: 7);
            var flex = FlexAttention.Create(blocks, backend);
            double ms = Time(() => flex.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output, new AttentionOptions { MaxDegreeOfParallelism = threads }));
            rows.Add(new Row($"BlockMask density {density:P0} (actual {blocks.Density:P1})", ms, $"{dense / ms:F2}x faster than dense"));
        }
        double builtinCausal = Time(() => backend.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output,
            new AttentionOptions { Mask = Mask.Causal(), MaxDegreeOfParallelism = threads }));
        var causalBlocks = BlockMask.Create(Mask.Causal().ToFunctor(c.QueryLength, c.KeyLength), 1, 1, c.QueryLength, c.KeyLength);
        var causalFlex = FlexAttention.Create(causalBlocks, backend);
        double blockCausal = Time(() => causalFlex.Forward<float>(tensors.Q, tensors.K, tensors.V, tensors.Output,
            new AttentionOptions { MaxDegreeOfParallelism = threads }));
        rows.Add(new Row("causal, built-in Mask.Causal()", builtinCausal, ""));
        rows.Add(new Row("causal as a BlockMask (64-blocks)", blockCausal, $"{blockCausal / builtinCausal - 1:+0.0%;-0.0%} vs built-in"));

        int n = settings.CreateLength;
        int[] documents = Enumerable.Range(0, n).Select(i => i / 1000).ToArray();
        rows.Add(Create("create: causal (arithmetic)", () => BlockMask.Create(Mask.Causal().ToFunctor(n, n), 1, 1, n, n, 128, 128)));
        rows.Add(Create("create: documents, causal (arithmetic)", () => BlockMask.Create(new DocumentMask(documents, documents, true), 1, 1, n, n, 128, 128)));
        rows.Add(Create("create: window & dilated (evaluated pairs)", () => BlockMask.Create(
            MaskMods.And(new DilatedMask(2, 2048), new DilatedMask(3, 1024)), 1, 1, n, n, 128, 128)));

        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { command = "sparse", threads, cpu = ResultsDocument.CpuModel(), rows },
                new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench sparse[/]: {backend.Name} ({backend.ResolvedIsa}), {threads} threads, fp32, {Markup.Escape(ResultsDocument.CpuModel())}");
        var table = new Table().AddColumns("what", "ms", "note");
        foreach (var r in rows) table.AddRow(Markup.Escape(r.What), r.Milliseconds.ToString("F2"), Markup.Escape(r.Note));
        AnsiConsole.Write(table);
        return 0;

        Row Create<TMask>(string what, Func<BlockMask<TMask>> create) where TMask : struct, IMaskMod
        {
            create(); // JIT
            var times = new List<double>();
            for (int trial = 0; trial < 5; trial++)
            {
                long start = Stopwatch.GetTimestamp();
                var mask = create();
                times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                GC.KeepAlive(mask);
            }
            times.Sort();
            return new Row($"{what}, N {n}, 128-blocks", times[2], $"{(long)(n / 128) * (n / 128)} blocks");
        }
    }

    /// <summary>Each 64×64 block full with probability <paramref name="density"/>, else empty (no partial blocks).</summary>
    private static BlockMask<KeepAll> RandomLayout(PerformanceCase c, double density, int seed)
    {
        var random = new Random(seed);
        int qbs = (c.QueryLength + 63) / 64, kbs = (c.KeyLength + 63) / 64;
        var layout = new BlockKind[c.Heads * qbs * kbs];
        for (int n = 0; n < layout.Length; n++) layout[n] = random.NextDouble() < density ? BlockKind.Full : BlockKind.Empty;
        return BlockMask.FromLayout(new KeepAll(), layout, 1, c.Heads, c.QueryLength, c.KeyLength);
    }
}
