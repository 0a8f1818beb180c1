using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Performance;

public sealed class RunSettings : DropoutTimingSettings
{
    [CommandOption("--backend <NAME>")]
    [Description("Backend to time: cpu or reference. Default: cpu.")]
    public string Backend { get; init; } = "cpu";

    [CommandOption("--shapes <SHAPES>")]
    [Description("'preset' (the issue's goal cases) or cases separated by ';', e.g. \"B1 H32 Hkv8 Lq1 Lk8192 D128; B2 H16 N2048 D64 causal\".")]
    public override string Shapes { get; init; } = "preset";

    [CommandOption("--dtype <TYPES>")]
    [Description("Storage types, comma-separated: f32, f16, bf16; or 'auto' (f32, plus bf16 for decode cases). Default: auto.")]
    public string Types { get; init; } = "auto";

    [CommandOption("--grid")]
    [Description("Time the grid instead of --shapes: N 64..8192 (powers of two and odd sizes), D 64/128, causal and not, B·H·N = 65,536 tokens; decode Lk 64..32768; fp32, ours and ONNX Runtime's Attention in the same run.")]
    public bool Grid { get; init; }

    [CommandOption("--charts <FOLDER>")]
    [Description("With --grid: write one PNG per family (D and mask; decode) to this folder.")]
    public string? Charts { get; init; }

    [CommandOption("--markdown <FILE>")]
    [Description("With --grid: write the table as Markdown to this file.")]
    public string? Markdown { get; init; }

    public override ValidationResult Validate()
    {
        if (!Grid && (Charts is not null || Markdown is not null))
            return ValidationResult.Error("--charts and --markdown go with --grid.");
        if (Grid && (Shapes != "preset" || Types != "auto" || Backend != "cpu"))
            return ValidationResult.Error("--grid times its own cases (fp32, cpu and ONNX Runtime); leave out --shapes, --dtype and --backend.");
        if (Types != "auto" && Types.Split(',').Any(t => t.Trim() is not ("f32" or "f16" or "bf16")))
            return ValidationResult.Error($"--dtype must be auto or a list of f32, f16, bf16; got '{Types}'.");
        if (Backend is not ("cpu" or "reference"))
            return ValidationResult.Error($"--backend must be cpu or reference; got '{Backend}'.");
        if (Grid && Dropout is not null)
            return ValidationResult.Error("--dropout times --shapes cases; leave it out with --grid.");
        return base.Validate();
    }
}
