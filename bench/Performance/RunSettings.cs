using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

public sealed class RunSettings : CommandSettings
{
    [CommandOption("--backend <NAME>")]
    [Description("Backend to time: cpu or reference. Default: cpu.")]
    public string Backend { get; init; } = "cpu";

    [CommandOption("--threads <T>")]
    [Description("Threads for the kernel and the machine probes. Default: all cores.")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--seconds <S>")]
    [Description("Minimum timed seconds per case. Default: 1.")]
    public double Seconds { get; init; } = 1;

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    public override ValidationResult Validate() =>
        Threads < 1 ? ValidationResult.Error($"--threads must be at least 1; got {Threads}.")
        : Seconds <= 0 ? ValidationResult.Error($"--seconds must be positive; got {Seconds}.")
        : Backend is not ("cpu" or "reference") ? ValidationResult.Error($"--backend must be cpu or reference; got '{Backend}'.")
        : ValidationResult.Success();
}
