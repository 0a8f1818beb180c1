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

    [CommandOption("--shapes <SHAPES>")]
    [Description("'preset' (the issue's goal cases) or cases separated by ';', e.g. \"B1 H32 Hkv8 Lq1 Lk8192 D128; B2 H16 N2048 D64 causal\".")]
    public string Shapes { get; init; } = "preset";

    [CommandOption("--dtype <TYPES>")]
    [Description("Storage types, comma-separated: f32, f16, bf16; or 'auto' (f32, plus bf16 for decode cases). Default: auto.")]
    public string Types { get; init; } = "auto";

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    public override ValidationResult Validate()
    {
        try { _ = PerformanceCase.ParseList(Shapes); }
        catch (FormatException e) { return ValidationResult.Error(e.Message); }
        if (Types != "auto" && Types.Split(',').Any(t => t.Trim() is not ("f32" or "f16" or "bf16")))
            return ValidationResult.Error($"--dtype must be auto or a list of f32, f16, bf16; got '{Types}'.");
        return
        Threads < 1 ? ValidationResult.Error($"--threads must be at least 1; got {Threads}.")
        : Seconds <= 0 ? ValidationResult.Error($"--seconds must be positive; got {Seconds}.")
        : Backend is not ("cpu" or "reference") ? ValidationResult.Error($"--backend must be cpu or reference; got '{Backend}'.")
        : ValidationResult.Success();
    }
}
