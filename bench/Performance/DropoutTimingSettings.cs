using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

/// <summary>Timing commands that can time each case with dropout beside it, interleaved in the same run.</summary>
public abstract class DropoutTimingSettings : TimingSettings
{
    [CommandOption("--dropout <P>")]
    [Description("Also time every case with dropout of probability P (0 < P < 1), interleaved with the plain call in the same run, and report the cost.")]
    public double? Dropout { get; init; }

    public override ValidationResult Validate() =>
        Dropout is { } p && !(p > 0 && p < 1)
            ? ValidationResult.Error($"--dropout must be in (0, 1); got {p}.")
            : base.Validate();

    /// <summary>The dropout the timed call with dropout uses (fixed seed; the offset moves per call, as in training).</summary>
    internal AttentionDropout DropoutAt(ulong step) => new(Dropout ?? 0, seed: 0x5EED, offset: step);
}
