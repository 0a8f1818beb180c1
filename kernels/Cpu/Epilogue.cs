namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Writes a finished tile: O / l into the output (rounded once to the storage type), LSE = m + ln l, and
/// for rows that saw no key at all zeros and -infinity, never NaN.
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
            float* row = scratch.RowBuffer;
            for (int c = 0; c < dv; c++) row[c] = sum == 0 ? 0f : accumulated[c] / sum;
            ElementConversion.FromSingle(row, dv, &output.Base[output.Offset(batch, head, query, 0)], output.Stride3);
            if (!job.Lse.IsEmpty)
                job.Lse[batch, head, query, 0] = sum == 0 ? float.NegativeInfinity : scratch.RowMax[r] + MathF.Log(sum);
        }
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
