using System.Numerics.Tensors;

namespace AttentionEngine.Testing;

/// <summary>Arithmetic of <see cref="NaiveAttention"/>.</summary>
public enum NaivePrecision
{
    /// <summary>Every step in float64, no rounding: an oracle written independently of <see cref="ReferenceAttention"/>.</summary>
    Float64,

    /// <summary>
    /// The textbook formula as a plain implementation in the storage type would run it: fp32 scores and softmax,
    /// probabilities rounded to the storage type before P·V (as an fp16 GEMM consumes them), fp32 accumulation,
    /// output rounded to the storage type. Its error against the oracle is the yardstick of the tolerance rule.
    /// </summary>
    Storage,

    /// <summary>
    /// The float64 result plus its sensitivity to fp32 score rounding: with δ_j = ½·u·(√D·|scale|·Σ_d|q_d·k_d|
    /// + |s_j|), u = 2^-23 (the typical error of an fp32 dot product, Higham's probabilistic bound), output element c
    /// gets + Σ_j p_j·|v_jc − o_c|·δ_j and the LSE + Σ_j p_j·δ_j to first order: the error of any implementation with
    /// fp32 scores, signs taken at their worst. Where the δ_j are not small next to the gaps between scores (a near-tie
    /// at logits of 1e31), the exact reach under the δ_j replaces the first order (<see cref="ScoreErrorReach"/>). On
    /// ill-conditioned rows (logits in the thousands, large D) this is what no fp32 kernel avoids, and one lucky
    /// realisation of <see cref="Storage"/> can understate it. The tolerance rule takes the worse.
    /// </summary>
    ScoreRounding,
}

/// <summary>
/// Attention as written in a textbook: S = scale · Q Kᵀ + bias, masked entries set to -infinity, P = softmax(S)
/// row by row, O = P V. Each (batch, head) materialises its whole Lq x Lk score matrix; deliberately a different
/// program from <see cref="ReferenceAttention"/> (matrix at a time, not row at a time), so the two check each other.
/// </summary>
public static class NaiveAttention
{
    /// <summary>
    /// Computes attention of the given tensors; validates exactly as every backend does. With
    /// <paramref name="withWeights"/> also the probabilities [B, Hq, Lq, Lk] in float (as a weights destination holds
    /// them: the softmax, or the dropped matrix when the dropout's InWeights is set), with their own first-order
    /// score-rounding sensitivity under <see cref="NaivePrecision.ScoreRounding"/>.
    /// </summary>
    public static AttentionResult Compute<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, NaivePrecision precision,
        scoped in AttentionOptions options = default, bool withWeights = false) where T : unmanaged
    {
        var shape = ShapeOf(q, k, v);
        // The validator needs a destination; a contiguous scratch output satisfies it and is never written.
        using var scratch = NativeTensor<T>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
        var call = AttentionValidator.Validate(q, k, v, scratch.AsTensorSpan(), options);
        return Compute(call, precision, withWeights);
    }

    /// <summary>Computes a validated call (its own weights destination is ignored; <paramref name="withWeights"/> decides).</summary>
    public static AttentionResult Compute<T>(scoped in AttentionCall<T> call, NaivePrecision precision, bool withWeights = false) where T : unmanaged
    {
        var shape = call.Shape;
        var result = new AttentionResult(
            shape,
            new double[(long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.ValueDim],
            new double[(long)shape.Batch * shape.QueryHeads * shape.QueryLength],
            withWeights ? new double[(long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength] : null);
        PinnedCall<T>.Pin(call, pinned =>
        {
            var int8 = pinned.ScorePrecision == ScorePrecision.Int8 ? new Int8ScoreOracle<T>(pinned) : null;
            Parallel.For(0, shape.Batch * shape.QueryHeads, head =>
                ComputeHead(pinned, head / shape.QueryHeads, head % shape.QueryHeads, precision, result, int8));
        });
        return result;
    }

    private static AttentionShape ShapeOf<T>(ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v)
    {
        // Shapes are validated by the validator; this only sizes the scratch output, so guard the ranks first.
        if (q.Rank != 4 || k.Rank != 4 || v.Rank != 4)
            throw new ArgumentException($"q, k and v must have rank 4; got {q.Rank}, {k.Rank}, {v.Rank}.", nameof(q));
        return new AttentionShape((int)q.Lengths[0], (int)q.Lengths[1], (int)k.Lengths[1], (int)q.Lengths[2],
            (int)k.Lengths[2], (int)q.Lengths[3], (int)v.Lengths[3]);
    }

    private static void ComputeHead<T>(PinnedCall<T> x, int b, int h, NaivePrecision precision, AttentionResult result, Int8ScoreOracle<T>? int8)
        where T : unmanaged
    {
        bool storage = precision == NaivePrecision.Storage;
        bool sensitivity = precision == NaivePrecision.ScoreRounding;
        // In storage precision every fp32 operation is emulated exactly: double arithmetic on floats followed by a
        // rounding to float is correctly rounded for +, -, * and / (53 >= 2·24 + 2 bits).
        double F32(double value) => storage ? (float)value : value;
        double InStorage(double value) => storage ? ElementTypes.RoundTo<T>(value) : value;

        var shape = x.Shape;
        int lq = shape.QueryLength, lk = shape.KeyLength, kvHead = h / shape.GroupSize;

        // S = scale · Q Kᵀ + bias, with hidden entries at -infinity.
        var s = new double[lq * lk];
        var scoreError = sensitivity ? new double[lq * lk] : null;
        for (int i = 0; i < lq; i++)
        for (int j = 0; j < lk; j++)
        {
            if (!x.IsAllowed(b, h, i, j)) { s[i * lk + j] = double.NegativeInfinity; continue; }
            double dot = 0, magnitude = 0;
            if (int8 is not null && Int8Scores(i, j))
            {
                if (storage)
                {
                    var (products, shift) = int8.Parts(x, b, h, i, j, F32);
                    dot = F32(products + shift);
                }
                else dot = int8.Dot(x, b, h, i, j, out magnitude);
            }
            else
            for (int c = 0; c < shape.HeadDim; c++)
            {
                double term = ElementTypes.ToDouble(x.Q[b, h, i, c]) * F32(x.KeyAt(b, kvHead, j, c));
                dot = F32(dot + F32(term));
                magnitude += Math.Abs(term);
            }
            double score = F32(ScoreSaturation.AddBias(ScoreSaturation.Saturate(F32(dot * x.Scale)), x.BiasAt(b, h, i, j)));
            if (scoreError is not null && double.IsFinite(score))
                scoreError[i * lk + j] = 0.5 * Math.ScaleB(1.0, -23) * (Math.Sqrt(shape.HeadDim) * Math.Abs(x.Scale) * magnitude + Math.Abs(score));
            s[i * lk + j] = score;
        }

        // Int8 scores: a row takes a key block's quantised scores when no key of the block is hidden from it (this
        // formula has no score functor, so masks and -infinity biases decide), as the kernels and the oracle do.
        bool Int8Scores(int i, int j)
        {
            int first = j / Int8ScoreOracle<T>.KeyBlock * Int8ScoreOracle<T>.KeyBlock, end = Math.Min(lk, first + Int8ScoreOracle<T>.KeyBlock);
            if (!int8.Usable(b, h, i, first / Int8ScoreOracle<T>.KeyBlock)) return false;
            for (int key = first; key < end; key++)
                if (!x.IsAllowed(b, h, i, key) || double.IsNegativeInfinity(x.BiasAt(b, h, i, key))) return false;
            return true;
        }

        // P = softmax(S) by rows; LSE = m + ln(l).
        var p = new double[lq * lk];
        var reach = scoreError is null ? null : new ScoreErrorReach[lq];
        for (int i = 0; i < lq; i++)
        {
            long row = ((long)b * shape.QueryHeads + h) * lq + i;
            var si = s.AsSpan(i * lk, lk);
            double m = double.NegativeInfinity;
            foreach (double value in si) m = Math.Max(m, value);
            if (double.IsNegativeInfinity(m)) { result.Lse[row] = double.NegativeInfinity; continue; } // P row stays 0
            double l = 0;
            for (int j = 0; j < lk; j++)
            {
                p[i * lk + j] = double.IsNegativeInfinity(si[j]) ? 0 : F32(Math.Exp(F32(si[j] - m)));
                l = F32(l + p[i * lk + j]);
            }
            for (int j = 0; j < lk; j++) p[i * lk + j] = F32(p[i * lk + j] / l);
            if (reach is not null) reach[i] = ScoreErrorReach.Of(si, scoreError.AsSpan(i * lk, lk), p.AsSpan(i * lk, lk));
            if (result.Weights is not null)
                WriteWeights(x, b, h, i, si, p.AsSpan(i * lk, lk), scoreError is null ? default : scoreError.AsSpan(i * lk, lk),
                    reach?[i], F32, result.Weights);
            for (int j = 0; j < lk; j++) p[i * lk + j] = InStorage(p[i * lk + j]);
            result.Lse[row] = F32(m + F32(Math.Log(l)));
            if (reach is not null) result.Lse[row] += reach[i].LseSlack();
        }

        // O = (P ∘ M) V, M the dropout multipliers (all 1 without dropout; a dropped key's V is never read).
        var multiplier = new double[lk];
        var coefficient = reach is null ? null : new double[lk];
        var carries = reach is null ? null : new bool[lk];
        for (int i = 0; i < lq; i++)
        {
            long row = ((long)b * shape.QueryHeads + h) * lq + i;
            for (int j = 0; j < lk; j++) multiplier[j] = F32(x.DropoutFactor(b, h, i, j));
            for (int c = 0; c < shape.ValueDim; c++)
            {
                double acc = 0;
                for (int j = 0; j < lk; j++)
                    if (multiplier[j] != 0) acc = F32(acc + F32(InStorage(F32(p[i * lk + j] * multiplier[j])) * F32(x.ValueAt(b, kvHead, j, c))));
                result.Output[row * shape.ValueDim + c] = InStorage(acc);
            }
            if (reach is null || double.IsNegativeInfinity(result.Lse[row])) continue;
            // The reach of the output under the score errors, every sign at its worst: Σ_j t_j·|m_j v_jc − o_c|
            // (t_j = p_j·e_j to first order; ScoreErrorReach), capped by the spread of the values of the keys that can
            // carry weight, since the output stays their convex combination.
            var si = s.AsSpan(i * lk, lk);
            for (int j = 0; j < lk; j++)
            {
                coefficient![j] = reach[i].OutputCoefficient(si[j], scoreError![i * lk + j], p[i * lk + j]);
                carries![j] = reach[i].CanCarryWeight(si[j], scoreError[i * lk + j]);
            }
            for (int c = 0; c < shape.ValueDim; c++)
            {
                double o = result.Output[row * shape.ValueDim + c], bound = 0, spread = 0;
                for (int j = 0; j < lk; j++)
                {
                    if (!carries![j]) continue;
                    double distance = Math.Abs((multiplier[j] == 0 ? 0 : multiplier[j] * x.ValueAt(b, kvHead, j, c)) - o);
                    spread = Math.Max(spread, distance);
                    if (coefficient![j] != 0 && distance != 0) bound += coefficient[j] * distance;
                }
                result.Output[row * shape.ValueDim + c] = o + Math.Min(bound, spread);
            }
        }
    }

    /// <summary>
    /// One row of the weights as a float destination holds them: the softmax (times the dropout multiplier when the
    /// dropout's InWeights is set). With score errors e_j (ScoreRounding), each gets its reach under them
    /// (<see cref="ScoreErrorReach.WeightSlack"/>; p_j·(e_j + Σ_k p_k·e_k) to first order), signs at their worst.
    /// </summary>
    private static void WriteWeights<T>(PinnedCall<T> x, int b, int h, int i, ReadOnlySpan<double> s, ReadOnlySpan<double> p,
        ReadOnlySpan<double> scoreError, ScoreErrorReach? reach, Func<double, double> f32, double[] weights) where T : unmanaged
    {
        var shape = x.Shape;
        int lk = shape.KeyLength;
        long row = (((long)b * shape.QueryHeads + h) * shape.QueryLength + i) * lk;
        for (int j = 0; j < lk; j++)
        {
            double weight = p[j];
            if (reach is { } r) weight += r.WeightSlack(s[j], scoreError[j], p[j]);
            if (x.Dropout.InWeights) weight = f32(weight * f32(x.DropoutFactor(b, h, i, j)));
            weights[row + j] = weight;
        }
    }
}
