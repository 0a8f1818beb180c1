namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// The functors and block structure of one call, as the CPU kernels see them: a pinned copy of the block kinds (or
/// none), the mask functor evaluated in partial blocks and the score functor. Without them a call runs with
/// <see cref="KeepAll"/> and <see cref="IdentityScore"/>, which compile away.
/// </summary>
internal readonly unsafe struct FlexMods<TMask, TScore> where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    public FlexMods(TMask mask, TScore score, BlockKind* kinds, BlockGrid grid)
    {
        Mask = mask; Score = score; Kinds = kinds; Grid = grid;
    }

    public static FlexMods<TMask, TScore> None(TScore score) => new(default, score, null, new BlockGrid(1, 1, 1, 1, 1, 1));

    public TMask Mask { get; }
    public TScore Score { get; }
    public BlockKind* Kinds { get; }
    /// <summary>The layout of <see cref="Kinds"/>.</summary>
    public BlockGrid Grid { get; }

    public bool HasBlocks => Kinds != null;

    public static bool ScoreIsIdentity => typeof(TScore) == typeof(IdentityScore);

    public BlockKind KindAt(int batch, int head, int query, int key) => Kinds[Grid.IndexOfPair(batch, head, query, key)];
}
