using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Dropout;

/// <summary>
/// The dropout multipliers (1 / (1 − p) where kept, 0 where dropped) of a block of rows × keys, written as M[j][r]
/// (keys along the outer dimension, rows along the lanes), the tile kernels' score layout. Each row gives its own
/// (query, batch·H + head) counter words; eight rows share one vectorised Philox call per four keys.
/// </summary>
internal static unsafe class DropoutTile
{
    /// <summary>
    /// Fills M[j · ldm + r] for r &lt; <paramref name="rowCount"/> and j &lt; <paramref name="keyCount"/>;
    /// <paramref name="firstKey"/> is a multiple of 4 (the kernels' key blocks are multiples of 64).
    /// </summary>
    /// <param name="queries">each row's query position</param>
    /// <param name="rowStreams">each row's <see cref="DropoutStream.RowStream"/></param>
    public static void Multipliers(in DropoutStream dropout, int* queries, uint* rowStreams, int rowCount, int firstKey, int keyCount,
        float* m, int ldm)
    {
        int r = 0;
        if (PhiloxLanes.IsSupported)
            for (; r + 8 <= rowCount; r += 8) Vectorised(dropout, queries + r, rowStreams + r, firstKey, keyCount, m + r, ldm);
        for (; r < rowCount; r++)
        for (int j = 0; j < keyCount; j += 4)
        {
            var (w0, w1, w2, w3) = Philox4x32.Generate((uint)(firstKey + j) >> 2, (uint)queries[r], rowStreams[r], dropout.Offset, dropout.Key0, dropout.Key1);
            for (int t = 0; t < 4 && j + t < keyCount; t++)
            {
                uint word = t switch { 0 => w0, 1 => w1, 2 => w2, _ => w3 };
                m[(j + t) * ldm + r] = word >= dropout.Threshold ? dropout.Scale : 0f;
            }
        }
    }

    private static void Vectorised(in DropoutStream dropout, int* queries, uint* rowStreams, int firstKey, int keyCount, float* m, int ldm)
    {
        var query = Avx.LoadVector256((uint*)queries);
        var stream = Avx.LoadVector256(rowStreams);
        var offset = Vector256.Create(dropout.Offset);
        // Unsigned word ≥ threshold, as a signed comparison of both with the sign bit flipped: dropped = threshold > word.
        var sign = Vector256.Create(0x80000000u);
        var threshold = (Vector256.Create(dropout.Threshold) ^ sign).AsInt32();
        var scale = Vector256.Create(dropout.Scale);
        for (int j = 0; j < keyCount; j += 4)
        {
            PhiloxLanes.Generate(Vector256.Create((uint)(firstKey + j) >> 2), query, stream, offset, dropout.Key0, dropout.Key1,
                out var w0, out var w1, out var w2, out var w3);
            Store(w0, 0);
            if (j + 1 < keyCount) Store(w1, 1);
            if (j + 2 < keyCount) Store(w2, 2);
            if (j + 3 < keyCount) Store(w3, 3);

            void Store(Vector256<uint> word, int t)
            {
                var dropped = Avx2.CompareGreaterThan(threshold, (word ^ sign).AsInt32()).AsSingle();
                Avx.Store(m + (j + t) * ldm, Avx.AndNot(dropped, scale));
            }
        }
    }
}
