using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// Loads a row tile for the backward pass: Q rows, dO rows and dOᵀ (zero-padded), and per row the saved LSE and
/// D = rowsum(dO ∘ O). Padding rows and rows that saw no key get LSE = +infinity, so their recomputed P is exactly 0.
/// Rows whose LSE is too coarse to normalise P take the recomputed (max, 1 / sum) of the job's row statistics instead.
/// </summary>
internal static unsafe class BackwardStaging
{
    public static void LoadRows<T>(in CpuBackwardJob<T> job, int batch, in TileRows rows, int br, int dPad, int dvPad,
        CpuTileScratch tile, BackwardScratch scratch) where T : unmanaged
    {
        var forward = job.Forward;
        TileStaging.LoadQueriesTransposed(forward, batch, rows, br, tile);
        int d = forward.HeadDim, dv = forward.ValueDim;
        for (int r = 0; r < br; r++)
        {
            float* q = scratch.QueryRows + r * dPad;
            float* dO = scratch.OutputGrad + r * dvPad;
            if (r >= rows.Count)
            {
                new Span<float>(q, dPad).Clear();
                new Span<float>(dO, dvPad).Clear();
                scratch.RowLse[r] = float.PositiveInfinity;
                scratch.RowNorm[r] = 1;
                scratch.RowD[r] = 0;
            }
            else
            {
                int head = rows.Head(r), query = rows.Query(r);
                Row(forward.Q, batch, head, query, d, dPad, q);
                Row(job.DOutput, batch, head, query, dv, dvPad, dO);
                Row(job.Output, batch, head, query, dv, dvPad, tile.RowBuffer);
                float rowD = 0;
                for (int c = 0; c < dv; c++) rowD += dO[c] * tile.RowBuffer[c];
                scratch.RowD[r] = rowD;
                float lse = job.Lse[batch, head, query, 0];
                scratch.RowLse[r] = float.IsNegativeInfinity(lse) ? float.PositiveInfinity : lse;
                scratch.RowNorm[r] = 1;
                if (job.RowStatistics != null && LsePrecision.IsCoarse(lse))
                {
                    float* statistics = job.RowStatistics + 2 * ((((long)batch * forward.QueryHeads) + head) * forward.QueryLength + query);
                    scratch.RowLse[r] = statistics[0];
                    scratch.RowNorm[r] = statistics[1];
                }
            }
            for (int c = 0; c < dvPad; c++) scratch.OutputGradT[c * br + r] = dO[c];
        }
    }

    /// <summary>One row of a [B, H, S, X] tensor as floats, zero-padded to <paramref name="padded"/>.</summary>
    private static void Row<T>(RawStrided4<T> tensor, int batch, int head, int position, int width, int padded, float* destination)
        where T : unmanaged
    {
        ElementConversion.ToSingle(&tensor.Base[tensor.Offset(batch, head, position, 0)], tensor.Stride3, width, destination);
        for (int c = width; c < padded; c++) destination[c] = 0;
    }
}
