using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>Options the attention timing commands share: <see cref="PerformanceCase"/> shapes and JSON output, beside threads and time.</summary>
public abstract class TimingSettings : ThreadedSettings
{
    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    /// <summary>'preset' or cases separated by ';' (<see cref="PerformanceCase.Parse"/>).</summary>
    public abstract string Shapes { get; init; }

    public override ValidationResult Validate()
    {
        try { _ = PerformanceCase.ParseList(Shapes); }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        return base.Validate();
    }
}
