using System.ComponentModel;
using AttentionEngine.Bench.Performance;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Peers;

public sealed class PeersSettings : TimingSettings
{
    /// <summary>Sequence-length sweeps at D 64 and 128, causal and not, and a decode case.</summary>
    public const string DefaultShapes =
        "B1 H8 N512 D64; B1 H8 N1024 D64; B1 H8 N2048 D64; B1 H8 N4096 D64; " +
        "B1 H8 N512 D128; B1 H8 N1024 D128; B1 H8 N2048 D128; " +
        "B1 H8 N1024 D64 causal; B1 H8 N2048 D64 causal; B1 H8 N4096 D64 causal; " +
        "B1 H32 Hkv8 Lq1 Lk4096 D128";

    [CommandOption("--shapes <SHAPES>")]
    [Description("Cases separated by ';' (see `run --shapes`), or 'preset' for run's goal cases. Default: a sequence-length sweep.")]
    public override string Shapes { get; init; } = DefaultShapes;
}
