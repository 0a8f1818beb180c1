using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// The dropout multipliers (1 / (1 − p) where kept, 0 where dropped) of a block of rows × keys in the tile kernels'
/// score layout, M[j][r] (keys along the outer dimension, rows along the lanes): written out (the backward needs them
/// twice) or multiplied straight into a probability block (the forward). Each row gives its own (query,
/// batch·H + head) counter words; eight rows share one vectorised Philox call per four keys.
/// </summary>
internal static unsafe class DropoutTile
{
    /// <summary>
    /// M[j · ldm + r] for r &lt; <paramref name="rowCount"/> and j &lt; <paramref name="keyCount"/>, the multiplier of key
    /// firstKey + j (any first key: a group of four straddling it draws its Philox call for the keys inside).
    /// </summary>
    /// <param name="queries">each row's query position</param>
    /// <param name="rowStreams">each row's <see cref="DropoutStream.RowStream"/></param>
    public static void Multipliers(in DropoutStream dropout, int* queries, uint* rowStreams, int rowCount, int firstKey, int keyCount, float* m, int ldm) =>
        Run(dropout, queries, rowStreams, rowCount, firstKey, keyCount, m, ldm, multiply: false);

    /// <summary>P[j · ldp + r] ← P[j · ldp + r] · M[j][r]: the same multipliers, applied in place without being stored.</summary>
    public static void Apply(in DropoutStream dropout, int* queries, uint* rowStreams, int rowCount, int firstKey, int keyCount, float* p, int ldp) =>
        Run(dropout, queries, rowStreams, rowCount, firstKey, keyCount, p, ldp, multiply: true);

    private static void Run(in DropoutStream dropout, int* queries, uint* rowStreams, int rowCount, int firstKey, int keyCount, float* block, int ld,
        bool multiply)
    {
        int r = 0;
        if (PhiloxLanes.IsSupported && rowCount >= 8)
        {
            PhiloxLanes.Schedule(dropout.Key0, dropout.Key1, out var keys0, out var keys1);
            for (; r + 8 <= rowCount; r += 8)
                Vectorised(dropout, keys0, keys1, queries + r, rowStreams + r, firstKey, keyCount, block + r, ld, multiply);
        }
        int keyEnd = firstKey + keyCount;
        for (; r < rowCount; r++)
        for (int group = firstKey & ~3; group < keyEnd; group += 4)
        {
            var (w0, w1, w2, w3) = Philox4x32.Generate((uint)group >> 2, (uint)queries[r], rowStreams[r], dropout.Offset, dropout.Key0, dropout.Key1);
            for (int t = 0; t < 4; t++)
            {
                int key = group + t;
                if (key < firstKey || key >= keyEnd) continue;
                uint word = t switch { 0 => w0, 1 => w1, 2 => w2, _ => w3 };
                float factor = word >= dropout.Threshold ? dropout.Scale : 0f;
                float* at = block + (key - firstKey) * ld + r;
                *at = multiply ? *at * factor : factor;
            }
        }
    }

    private static void Vectorised(in DropoutStream dropout, in PhiloxLanes.RoundKeys keys0, in PhiloxLanes.RoundKeys keys1,
        int* queries, uint* rowStreams, int firstKey, int keyCount, float* block, int ld, bool multiply)
    {
        // Counters of lanes 0, 1, 4, 5 in A and 2, 3, 6, 7 in B, so that packed words come out in lane order.
        var queryA = PhiloxLanes.CounterWords((uint*)queries, forB: false);
        var queryB = PhiloxLanes.CounterWords((uint*)queries, forB: true);
        var streamA = PhiloxLanes.CounterWords(rowStreams, forB: false);
        var streamB = PhiloxLanes.CounterWords(rowStreams, forB: true);
        var offset = Vector256.Create((ulong)dropout.Offset);
        // Unsigned word ≥ threshold, as a signed comparison of both with the sign bit flipped: dropped = threshold > word.
        var sign = Vector256.Create(0x80000000u);
        var threshold = (Vector256.Create(dropout.Threshold) ^ sign).AsInt32();
        var scale = Vector256.Create(dropout.Scale);
        // Groups of four keys (one Philox call each) covering [firstKey, keyEnd); the decode kernel's splits may start
        // anywhere, the tile kernels' blocks on multiples of 64.
        int keyEnd = firstKey + keyCount;
        for (int first = firstKey & ~3; first < keyEnd; first += 4)
        {
            var group = Vector256.Create((ulong)((uint)first >> 2));
            PhiloxLanes.Generate(group, queryA, streamA, offset, group, queryB, streamB, offset, keys0, keys1,
                out var a0, out var a1, out var a2, out var a3, out var b0, out var b1, out var b2, out var b3);
            Store(PhiloxLanes.LowHalves(a0, b0), first);
            Store(PhiloxLanes.LowHalves(a1, b1), first + 1);
            Store(PhiloxLanes.LowHalves(a2, b2), first + 2);
            Store(PhiloxLanes.LowHalves(a3, b3), first + 3);
        }

        void Store(Vector256<uint> word, int key)
        {
            if (key < firstKey || key >= keyEnd) return;
            float* at = block + (key - firstKey) * ld;
            var factor = Avx.AndNot(Avx2.CompareGreaterThan(threshold, (word ^ sign).AsInt32()).AsSingle(), scale);
            Avx.Store(at, multiply ? Avx.Multiply(Avx.LoadVector256(at), factor) : factor);
        }
    }
}
