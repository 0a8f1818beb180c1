using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>Options every timing command shares: cases, threads, time per case, JSON output.</summary>
public abstract class TimingSettings : CommandSettings
{
    [CommandOption("--threads <T>")]
    [Description("Threads for the kernels and the machine probes. Default: all cores.")]
    public int Threads { get; init; } = Environment.ProcessorCount;

    [CommandOption("--seconds <S>")]
    [Description("Minimum timed seconds per case (after 0.5 s of warm-up). Default: 1.")]
    public double Seconds { get; init; } = 1;

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    /// <summary>'preset' or cases separated by ';' (<see cref="PerformanceCase.Parse"/>).</summary>
    public abstract string Shapes { get; init; }

    public override ValidationResult Validate()
    {
        try { _ = PerformanceCase.ParseList(Shapes); }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        return Threads < 1 ? ValidationResult.Error($"--threads must be at least 1; got {Threads}.")
            : Seconds <= 0 ? ValidationResult.Error($"--seconds must be positive; got {Seconds}.")
            : ValidationResult.Success();
    }
}
