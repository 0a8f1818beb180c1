using System.ComponentModel;
using AttentionEngine.Bench.Performance;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Cuda;

public sealed class CudaSettings : TimingSettings
{
    [CommandOption("--shapes <SHAPES>")]
    [Description("'preset' (D 64 and 128, N 1k-16k, causal and not, 16k tokens per batch and a 2048-wide model, as FlashAttention's own benchmark), 'decode' (one query, H32 Hkv8 D128, caches of 1k-32k tokens, batch 1 and 16) or cases separated by ';'.")]
    public override string Shapes { get; init; } = "preset";

    [CommandOption("--dtype <TYPES>")]
    [Description("Element types, comma-separated: f16, bf16, f32. Default: f16,bf16.")]
    public string Types { get; init; } = "f16,bf16";

    [CommandOption("--pass <PASS>")]
    [Description("forward (default) or backward: the backward times dQ, dK and dV from a saved forward (FLOPs = 2.5 x the forward's, FlashAttention's count).")]
    public string Pass { get; init; } = "forward";

    public bool Backward => Pass.Equals("backward", StringComparison.OrdinalIgnoreCase);

    public IReadOnlyList<string> TypeList => Types.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override ValidationResult Validate()
    {
        var bad = TypeList.Where(t => t is not ("f16" or "bf16" or "f32")).ToArray();
        if (TypeList.Count == 0 || bad.Length > 0) return ValidationResult.Error($"--dtype must list f16, bf16 or f32; got '{Types}'.");
        if (!Backward && !Pass.Equals("forward", StringComparison.OrdinalIgnoreCase))
            return ValidationResult.Error($"--pass must be forward or backward; got '{Pass}'.");
        return Shapes.Equals("preset", StringComparison.OrdinalIgnoreCase) || Shapes.Equals("decode", StringComparison.OrdinalIgnoreCase)
            ? ValidationResult.Success() : base.Validate();
    }
}
