namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// The functors and block structure of one call, as the CPU kernels see them: a pinned copy of the block kinds (or
/// none), the mask functor evaluated in partial blocks and the score functor. Without them a call runs with
/// <see cref="KeepAll"/> and <see cref="IdentityScore"/>, which compile away.
/// </summary>
internal readonly unsafe struct FlexMods<TMask, TScore> where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    public FlexMods(TMask mask, TScore score, BlockKind* kinds, int batch, int heads, int queryBlocks, int keyBlocks, int queryBlock, int keyBlock)
    {
        Mask = mask; Score = score; Kinds = kinds;
        Batch = batch; Heads = heads; QueryBlocks = queryBlocks; KeyBlocks = keyBlocks; QueryBlock = queryBlock; KeyBlock = keyBlock;
    }

    public static FlexMods<TMask, TScore> None(TScore score) => new(default, score, null, 0, 0, 0, 0, 1, 1);

    public TMask Mask { get; }
    public TScore Score { get; }
    public BlockKind* Kinds { get; }
    public int Batch { get; }
    public int Heads { get; }
    public int QueryBlocks { get; }
    public int KeyBlocks { get; }
    public int QueryBlock { get; }
    public int KeyBlock { get; }

    public bool HasBlocks => Kinds != null;

    public static bool ScoreIsIdentity => typeof(TScore) == typeof(IdentityScore);

    public BlockKind KindAt(int batch, int head, int query, int key) =>
        Kinds[(((Batch == 1 ? 0 : batch) * Heads + (Heads == 1 ? 0 : head)) * QueryBlocks + query / QueryBlock) * KeyBlocks + key / KeyBlock];
}
