using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Text.Json;
using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Abi;

public sealed class AbiSettings : TimingSettings
{
    [CommandOption("--shapes <SHAPES>")]
    [Description("Cases separated by ';' (see `run --shapes`), fp32. Default: a tiny call and a long one.")]
    public override string Shapes { get; init; } = "B1 H1 N16 D16; B1 H8 N2048 D64";

    [CommandOption("--library <PATH>")]
    [Description("The published C ABI library. Default: ATTENTION_ENGINE_LIBRARY, else out/native/libattention_engine.so (`dotnet publish bindings/Native -c Release -o out/native`).")]
    public string? Library { get; init; }

    [CommandOption("--rounds <N>")]
    [Description("Alternating rounds of managed and C ABI timing per case. Default: 5.")]
    public int Rounds { get; init; } = 5;

    public string ResolvedLibrary =>
        Library ?? Environment.GetEnvironmentVariable("ATTENTION_ENGINE_LIBRARY") ?? Path.Combine("out", "native", "libattention_engine.so");

    public override ValidationResult Validate() =>
        Rounds < 1 ? ValidationResult.Error($"--rounds must be at least 1; got {Rounds}.")
        : !File.Exists(ResolvedLibrary) ? ValidationResult.Error($"No library at {ResolvedLibrary}: publish it with `dotnet publish bindings/Native -c Release -o out/native`, or pass --library.")
        : base.Validate();
}

/// <summary>
/// `bench abi`: the cost of calling through the C ABI. The same problem, on the same memory, in one process, timed in
/// alternating rounds through the managed <see cref="Attention.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, in AttentionOptions)"/>
/// (JIT) and through ae_forward of the published NativeAOT library (its own runtime and ahead-of-time code). The
/// difference is everything a C caller pays: DLTensor checks, options, the transition, and AOT against JIT code.
/// </summary>
internal sealed unsafe class AbiCommand : Command<AbiSettings>
{
    private sealed record Row(string Case, double ManagedMicroseconds, double NativeMicroseconds, double[] ManagedRounds, double[] NativeRounds)
    {
        public double DifferenceMicroseconds => NativeMicroseconds - ManagedMicroseconds;
    }

    public override int Execute(CommandContext context, AbiSettings settings, CancellationToken cancellationToken)
    {
        var library = new NativeLibraryCalls(settings.ResolvedLibrary);
        var rows = new List<Row>();
        // The DLTensors, their shapes and strides, and the options live in native memory: the timing lambdas capture
        // their addresses, which stack memory could not give them.
        var tensors = (NativeLibraryCalls.DLTensor*)NativeMemory.Alloc(4, (nuint)sizeof(NativeLibraryCalls.DLTensor));
        var options = (NativeLibraryCalls.Options*)NativeMemory.Alloc((nuint)sizeof(NativeLibraryCalls.Options));
        long* layout = (long*)NativeMemory.Alloc(32, sizeof(long));
        try
        {
            foreach (var c in PerformanceCase.ParseList(settings.Shapes))
            {
                cancellationToken.ThrowIfCancellationRequested();
                rows.Add(TimeCase(c, settings, library, tensors, options, layout));
            }
        }
        finally
        {
            NativeMemory.Free(tensors);
            NativeMemory.Free(options);
            NativeMemory.Free(layout);
        }

        long bytes = new FileInfo(settings.ResolvedLibrary).Length;
        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(new { library = settings.ResolvedLibrary, libraryBytes = bytes, library.Version, settings.Threads, rows = rows.Select(r => new
            {
                r.Case, r.ManagedMicroseconds, r.NativeMicroseconds, r.DifferenceMicroseconds, r.ManagedRounds, r.NativeRounds,
            }) }, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase }));
            return 0;
        }
        AnsiConsole.MarkupLine($"[bold]bench abi[/]: {Markup.Escape(settings.ResolvedLibrary)} {library.Version} ({bytes / 1e6:F1} MB), {settings.Threads} threads, fp32, " +
            $"{settings.Rounds} alternating rounds of {settings.Seconds:G} s per side; medians of the rounds' medians");
        var table = new Table().AddColumns("case", "managed (JIT)", "C ABI (NativeAOT)", "difference", "round medians");
        foreach (var r in rows)
            table.AddRow(r.Case, Micro(r.ManagedMicroseconds), Micro(r.NativeMicroseconds),
                $"{r.DifferenceMicroseconds:+0.00;-0.00} us ({r.NativeMicroseconds / r.ManagedMicroseconds:F2}x)",
                $"{Micro(r.ManagedRounds.Min())}-{Micro(r.ManagedRounds.Max())} / {Micro(r.NativeRounds.Min())}-{Micro(r.NativeRounds.Max())}");
        AnsiConsole.Write(table);
        return 0;
    }

    private static Row TimeCase(PerformanceCase c, AbiSettings settings, NativeLibraryCalls library,
        NativeLibraryCalls.DLTensor* tensors, NativeLibraryCalls.Options* options, long* layout)
    {
        using var data = CaseTensors<float>.Create(c);
        var mask = c.Causal ? Mask.Causal() : null;
        tensors[0] = NativeLibraryCalls.Describe(data.Q, layout, layout + 16);
        tensors[1] = NativeLibraryCalls.Describe(data.K, layout + 4, layout + 20);
        tensors[2] = NativeLibraryCalls.Describe(data.V, layout + 8, layout + 24);
        tensors[3] = NativeLibraryCalls.Describe(data.Output, layout + 12, layout + 28);
        *options = new NativeLibraryCalls.Options
        {
            StructSize = (uint)sizeof(NativeLibraryCalls.Options),
            Mask = c.Causal ? 1u : 0u, // AE_MASK_CAUSAL, top-left as Mask.Causal()
            MaxThreads = settings.Threads,
            WindowLeft = -1,
            WindowRight = -1,
        };
        double[] managed = new double[settings.Rounds], native = new double[settings.Rounds];
        for (int round = 0; round < settings.Rounds; round++)
        {
            managed[round] = 1e6 * Timing.MedianSeconds(() => Attention.Forward<float>(data.Q, data.K, data.V, data.Output,
                new AttentionOptions { Mask = mask, MaxDegreeOfParallelism = settings.Threads }), settings.Seconds);
            native[round] = 1e6 * Timing.MedianSeconds(() => library.Forward(tensors, tensors + 1, tensors + 2, tensors + 3, options), settings.Seconds);
        }
        return new Row(c.Name, Median(managed), Median(native), managed, native);
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    private static string Micro(double microseconds) => microseconds < 1000 ? $"{microseconds:F2} us" : $"{microseconds / 1000:F2} ms";
}
