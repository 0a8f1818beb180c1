namespace AttentionEngine;

/// <summary>Classifies one block of a mask: by its own arithmetic when it has some, else by evaluating its pairs.</summary>
internal static class BlockClassification
{
    public static BlockKind Of<TMask>(TMask mask, int batch, int head, int q0, int q1, int k0, int k1) where TMask : struct, IMaskMod =>
        mask is IBlockClassifiedMask classified // a constant per TMask once the JIT specialises this method
            ? classified.Classify(batch, head, q0, q1, k0, k1)
            : Evaluate(mask, batch, head, q0, q1, k0, k1);

    /// <summary>Every pair until the block proves mixed (then Partial at once).</summary>
    public static BlockKind Evaluate<TMask>(TMask mask, int batch, int head, int q0, int q1, int k0, int k1) where TMask : struct, IMaskMod
    {
        bool anyKept = false, anyHidden = false;
        for (int q = q0; q < q1; q++)
        for (int k = k0; k < k1; k++)
        {
            if (mask.Keep(batch, head, q, k)) anyKept = true; else anyHidden = true;
            if (anyKept && anyHidden) return BlockKind.Partial;
        }
        return anyKept ? BlockKind.Full : BlockKind.Empty;
    }
}
