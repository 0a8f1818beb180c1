using AttentionEngine.Testing;

namespace AttentionEngine.Bench.Quantization;

/// <summary>
/// Float64 attention of a few sampled rows per head of a large self-attention call (the whole float64 Reference at
/// N = 4096 would take minutes), to measure a candidate's cosine and relative L2; and the same rows with scores from an
/// unsmoothed int8 quantisation (per-token scales, nothing subtracted), the baseline SageAttention's smoothing improves on.
/// </summary>
internal static class SampledRows
{
    private const int RowsPerHead = 64;

    public static double Cosine(NativeTensor<float> q, NativeTensor<float> k, NativeTensor<float> v, NativeTensor<float> candidate, bool causal) =>
        Compare(q, k, v, candidate, causal).Cosine;

    /// <summary>Cosine and relative L2 of <paramref name="candidate"/>'s sampled rows against their float64 values.</summary>
    public static (double Cosine, double RelativeL2) Compare(NativeTensor<float> q, NativeTensor<float> k, NativeTensor<float> v, NativeTensor<float> candidate, bool causal)
    {
        var (exact, rows) = Exact(q, k, v, causal, quantizedScores: false);
        var got = new List<double>();
        int d = (int)v.Lengths[3];
        foreach (var (h, i) in rows)
            for (int c = 0; c < d; c++) got.Add(candidate[0, h, i, c]);
        return Metrics(got, exact);
    }

    /// <summary>Cosine and relative L2 of unsmoothed int8 scores (computed exactly in float64) against float64.</summary>
    public static (double Cosine, double RelativeL2) CompareUnsmoothed(NativeTensor<float> q, NativeTensor<float> k, NativeTensor<float> v, bool causal)
    {
        var (exact, _) = Exact(q, k, v, causal, quantizedScores: false);
        var (plain, _) = Exact(q, k, v, causal, quantizedScores: true);
        return Metrics(plain, exact);
    }

    private static (List<double> Values, List<(int Head, int Row)> Rows) Exact(NativeTensor<float> q, NativeTensor<float> k, NativeTensor<float> v, bool causal, bool quantizedScores)
    {
        int heads = (int)q.Lengths[1], n = (int)q.Lengths[2], lk = (int)k.Lengths[2], d = (int)q.Lengths[3], dv = (int)v.Lengths[3];
        double scale = 1 / Math.Sqrt(d);
        var values = new List<double>();
        var rows = new List<(int, int)>();
        var scores = new double[lk];
        var keys = new double[lk * d];
        var keyScales = new double[lk];
        for (int h = 0; h < heads; h++)
        {
            for (int j = 0; j < lk; j++)
            {
                double max = 0;
                for (int c = 0; c < d; c++) { keys[j * d + c] = k[0, h, j, c]; max = Math.Max(max, Math.Abs(keys[j * d + c])); }
                keyScales[j] = max / 127;
                if (quantizedScores && max > 0)
                    for (int c = 0; c < d; c++) keys[j * d + c] = Math.Round(keys[j * d + c] / keyScales[j], MidpointRounding.ToEven) * keyScales[j];
            }
            for (int s = 0; s < RowsPerHead; s++)
            {
                int i = (int)((long)s * (n - 1) / (RowsPerHead - 1));
                rows.Add((h, i));
                var query = new double[d];
                double qMax = 0;
                for (int c = 0; c < d; c++) { query[c] = q[0, h, i, c]; qMax = Math.Max(qMax, Math.Abs(query[c])); }
                if (quantizedScores && qMax > 0)
                    for (int c = 0; c < d; c++) query[c] = Math.Round(query[c] / (qMax / 127), MidpointRounding.ToEven) * (qMax / 127);
                int end = causal ? Math.Min(lk, i + 1 + (lk - n)) : lk;
                double top = double.NegativeInfinity;
                for (int j = 0; j < end; j++)
                {
                    double dot = 0;
                    for (int c = 0; c < d; c++) dot += query[c] * keys[j * d + c];
                    scores[j] = dot * scale;
                    top = Math.Max(top, scores[j]);
                }
                double sum = 0;
                for (int j = 0; j < end; j++) { scores[j] = Math.Exp(scores[j] - top); sum += scores[j]; }
                for (int c = 0; c < dv; c++)
                {
                    double o = 0;
                    for (int j = 0; j < end; j++) o += scores[j] * v[0, h, j, c];
                    values.Add(o / sum);
                }
            }
        }
        return (values, rows);
    }

    private static (double Cosine, double RelativeL2) Metrics(IReadOnlyList<double> candidate, IReadOnlyList<double> exact)
    {
        double dot = 0, nc = 0, ne = 0, diff = 0;
        for (int x = 0; x < exact.Count; x++)
        {
            dot += candidate[x] * exact[x];
            nc += candidate[x] * candidate[x];
            ne += exact[x] * exact[x];
            diff += (candidate[x] - exact[x]) * (candidate[x] - exact[x]);
        }
        return (dot / Math.Sqrt(nc * ne), Math.Sqrt(diff / ne));
    }
}
