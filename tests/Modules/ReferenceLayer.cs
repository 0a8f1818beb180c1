using AttentionEngine.Kernels;

namespace AttentionEngine.Tests.Modules;

/// <summary>
/// The multi-head attention layer as plain loops over doubles, with a rounding applied after every operation: the
/// identity gives the float64 oracle, rounding to float gives the textbook fp32 layer (the tolerance rule's yardstick).
/// </summary>
public sealed class ReferenceLayer(MultiHeadAttentionConfig config, Func<double, double> round)
{
    /// <summary>Rounding of Q, K and V after rotary embeddings and of the attention output: a 16-bit KV cache's storage (identity by default).</summary>
    public Func<double, double> Storage { get; init; } = x => x;

    /// <summary>Keys per page of a paged cache (0: none): attention per page, each partial output stored, merged by LSE.</summary>
    public int PageSize { get; init; }

    /// <summary>Dropout on the probabilities (not with <see cref="PageSize"/>): P(i, j) times the mask's exact factor.</summary>
    public AttentionDropout Dropout { get; init; }

    public required double[,] Wq, Wk, Wv, Wo;
    public double[,]? Wg;
    public required double[] Bq, Bk, Bv, Bo;
    public double[]? Bg;

    private int H => config.Heads;
    private int Hkv => config.KvHeads ?? config.Heads;
    private int D => config.HeadDim ?? config.EmbedDim / config.Heads;

    /// <summary>
    /// output [B, Lq, E] for query [B, Lq, E], key [B, Lk, Ek], value [B, Lk, Ev]; causal aligns the last query with the
    /// last key; padding[b, j] hides key j of sequence b.
    /// </summary>
    public double[,,] Forward(double[,,] query, double[,,] key, double[,,] value, bool causal, bool[,]? padding, long queryOffset, long keyOffset, float? scale)
    {
        int batch = query.GetLength(0), lq = query.GetLength(1), lk = key.GetLength(1), e = config.EmbedDim;
        var output = new double[batch, lq, e];
        double s = scale ?? 1 / Math.Sqrt(D);
        for (int b = 0; b < batch; b++)
        {
            var q = Project(query, b, Wq, Bq);
            var k = Project(key, b, Wk, Bk);
            var v = Project(value, b, Wv, Bv);
            if (config.Rotary is { } rotary)
            {
                Rotate(q, H, queryOffset, rotary);
                Rotate(k, Hkv, keyOffset, rotary);
            }
            Store(q);
            Store(k);
            Store(v);
            var attention = new double[lq, H * D];
            for (int h = 0; h < H; h++)
            {
                int kvHead = h / (H / Hkv);
                for (int i = 0; i < lq; i++)
                {
                    var scores = new double[lk];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < lk; j++)
                    {
                        bool visible = (!causal || j <= i + (lk - lq)) && (padding is null || !padding[b, j]);
                        if (!visible) { scores[j] = double.NegativeInfinity; continue; }
                        double dot = 0;
                        for (int d = 0; d < D; d++) dot = round(dot + round(q[i, h * D + d] * k[j, kvHead * D + d]));
                        scores[j] = round(dot * s);
                        max = Math.Max(max, scores[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue; // no visible key: zeros
                    if (PageSize > 0)
                    {
                        // A paged cache's design: each page's partial output stored (Storage), merged by LSE in float64.
                        var merged = new double[D];
                        double top = double.NegativeInfinity, weight = 0;
                        var lses = new List<(double Lse, double[] Output)>();
                        for (int first = 0; first < lk; first += PageSize)
                        {
                            int end = Math.Min(lk, first + PageSize);
                            double pageMax = double.NegativeInfinity;
                            for (int j = first; j < end; j++) pageMax = Math.Max(pageMax, scores[j]);
                            if (double.IsNegativeInfinity(pageMax)) continue;
                            double pageSum = 0;
                            var p = new double[end - first];
                            for (int j = first; j < end; j++)
                            {
                                p[j - first] = double.IsNegativeInfinity(scores[j]) ? 0 : round(Math.Exp(scores[j] - pageMax));
                                pageSum = round(pageSum + p[j - first]);
                            }
                            var o = new double[D];
                            for (int d = 0; d < D; d++)
                            {
                                double acc = 0;
                                for (int j = first; j < end; j++) acc = round(acc + round(p[j - first] * v[j, kvHead * D + d]));
                                o[d] = Storage(round(acc / pageSum));
                            }
                            lses.Add((pageMax + Math.Log(pageSum), o));
                            top = Math.Max(top, pageMax + Math.Log(pageSum));
                        }
                        foreach (var (lse, o) in lses)
                        {
                            double w = Math.Exp(lse - top);
                            weight += w;
                            for (int d = 0; d < D; d++) merged[d] += w * o[d];
                        }
                        for (int d = 0; d < D; d++) attention[i, h * D + d] = Storage(merged[d] / weight);
                        continue;
                    }
                    double sum = 0;
                    for (int j = 0; j < lk; j++)
                    {
                        scores[j] = double.IsNegativeInfinity(scores[j]) ? 0 : round(Math.Exp(scores[j] - max));
                        sum = round(sum + scores[j]);
                    }
                    for (int j = 0; j < lk; j++)
                        if (Dropout.IsActive) scores[j] = Dropout.IsKept(b, h, i, j, H) ? round(scores[j] / (1 - Dropout.Probability)) : 0;
                    for (int d = 0; d < D; d++)
                    {
                        double acc = 0;
                        for (int j = 0; j < lk; j++) acc = round(acc + round(scores[j] * v[j, kvHead * D + d]));
                        attention[i, h * D + d] = Storage(round(acc / sum));
                    }
                }
            }
            if (config.Gate is { } gate && config.GateWidth > 0)
            {
                var logits = Project(query, b, Wg!, Bg!);
                int g = 0;
                for (int h = 0; h < H; h++)
                {
                    if (!(gate.GatedHeads?[h] ?? true)) continue;
                    for (int i = 0; i < lq; i++)
                        for (int d = 0; d < D; d++)
                        {
                            double x = logits[i, gate.Kind == GateKind.Headwise ? g : g * D + d];
                            attention[i, h * D + d] = round(attention[i, h * D + d] * round(1 / (1 + Math.Exp(-x))));
                        }
                    g++;
                }
            }
            for (int i = 0; i < lq; i++)
                for (int o = 0; o < e; o++)
                {
                    double acc = 0;
                    for (int c = 0; c < H * D; c++) acc = round(acc + round(attention[i, c] * Wo[o, c]));
                    output[b, i, o] = round(acc + Bo[o]);
                }
        }
        return output;
    }

    private void Store(double[,] x)
    {
        for (int r = 0; r < x.GetLength(0); r++)
            for (int c = 0; c < x.GetLength(1); c++) x[r, c] = Storage(x[r, c]);
    }

    private double[,] Project(double[,,] input, int b, double[,] weight, double[] bias)
    {
        int length = input.GetLength(1), width = input.GetLength(2), rows = weight.GetLength(0);
        var result = new double[length, rows];
        for (int t = 0; t < length; t++)
            for (int r = 0; r < rows; r++)
            {
                double acc = 0;
                for (int c = 0; c < width; c++) acc = round(acc + round(input[b, t, c] * weight[r, c]));
                result[t, r] = round(acc + bias[r]);
            }
        return result;
    }

    private void Rotate(double[,] x, int heads, long offset, RotaryEmbedding rotary)
    {
        int dims = rotary.Dimensions ?? D, pairs = dims / 2;
        for (int t = 0; t < x.GetLength(0); t++)
            for (int h = 0; h < heads; h++)
                for (int i = 0; i < pairs; i++)
                {
                    double angle = (offset + t) * Math.Pow(rotary.Base, -2.0 * i / dims);
                    double cos = round(Math.Cos(angle)), sin = round(Math.Sin(angle));
                    var (ia, ib) = rotary.Layout == RotaryLayout.Interleaved ? (2 * i, 2 * i + 1) : (i, i + pairs);
                    double a = x[t, h * D + ia], c = x[t, h * D + ib];
                    x[t, h * D + ia] = round(round(a * cos) - round(c * sin));
                    x[t, h * D + ib] = round(round(a * sin) + round(c * cos));
                }
    }
}
