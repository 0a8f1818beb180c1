using System.ComponentModel;
using System.Text.Json;
using AttentionEngine.Bindings.Cuda;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Cuda;

public sealed class CudaResourcesSettings : CommandSettings
{
    [CommandOption("--arch <SM>")]
    [Description("Compute targets, comma-separated. Default: sm_80,sm_86,sm_90.")]
    public string Architectures { get; init; } = "sm_80,sm_86,sm_90";

    [CommandOption("--json")]
    [Description("Print the results as JSON instead of a table.")]
    public bool Json { get; init; }

    public IReadOnlyList<string> ArchitectureList => Architectures.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
}

/// <summary>
/// `bench cuda-resources`: registers, stack frame, spills and dynamic shared memory of every CUDA kernel variant, as
/// ptxas reports them through NVRTC (no GPU needed). A spill marks a variant whose registers ran out.
/// </summary>
internal sealed class CudaResourcesCommand : Command<CudaResourcesSettings>
{
    public override int Execute(CommandContext context, CudaResourcesSettings settings, CancellationToken cancellationToken)
    {
        if (NvrtcCompiler.UnavailableReason is { } reason)
        {
            AnsiConsole.MarkupLine($"[red]NVRTC is not available:[/] {Markup.Escape(reason)}");
            return 2;
        }
        var all = new List<CudaKernelResources>();
        foreach (var architecture in settings.ArchitectureList)
        {
            cancellationToken.ThrowIfCancellationRequested();
            all.AddRange(CudaBackend.KernelResources(architecture));
        }
        if (settings.Json)
        {
            Console.WriteLine(JsonSerializer.Serialize(all, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }
        var table = new Table().AddColumns("kernel", "target", "registers", "stack frame B", "spill stores B", "spill loads B", "dynamic shared KiB");
        foreach (var r in all)
            table.AddRow(r.EntryPoint, r.Architecture, r.Registers.ToString(), r.StackFrameBytes.ToString(),
                r.Spills ? $"[red]{r.SpillStoreBytes}[/]" : "0", r.Spills ? $"[red]{r.SpillLoadBytes}[/]" : "0", $"{r.DynamicSharedBytes / 1024.0:F1}");
        AnsiConsole.MarkupLine($"ptxas report (NVRTC {NvrtcCompiler.Version}) of every flash-attention variant:");
        AnsiConsole.Write(table);
        return 0;
    }
}
