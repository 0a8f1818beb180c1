using ILGPU;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// Which (query, key) pairs are visible and what their score is: the one definition the ILGPU forward and weights
/// kernels share. Order of operations as on the CPU: score = scoreMod(scale · q·k) + bias; a pair is visible when the
/// band, the keep-mask, a bias other than −infinity and the block mask (empty hides, full shows, partial asks the mask
/// functor) all allow it.
/// </summary>
internal static class PairRules
{
    private const byte Empty = 0, Full = 2;

    /// <summary>Block kind of a pair: Full when the call has no block mask.</summary>
    public static byte BlockKindOf<TStorage>(IlGpuAttentionParams<TStorage> p, int b, int h, int i, int j) where TStorage : unmanaged
    {
        if (p.HasBlocks == 0) return Full;
        return p.Kinds[p.Blocks.IndexOfPair(b, h, i, j)];
    }

    /// <summary>The cheap part of visibility (band and block kind): false means hidden for certain.</summary>
    public static bool MaybeVisible<TStorage>(IlGpuAttentionParams<TStorage> p, int b, int h, int i, int j) where TStorage : unmanaged
    {
        long offset = (long)j - i;
        return offset >= p.BandLo && offset <= p.BandHi && BlockKindOf(p, b, h, i, j) != Empty;
    }

    /// <summary>Every rule but the bias: band, keep-mask, block mask and (in partial blocks) the mask functor.</summary>
    public static bool Visible<TStorage, TMask>(IlGpuAttentionParams<TStorage> p, TMask mask, int b, int h, int i, int j)
        where TStorage : unmanaged where TMask : struct, IMaskMod
    {
        long offset = (long)j - i;
        if (offset < p.BandLo || offset > p.BandHi) return false;
        if (p.HasKeep != 0 && p.Keep[b * p.KeepStrideB + h * p.KeepStrideH + i * p.KeepStrideQ + j] == 0) return false;
        byte kind = BlockKindOf(p, b, h, i, j);
        if (kind == Empty) return false;
        return kind == Full || mask.Keep(b, h, i, j);
    }

    /// <summary>
    /// The score of a visible pair from its dot product, saturated to the float range as <see cref="ScoreSaturation"/>
    /// defines; −infinity when the bias (or the score functor) hides it, whatever the dot product holds.
    /// </summary>
    public static float Score<TStorage, TScore>(IlGpuAttentionParams<TStorage> p, TScore scoreMod, float dot, int b, int h, int i, int j)
        where TStorage : unmanaged where TScore : struct, IScoreMod
    {
        float s = ScoreSaturation.SaturateFunctor(scoreMod.Apply(ScoreSaturation.Saturate(dot * p.Scale), b, h, i, j));
        if (p.HasBias != 0) s = ScoreSaturation.AddBias(s, p.Bias[b * p.BiasStrideB + h * p.BiasStrideH + i * p.BiasStrideQ + j]);
        return s;
    }
}
