namespace AttentionEngine;

/// <summary>A block mask and score functor evaluated one pair at a time, for the float64 Reference backend.</summary>
internal interface IPairFunctors
{
    bool HasScore { get; }
    bool Keep(int batch, int head, int query, int key);
    float Score(float score, int batch, int head, int query, int key);
    float Derivative(float score, int batch, int head, int query, int key);
}

/// <summary>
/// The pair-by-pair meaning of a block mask: empty blocks hide, full blocks show, partial blocks ask the mask functor.
/// </summary>
internal sealed class PairFunctors<TMask, TScore>(BlockMask<TMask>? blocks, TScore score) : IPairFunctors
    where TMask : struct, IMaskMod where TScore : struct, IScoreMod
{
    public bool HasScore => typeof(TScore) != typeof(IdentityScore);

    public bool Keep(int batch, int head, int query, int key)
    {
        if (blocks is null) return true;
        return blocks[batch, head, query / blocks.QueryBlock, key / blocks.KeyBlock] switch
        {
            BlockKind.Full => true,
            BlockKind.Partial => blocks.Mask.Keep(batch, head, query, key),
            _ => false,
        };
    }

    public float Score(float value, int batch, int head, int query, int key) => score.Apply(value, batch, head, query, key);

    public float Derivative(float value, int batch, int head, int query, int key) => score.Derivative(value, batch, head, query, key);
}
