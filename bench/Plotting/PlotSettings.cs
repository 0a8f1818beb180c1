using System.ComponentModel;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Plotting;

public sealed class PlotSettings : CommandSettings
{
    [CommandArgument(0, "<FOLDER>")]
    [Description("Folder the PNG charts are written to (created if missing).")]
    public string Folder { get; init; } = "";

    [CommandOption("--input <FILE>")]
    [Description("A JSON file written by `run --json` or `peers --json`; repeat for several. Their rows are plotted together.")]
    public string[] Inputs { get; init; } = [];

    [CommandOption("--json")]
    [Description("Print the written files as JSON instead of lines of text.")]
    public bool Json { get; init; }

    public override ValidationResult Validate()
    {
        if (string.IsNullOrWhiteSpace(Folder)) return ValidationResult.Error("Give the folder to write the charts to.");
        if (Inputs.Length == 0) return ValidationResult.Error("Give at least one --input file (from `bench run --json` or `bench peers --json`).");
        var missing = Inputs.FirstOrDefault(f => !File.Exists(f));
        return missing is null ? ValidationResult.Success() : ValidationResult.Error($"--input file '{missing}' does not exist.");
    }
}
