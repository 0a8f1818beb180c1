using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>Options every timing command shares, whatever its cases are: threads and time per case.</summary>
public abstract class ThreadedSettings : CommandSettings
{
    [CommandOption("--threads <T>")]
    [Description("Threads for the kernels, the peers and the machine probes. Default: all cores.")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--seconds <S>")]
    [Description("Minimum timed seconds per case (after 0.5 s of warm-up). Default: 1.")]
    public double Seconds { get; init; } = 1;

    /// <summary>Checks threads and time; commands check their cases first and end with this.</summary>
    public override ValidationResult Validate() =>
        Threads < 1 ? ValidationResult.Error($"--threads must be at least 1; got {Threads}.")
        : Seconds <= 0 ? ValidationResult.Error($"--seconds must be positive; got {Seconds}.")
        : ValidationResult.Success();
}
