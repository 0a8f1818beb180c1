using System.Runtime.Intrinsics;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Writes a finished tile: O / l into the output (rounded once to the storage type), LSE = m + ln l, and
/// for rows that saw no key at all zeros and -infinity, never NaN. Every kernel sets <see cref="CpuTileScratch.RowScale"/>
/// (1 unless the guarded pass scaled a row).
/// </summary>
internal static unsafe class Epilogue
{
    public static void Write<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, int dvPad, CpuTileScratch scratch)
        where T : unmanaged
    {
        int dv = job.ValueDim;
        var output = job.Output;
        for (int r = 0; r < rows.Count; r++)
        {
            int head = rows.Head(r), query = rows.Query(r);
            float sum = scratch.RowSum[r];
            float* accumulated = scratch.Output + r * dvPad;
            T* destination = &output.Base[output.Offset(batch, head, query, 0)];
            // Float rows that are contiguous take the quotients directly; others go through the row buffer and round once.
            bool direct = typeof(T) == typeof(float) && output.Stride3 == 1;
            float* row = direct ? (float*)destination : scratch.RowBuffer;
            if (sum == 0) new Span<float>(row, dv).Clear();
            else
            {
                // One division per row, then multiplies: a vector division per 16 values (several cycles each) was 6% of
                // a B128 H8 N64 D64 call. The quotient takes one more rounding (within an ulp of O / l).
                Scale(accumulated, 1 / sum, row, dv);
                // A row of the guarded pass that saw huge values accumulated at 2^-32; undone after the division (exact).
                float unscale = 1 / scratch.RowScale[r];
                if (unscale != 1) Scale(row, unscale, row, dv);
            }
            if (!direct) ElementConversion.FromSingle(scratch.RowBuffer, dv, destination, output.Stride3);
            if (!job.Lse.IsEmpty)
                job.Lse[batch, head, query, 0] = sum == 0 ? float.NegativeInfinity : scratch.RowMax[r] + MathF.Log(sum);
        }
    }

    /// <summary>
    /// destination[x] = source[x] · factor for <paramref name="n"/> floats (the two may be the same row). TensorPrimitives'
    /// per-call dispatch cost more than the work on rows of 64 floats: 8% of a B128 H8 N64 D64 profile. The same
    /// products, so the same bits.
    /// </summary>
    private static void Scale(float* source, float factor, float* destination, int n)
    {
        int x = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var f = Vector512.Create(factor);
            for (; x + 16 <= n; x += 16) (Vector512.Load(source + x) * f).Store(destination + x);
        }
        if (Vector256.IsHardwareAccelerated)
        {
            var f = Vector256.Create(factor);
            for (; x + 8 <= n; x += 8) (Vector256.Load(source + x) * f).Store(destination + x);
        }
        for (; x < n; x++) destination[x] = source[x] * factor;
    }

    /// <summary>Writes probabilities of one block (in the score scratch) into the weights tensor.</summary>
    public static void WriteWeights<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows, ScoreLayout layout, int firstKey, int keyCount, float* probabilities)
        where T : unmanaged
    {
        var weights = job.Weights;
        for (int r = 0; r < rows.Count; r++)
        {
            float* row = &weights.Base[weights.Offset(batch, rows.Head(r), rows.Query(r), firstKey)];
            for (int j = 0; j < keyCount; j++) row[j * weights.Stride3] = probabilities[layout[r, j]];
        }
    }

    /// <summary>Zeros the tile's weight rows, so keys no block visited read as probability 0.</summary>
    public static void ClearWeights<T>(in CpuAttentionJob<T> job, int batch, in TileRows rows) where T : unmanaged
    {
        var weights = job.Weights;
        for (int r = 0; r < rows.Count; r++)
        {
            float* row = &weights.Base[weights.Offset(batch, rows.Head(r), rows.Query(r), 0)];
            for (int j = 0; j < job.KeyLength; j++) row[j * weights.Stride3] = 0;
        }
    }
}
