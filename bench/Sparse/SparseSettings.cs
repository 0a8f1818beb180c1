using System.ComponentModel;
using AttentionEngine.Bench.Performance;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Sparse;

public sealed class SparseSettings : TimingSettings
{
    [CommandOption("--shapes <SHAPES>")]
    [Description("The dense case the block masks are applied to (one case). Default: B1 H4 N8192 D64.")]
    public override string Shapes { get; init; } = "B1 H4 N8192 D64";

    [CommandOption("--create-length <N>")]
    [Description("Sequence length for the BlockMask creation timings (128-blocks). Default: 16384.")]
    public int CreateLength { get; init; } = 16_384;
}
