using System.Runtime.CompilerServices;

namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC11): a counter-based generator, so
/// the random words of a counter are a pure function of (counter, key), with no state to carry between calls or
/// threads. This is the scalar definition, written with plain locals and ref parameters only (no tuples) so that GPU
/// compilers (ILGPU) take it as it is; <see cref="PhiloxLanes"/> computes the same words eight counters at a time and
/// kernels/Cuda/flash_forward.cu's philox_word one word at a time.
/// </summary>
internal static class Philox4x32
{
    public const uint Multiplier0 = 0xD2511F53, Multiplier1 = 0xCD9E8D57;
    public const uint KeyBump0 = 0x9E3779B9, KeyBump1 = 0xBB67AE85;
    public const int Rounds = 10;

    /// <summary>The four words of counter (c0, c1, c2, c3) under key (k0, k1).</summary>
    public static (uint, uint, uint, uint) Generate(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        Run(ref c0, ref c1, ref c2, ref c3, k0, k1);
        return (c0, c1, c2, c3);
    }

    /// <summary>Word <paramref name="index"/> (0..3) of the same output.</summary>
    public static uint Word(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1, int index)
    {
        Run(ref c0, ref c1, ref c2, ref c3, k0, k1);
        return index == 0 ? c0 : index == 1 ? c1 : index == 2 ? c2 : c3;
    }

    /// <summary>The ten rounds, in place: the counter becomes the output.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Run(ref uint c0, ref uint c1, ref uint c2, ref uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < Rounds; round++)
        {
            if (round > 0)
            {
                k0 += KeyBump0;
                k1 += KeyBump1;
            }
            ulong p0 = (ulong)Multiplier0 * c0, p1 = (ulong)Multiplier1 * c2;
            uint n0 = (uint)(p1 >> 32) ^ c1 ^ k0, n2 = (uint)(p0 >> 32) ^ c3 ^ k1;
            c1 = (uint)p1;
            c3 = (uint)p0;
            c0 = n0;
            c2 = n2;
        }
    }
}
