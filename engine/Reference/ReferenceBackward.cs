namespace AttentionEngine;

/// <summary>Gradients of the loss with respect to q, k and v, in float64, laid out like q, k and v (row-major [B, H, S, D]).</summary>
/// <param name="ScoreGradient">∂L/∂score for every (b, h, i, j), [B, Hq, Lq, Lk], when a bias gradient was asked for</param>
public sealed record AttentionGradients(double[] DQ, double[] DK, double[] DV, double[]? ScoreGradient = null);

/// <summary>
/// The backward oracle: gradients by their definition in float64, recomputing every score (the saved output and LSE
/// are not used, so an error in them cannot hide an error here). For each visible pair, with P the attention weights
/// and dO the incoming gradient: dV_j += P_ij·dO_i; dP_ij = dO_i·v_j; D_i = Σ_j P_ij·dP_ij; dS_ij = P_ij·(dP_ij − D_i);
/// dQ_i += scale·dS_ij·k_j; dK_j += scale·dS_ij·q_i. With dropout multipliers m_ij (see <see cref="ReferenceAttention"/>),
/// dV_j += P_ij·m_ij·dO_i and dP_ij = m_ij·(dO_i·v_j), the mask redrawn from the call's dropout, never stored.
/// GQA sums dK and dV over the query heads of a group. A row with
/// no visible key contributes nothing (zero gradients, never NaN).
/// </summary>
public static class ReferenceBackward
{
    /// <summary>The float64 gradients of the call: dQ, dK, dV and (when asked) the bias gradient, in the calls' shapes flattened row-major.</summary>
    public static AttentionGradients Compute<T>(scoped in AttentionBackwardCall<T> call) where T : unmanaged => Compute(call, single: false, null);

    /// <summary>The gradients of attention with a block mask and a score functor (chain rule through the functor's derivative).</summary>
    public static AttentionGradients Compute<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        Compute(call, single: false, new PairFunctors<TMask, TScore>(blockMask, scoreMod));

    /// <summary>
    /// The same formula with every intermediate rounded to float and the results to T: what a straightforward fp32
    /// implementation gets, the yardstick of the tolerance rule for gradients.
    /// </summary>
    public static AttentionGradients ComputeInStoragePrecision<T>(scoped in AttentionBackwardCall<T> call) where T : unmanaged
    {
        var gradients = Compute(call, single: true, null);
        if (gradients.ScoreGradient is { } scores)
            for (int n = 0; n < scores.Length; n++) scores[n] = (float)scores[n];
        foreach (var array in new[] { gradients.DQ, gradients.DK, gradients.DV })
            for (int n = 0; n < array.Length; n++) array[n] = ElementTypes.ToDouble(ElementTypes.FromDouble<T>(array[n]));
        return gradients;
    }

    private static AttentionGradients Compute<T>(scoped in AttentionBackwardCall<T> call, bool single, IPairFunctors? functors) where T : unmanaged
    {
        var shape = call.Forward.Shape;
        int b = shape.Batch, hq = shape.QueryHeads, hk = shape.KvHeads, lq = shape.QueryLength, lk = shape.KeyLength, d = shape.HeadDim, dv = shape.ValueDim;
        var dOutput = new double[(long)b * hq * lq * dv];
        for (int x = 0; x < b; x++)
        for (int h = 0; h < hq; h++)
        for (int i = 0; i < lq; i++)
        for (int c = 0; c < dv; c++)
            dOutput[((((long)x * hq + h) * lq) + i) * dv + c] = ElementTypes.ToDouble(call.DOutput[x, h, i, c]);

        var gradients = new AttentionGradients(new double[(long)b * hq * lq * d], new double[(long)b * hk * lk * d], new double[(long)b * hk * lk * dv],
            call.ReturnBiasGradient ? new double[(long)b * hq * lq * lk] : null);
        PinnedCall<T>.Pin(call.Forward, pinned =>
            Parallel.For(0, b * hk, task => ComputeKvHead(pinned, task / hk, task % hk, dOutput, gradients, single)), functors);
        return gradients;
    }

    private static void ComputeKvHead<T>(PinnedCall<T> inputs, int b, int kvHead, double[] dOutput, AttentionGradients gradients, bool single)
        where T : unmanaged
    {
        double R(double x) => single ? (float)x : x;
        var shape = inputs.Shape;
        int lq = shape.QueryLength, lk = shape.KeyLength, d = shape.HeadDim, dv = shape.ValueDim;
        var keys = new double[lk * d];
        var values = new double[lk * dv];
        for (int j = 0; j < lk; j++)
        {
            for (int c = 0; c < d; c++) keys[j * d + c] = inputs.KeyAt(b, kvHead, j, c);
            for (int c = 0; c < dv; c++) values[j * dv + c] = inputs.ValueAt(b, kvHead, j, c);
        }
        long kvBase = ((long)b * shape.KvHeads + kvHead) * lk;
        var query = new double[d];
        var p = new double[lk];
        var dp = new double[lk];
        var dots = new double[lk];
        var factor = new double[lk];
        var visible = new bool[lk];
        for (int h = kvHead * shape.GroupSize; h < (kvHead + 1) * shape.GroupSize; h++)
        for (int i = 0; i < lq; i++)
        {
            long row = ((long)b * shape.QueryHeads + h) * lq + i;
            for (int c = 0; c < d; c++) query[c] = ElementTypes.ToDouble(inputs.Q[b, h, i, c]);
            double max = double.NegativeInfinity;
            for (int j = 0; j < lk; j++)
            {
                visible[j] = inputs.IsAllowed(b, h, i, j);
                if (!visible[j]) continue;
                double dot = 0;
                for (int c = 0; c < d; c++) dot = R(dot + query[c] * keys[j * d + c]);
                dots[j] = dot;
                double score = R(ScoreSaturation.AddBias(R(inputs.ScaledScore(dot, b, h, i, j)), inputs.BiasAt(b, h, i, j)));
                if (double.IsNegativeInfinity(score)) { visible[j] = false; continue; }
                p[j] = score;
                max = Math.Max(max, score);
            }
            if (double.IsNegativeInfinity(max)) continue; // no visible key: no gradient flows through this row
            double sum = 0;
            for (int j = 0; j < lk; j++) sum = R(sum + (p[j] = visible[j] ? R(Math.Exp(R(p[j] - max))) : 0.0));
            var dO = dOutput.AsSpan((int)(row * dv), dv);
            double rowD = 0;
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                p[j] = R(p[j] / sum);
                // With dropout O = (P ∘ M)·V, so P gets dP ∘ M; a dropped key's V is never read.
                factor[j] = inputs.DropoutFactor(b, h, i, j);
                double dot = 0;
                if (factor[j] != 0)
                    for (int c = 0; c < dv; c++) dot = R(dot + dO[c] * values[j * dv + c]);
                dp[j] = R(dot * factor[j]);
                rowD = R(rowD + p[j] * dp[j]);
            }
            var dq = gradients.DQ.AsSpan((int)(row * d), d);
            for (int j = 0; j < lk; j++)
            {
                if (!visible[j]) continue;
                double raw = R(p[j] * R(dp[j] - rowD));
                if (gradients.ScoreGradient is { } scoreGradient) scoreGradient[row * lk + j] = raw;
                // Through the score functor (chain rule); its derivative is 1 without one.
                double ds = R(R(raw * inputs.ScoreDerivative(dots[j], b, h, i, j)) * inputs.Scale);
                var dk = gradients.DK.AsSpan((int)((kvBase + j) * d), d);
                var dvRow = gradients.DV.AsSpan((int)((kvBase + j) * dv), dv);
                for (int c = 0; c < d; c++)
                {
                    dq[c] = R(dq[c] + ds * keys[j * d + c]);
                    dk[c] = R(dk[c] + ds * query[c]);
                }
                double kept = R(p[j] * factor[j]);
                for (int c = 0; c < dv; c++) dvRow[c] = R(dvRow[c] + kept * dO[c]);
            }
        }
    }

    /// <summary>
    /// ∂L/∂bias in the bias's own shape: the score gradients summed, in (b, h, i, j) order, over the dimensions the
    /// bias broadcasts over; <paramref name="single"/> sums in float as an fp32 kernel would.
    /// </summary>
    public static Dictionary<nint, double> BiasGradient<T>(scoped in AttentionBackwardCall<T> call, double[] scoreGradient, bool single = false)
        where T : unmanaged
    {
        var shape = call.Forward.Shape;
        var view = call.DBias;
        var sums = new Dictionary<nint, double>();
        long n = 0;
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++)
        for (int j = 0; j < shape.KeyLength; j++, n++)
        {
            nint offset = view.Offset(b, h, i, j);
            double sum = sums.GetValueOrDefault(offset) + scoreGradient[n];
            sums[offset] = single ? (float)sum : sum;
        }
        return sums;
    }
}
