using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Verification;

public sealed class VerifySettings : CommandSettings
{
    [CommandOption("--backend <NAME>")]
    [Description("Backend to verify: all, or one of the backend names (reference, ...). Default: all.")]
    public string Backend { get; init; } = "all";

    [CommandOption("--cases <N>")]
    [Description("Number of generated problems. Default: 200.")]
    public int Cases { get; init; } = 200;

    [CommandOption("--seed <S>")]
    [Description("Seed of the problem sequence; the same seed gives the same problems everywhere. Default: 1.")]
    public ulong Seed { get; init; } = 1;

    [CommandOption("--dtype <TYPE>")]
    [Description("Storage type: all (cycles f32, f16, bf16), f32, f16 or bf16. Default: all.")]
    public string DType { get; init; } = "all";

    [CommandOption("--case <INDEX>")]
    [Description("Run only this case of the sequence (replays a failure).")]
    public int? Case { get; init; }

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of tables.")]
    public bool Json { get; init; }

    public override ValidationResult Validate()
    {
        if (Cases < 1) return ValidationResult.Error($"--cases must be at least 1; got {Cases}.");
        if (Case is { } c && (c < 0 || c >= Cases))
            return ValidationResult.Error($"--case {c} is outside the sequence of --cases {Cases} (0..{Cases - 1}).");
        if (DType is not ("all" or "f32" or "f16" or "bf16"))
            return ValidationResult.Error($"--dtype must be all, f32, f16 or bf16; got '{DType}'.");
        return ValidationResult.Success();
    }
}
