using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Row tiles grouped per task (<see cref="TileGrouping"/>: one walk over the key blocks for several tiles) change no
/// bit of any result against one tile per task, over generated problems of every mask kind, with hostile values, GQA,
/// dropout and weights as the generator draws them. The property suites check the results against the oracle.
/// </summary>
public class TileGroupingTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 300, MaxCost = 3e7 };

    [Fact] public void Groups_change_no_bit_f32() => Check<float>(40, 31);
    [Fact] public void Groups_change_no_bit_bf16() => Check<BFloat16>(30, 32);
    [Fact] public void Groups_change_no_bit_f16() => Check<Half>(30, 33);

    private static void Check<T>(int count, ulong seed) where T : unmanaged
    {
        int grouped = 0;
        foreach (var spec in AttentionGen.Sample(count, seed, Limits))
        {
            using var problem = AttentionProblem<T>.Create(spec);
            var alone = Run(problem, 1);
            var together = Run(problem, 2);
            SameBits.Equal(alone, together, spec.ToString());
            if (problem.Shape.QueryLength > 24) grouped++;
        }
        Assert.True(grouped >= count / 4, $"only {grouped} of {count} problems had more than one row tile");
    }

    private static AttentionResult Run<T>(AttentionProblem<T> problem, int setting) where T : unmanaged
    {
        // The setting is read when the call is planned, on this thread, and travels in the job to every worker.
        TileGrouping.Override = setting;
        try { return problem.Run(Attention.Using(Backend.Cpu)); }
        finally { TileGrouping.Override = 0; }
    }

    [Fact]
    public void Long_heads_are_grouped_and_short_ones_are_not()
    {
        // B1 H8 N8192 D128: 8 MB of K and V per head, 342 tiles a head; B128 H8 N64 D64: 32 KB, 3 tiles.
        Assert.Equal(TileGrouping.Tiles, TileGrouping.TilesPerTask(0, 342, 8, 8192, 128, 128));
        Assert.Equal(1, TileGrouping.TilesPerTask(0, 3, 1024, 64, 64, 64));
        Assert.Equal(1, TileGrouping.TilesPerTask(0, 40, 1, 8192, 128, 128)); // long keys, but 10 groups: too few tasks to share
        Assert.Equal(1, TileGrouping.TilesPerTask(1, 342, 8, 8192, 128, 128));
        Assert.Equal(2, TileGrouping.TilesPerTask(2, 2, 1, 64, 64, 64));
    }
}
