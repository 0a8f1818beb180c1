namespace AttentionEngine.Testing;

/// <summary>
/// The backward analogue of <see cref="NaivePrecision.ScoreRounding"/>: a worst-sign bound, first-order except in P, on how much
/// fp32 rounding of the quantities a flash backward recomputes moves each gradient. A flash backward recomputes
/// P = e^(s − LSE) from a saved LSE and forms dS = P·(dP − D) with dP = dO·v and D = dO·O computed in different orders;
/// when dP ≈ D (one dominant key, for example) the exact gradient cancels to about zero while any fp32 realisation
/// keeps a few ulps of |dP|, and the naive formula, computing both in the same order, can cancel exactly by luck.
/// With u = 2^-24: δs = ½u(√D·|scale|·Σ|q·k| + |s|), δLSE = ½u·|LSE|, δP = min(1, P·(e^(δs + δLSE) − 1)) (P·(δs + δLSE)
/// to first order; the exact form matters where a finite padding bias puts s near ±1e9, whose float spacing is 64:
/// there δs is tens, the float scores of a row's keys can tie or swap, and a realised P is anywhere in [0, 1]),
/// δdP = ½u·√Dv·Σ|dO·v|, δD = (½u·√Dv + ½eps(T))·Σ|dO·O| (O is read back rounded to the storage type T, as
/// FlashAttention-2 reads it), δdS = |scale|·(δP·|dP − D| + P·(δdP + δD)); then
/// δdQ_i = Σ_j δdS_ij·|k_j|, δdK_j = Σ_i δdS_ij·|q_i|, δdV_j = Σ_i δP_ij·|dO_i|. With dropout, v_j and δP_ij enter
/// multiplied by the pair's dropout factor m_ij.
/// </summary>
public static class BackwardRoundingSensitivity
{
    private const double HalfUlp = 0.5 / (1 << 24) * 2; // u = 2^-24 is already the half-ulp of 1; keep one bit of slack

    /// <summary>Per-element bounds of how far the float gradients of the call may move from the exact ones through storage and score rounding: the backward tolerance rule's yardstick, in the layout of <see cref="ReferenceBackward"/>'s result.</summary>
    public static AttentionGradients Compute<T>(scoped in AttentionBackwardCall<T> call) where T : unmanaged
    {
        var shape = call.Forward.Shape;
        int b = shape.Batch, hq = shape.QueryHeads, hk = shape.KvHeads, lq = shape.QueryLength, lk = shape.KeyLength, d = shape.HeadDim, dv = shape.ValueDim;
        var bounds = new AttentionGradients(new double[(long)b * hq * lq * d], new double[(long)b * hk * lk * d], new double[(long)b * hk * lk * dv],
            call.ReturnBiasGradient ? new double[(long)b * hq * lq * lk] : null);
        var q = call.Forward.Q; var k = call.Forward.K; var v = call.Forward.V;
        double scale = call.Forward.Scale;
        double storageHalfUlp = ElementTypes.MachineEpsilon<T>() / 2;
        var p = new double[lk];
        var factor = new double[lk];
        var scores = new double[lk];
        var magnitudes = new double[lk];
        var visible = new bool[lk];
        var band = call.Forward.Mask.ToFunctor(lq, lk);
        var dO = new double[dv];
        var o = new double[dv];
        for (int x = 0; x < b; x++)
        for (int h = 0; h < hq; h++)
        for (int i = 0; i < lq; i++)
        {
            int kvHead = h / shape.GroupSize;
            double max = double.NegativeInfinity;
            for (int j = 0; j < lk; j++)
            {
                visible[j] = band.Keep(x, h, i, j) && (call.Forward.KeepMask.IsEmpty || call.Forward.KeepMask[x, h, i, j]);
                if (!visible[j]) continue;
                double dot = 0, magnitude = 0;
                for (int c = 0; c < d; c++)
                {
                    double term = ElementTypes.ToDouble(q[x, h, i, c]) * ElementTypes.ToDouble(k[x, kvHead, j, c]);
                    dot += term;
                    magnitude += Math.Abs(term);
                }
                double s = ScoreSaturation.AddBias(ScoreSaturation.Saturate(dot * scale), call.Forward.Bias.IsEmpty ? 0 : call.Forward.Bias[x, h, i, j]);
                if (double.IsNegativeInfinity(s)) { visible[j] = false; continue; }
                scores[j] = s;
                magnitudes[j] = Math.Sqrt(d) * Math.Abs(scale) * magnitude + Math.Abs(s);
                max = Math.Max(max, s);
            }
            if (double.IsNegativeInfinity(max) || double.IsNaN(max)) continue;
            double sum = 0;
            for (int j = 0; j < lk; j++) sum += p[j] = visible[j] ? Math.Exp(scores[j] - max) : 0;
            double lse = max + Math.Log(sum);
            Array.Clear(o);
            for (int c = 0; c < dv; c++) dO[c] = ElementTypes.ToDouble(call.DOutput[x, h, i, c]);
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                p[j] /= sum;
                factor[j] = call.Forward.Dropout.Factor(x, hq, h, i, j);
                if (factor[j] != 0)
                    for (int c = 0; c < dv; c++) o[c] += p[j] * factor[j] * ElementTypes.ToDouble(v[x, kvHead, j, c]);
            }
            double rowD = 0, rowDMagnitude = 0;
            for (int c = 0; c < dv; c++) { rowD += dO[c] * o[c]; rowDMagnitude += Math.Abs(dO[c] * o[c]); }
            long qRow = (((long)x * hq + h) * lq + i) * d;
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                // With dropout the gradient reaching P is m·(dO·v) (a dropped key's V is never read).
                double dP = 0, dPMagnitude = 0;
                if (factor[j] != 0)
                    for (int c = 0; c < dv; c++)
                    {
                        double term = factor[j] * dO[c] * ElementTypes.ToDouble(v[x, kvHead, j, c]);
                        dP += term;
                        dPMagnitude += Math.Abs(term);
                    }
                // A P of 0 stays 0 (e^x − 1 overflows at the magnitudes of a padding bias of float.MinValue: no 0 · ∞).
                double deltaP = p[j] == 0 ? 0 : Math.Min(1, p[j] * ScoreErrorReach.ExpMinusOne(HalfUlp * (magnitudes[j] + Math.Abs(lse))));
                double deltaD = (HalfUlp * Math.Sqrt(dv) + storageHalfUlp) * rowDMagnitude;
                double deltaDS = Math.Abs(scale) * (deltaP * Math.Abs(dP - rowD) + p[j] * (HalfUlp * Math.Sqrt(dv) * dPMagnitude + deltaD));
                if (bounds.ScoreGradient is { } scoreBounds && scale != 0) scoreBounds[(((long)x * hq + h) * lq + i) * lk + j] = deltaDS / Math.Abs(scale);
                long kRow = (((long)x * hk + kvHead) * lk + j);
                for (int c = 0; c < d; c++)
                {
                    bounds.DQ[qRow + c] += deltaDS * Math.Abs(ElementTypes.ToDouble(k[x, kvHead, j, c]));
                    bounds.DK[kRow * d + c] += deltaDS * Math.Abs(ElementTypes.ToDouble(q[x, h, i, c]));
                }
                for (int c = 0; c < dv; c++) bounds.DV[kRow * dv + c] += deltaP * factor[j] * Math.Abs(dO[c]);
            }
        }
        return bounds;
    }
}
