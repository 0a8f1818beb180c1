using System.ComponentModel;
using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Peers;

public sealed class PeersSettings : CommandSettings
{
    /// <summary>Sequence-length sweeps at D 64 and 128, causal and not, and a decode case.</summary>
    public const string DefaultShapes =
        "B1 H8 N512 D64; B1 H8 N1024 D64; B1 H8 N2048 D64; B1 H8 N4096 D64; " +
        "B1 H8 N512 D128; B1 H8 N1024 D128; B1 H8 N2048 D128; " +
        "B1 H8 N1024 D64 causal; B1 H8 N2048 D64 causal; B1 H8 N4096 D64 causal; " +
        "B1 H32 Hkv8 Lq1 Lk4096 D128";

    [CommandOption("--shapes <SHAPES>")]
    [Description("Cases separated by ';' (see `run --shapes`), or 'preset' for run's goal cases. Default: a sequence-length sweep.")]
    public string Shapes { get; init; } = DefaultShapes;

    [CommandOption("--threads <T>")]
    [Description("Threads for both engines. Default: all cores.")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--seconds <S>")]
    [Description("Minimum timed seconds per case and engine. Default: 1.")]
    public double Seconds { get; init; } = 1;

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    public override ValidationResult Validate()
    {
        try { _ = PerformanceCase.ParseList(Shapes); }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        return Threads < 1 ? ValidationResult.Error($"--threads must be at least 1; got {Threads}.")
            : Seconds <= 0 ? ValidationResult.Error($"--seconds must be positive; got {Seconds}.")
            : ValidationResult.Success();
    }
}
