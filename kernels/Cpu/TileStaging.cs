using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Moves data between the caller's tensors and the tile's float scratch: Qᵀ once per tile, K and V blocks only when they cannot be read in place (a non-float storage
/// type, a non-unit headDim stride, or values whose width is not a whole number of vectors) and the call made no float
/// copies of them (<see cref="KeyValueWidening"/>).
/// </summary>
internal static unsafe class TileStaging
{
    /// <summary>Loads the tile's queries transposed, [D][Br]; padding rows are zero.</summary>
    public static void LoadQueriesTransposed<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int br, CpuTileScratch scratch)
        where T : unmanaged
    {
        int d = job.HeadDim;
        var q = job.Q;
        int r = 0;
        if (typeof(T) == typeof(float) && q.Stride3 == 1 && Simd.Transpose8x8.IsSupported && br % 8 == 0)
        {
            // Groups of 8 contiguous float rows: 8 x 8 register transposes for the whole vectors of D. A last, partial
            // group reads zeros for its missing rows (the row buffer, free on this path) instead of going element by
            // element: the tail tile of B82 H8 N100 D128 had 4 such rows.
            float** group = stackalloc float*[8];
            int wholeColumns = d / 8 * 8;
            float* zeros = null;
            for (; r < rows.Count; r += 8)
            {
                int valid = Math.Min(8, rows.Count - r);
                if (valid < 8 && zeros == null)
                {
                    zeros = scratch.RowBuffer;
                    new Span<float>(zeros, d).Clear();
                }
                for (int i = 0; i < 8; i++) group[i] = i < valid ? (float*)&q.Base[q.Offset(batch, rows.Head(r + i), rows.Query(r + i), 0)] : zeros;
                Simd.Transpose8x8.Rows(group, wholeColumns, scratch.QueryT + r, br);
                for (int x = wholeColumns; x < d; x++)
                    for (int i = 0; i < 8; i++) scratch.QueryT[x * br + r + i] = group[i][x];
            }
        }
        for (; r < rows.Count; r++)
        {
            T* source = &q.Base[q.Offset(batch, rows.Head(r), rows.Query(r), 0)];
            float* row = scratch.RowBuffer;
            if (typeof(T) == typeof(float) && q.Stride3 == 1) row = (float*)source; // contiguous float rows are read where they lie
            else ElementConversion.ToSingle(source, q.Stride3, d, row);
            for (int x = 0; x < d; x++) scratch.QueryT[x * br + r] = row[x];
        }
        // Padding rows are zeros: a run at the end of each Qᵀ row, stored 8 at a time (one store per element, column by
        // column, was most of a tail tile's staging).
        if (r < br)
            for (int x = 0; x < d; x++)
            {
                float* run = scratch.QueryT + x * br;
                int i = r;
                for (; i + 8 <= br; i += 8) Vector256<float>.Zero.Store(run + i);
                for (; i < br; i++) run[i] = 0;
            }
    }

    /// <summary>
    /// True when keys are used where they lie: float rows with a contiguous head dimension, and no padding wanted
    /// (a kernel that reads keys as whole vectors asks for rows padded to <paramref name="paddedDim"/>).
    /// </summary>
    public static bool KeysInPlace<T>(in CpuAttentionJob<T> job, int paddedDim) where T : unmanaged =>
        typeof(T) == typeof(float) && !job.Int8.IsActive && job.K.Stride3 == 1 && paddedDim == job.HeadDim;

    /// <summary>True when values are used where they lie: float rows, contiguous, a whole number of vectors wide.</summary>
    public static bool ValuesInPlace<T>(in CpuAttentionJob<T> job, int vectorCount) where T : unmanaged =>
        typeof(T) == typeof(float) && !job.Int8.IsActive && job.V.Stride3 == 1 && job.ValueDim % vectorCount == 0;

    /// <summary>The key block's rows as floats, zero-padded to <paramref name="paddedDim"/>; returns the row pitch.</summary>
    public static float* Keys<T>(in CpuAttentionJob<T> job, int batch, int kvHead, int firstKey, int keyCount, int paddedDim,
        CpuTileScratch scratch, out nint pitch) where T : unmanaged
    {
        var k = job.K;
        if (!job.WideK.IsEmpty && paddedDim == job.HeadDim)
        {
            pitch = job.WideK.Stride2;
            return &job.WideK.Base[job.WideK.Offset(batch, kvHead, firstKey, 0)];
        }
        if (KeysInPlace(job, paddedDim))
        {
            pitch = k.Stride2;
            return (float*)&k.Base[k.Offset(batch, kvHead, firstKey, 0)];
        }
        int d = job.HeadDim;
        for (int j = 0; j < keyCount; j++)
        {
            float* row = scratch.Keys + j * paddedDim;
            KeyValueRows.Key(job, batch, kvHead, firstKey + j, row);
            for (int x = d; x < paddedDim; x++) row[x] = 0;
        }
        pitch = paddedDim;
        return scratch.Keys;
    }

    /// <summary>The value block's rows as floats, zero-padded to <paramref name="dvPad"/>; returns the row pitch.</summary>
    public static float* Values<T>(in CpuAttentionJob<T> job, int batch, int kvHead, int firstKey, int keyCount, int dvPad,
        int vectorCount, CpuTileScratch scratch, out nint pitch) where T : unmanaged
    {
        var v = job.V;
        if (!job.WideV.IsEmpty && dvPad == job.WideV.Length3)
        {
            pitch = job.WideV.Stride2;
            return &job.WideV.Base[job.WideV.Offset(batch, kvHead, firstKey, 0)];
        }
        if (ValuesInPlace(job, vectorCount))
        {
            pitch = v.Stride2;
            return (float*)&v.Base[v.Offset(batch, kvHead, firstKey, 0)];
        }
        int dv = job.ValueDim;
        for (int j = 0; j < keyCount; j++)
        {
            float* row = scratch.Values + j * dvPad;
            KeyValueRows.Value(job, batch, kvHead, firstKey + j, row);
            for (int c = dv; c < dvPad; c++) row[c] = 0;
        }
        pitch = dvPad;
        return scratch.Values;
    }
}
