namespace AttentionEngine.Testing;

/// <summary>The outcome of one invariant on one problem.</summary>
public sealed record InvariantReport(string Invariant, bool Passed, string Detail)
{
    /// <inheritdoc/>
    public override string ToString() => $"{Invariant}: {(Passed ? "pass" : "FAIL")} ({Detail})";
}

/// <summary>
/// Properties every correct attention satisfies, checked on any <see cref="IAttentionForward"/>. "Equal within the
/// rule" means <see cref="ToleranceRule"/> against the float64 oracle of the original problem; "bitwise" means the
/// candidate's two outputs agree to the last bit, which any kernel that computes each row the same way guarantees.
/// </summary>
public static class AttentionInvariants
{
    /// <summary>
    /// What <see cref="HiddenKeysDoNotMatter{T}"/> writes into hidden positions: NaN, both infinities and ±1e30 (which
    /// Half stores as infinity). A hidden key must not influence a row whatever it holds.
    /// </summary>
    public static IReadOnlyList<double> HiddenKeyPoisons { get; } = [double.NaN, double.PositiveInfinity, double.NegativeInfinity, 1e30, -1e30];

    /// <summary>What is written into bias entries at pairs a positional mask or keep-mask hides: NaN and +infinity.</summary>
    public static IReadOnlyList<float> HiddenBiasPoisons { get; } = [float.NaN, float.PositiveInfinity];

    /// <summary>Runs every invariant; <paramref name="seed"/> drives the random choices (permutation, row, constants).</summary>
    public static IReadOnlyList<InvariantReport> CheckAll<T>(IAttentionForward candidate, AttentionProblem<T> problem, int seed)
        where T : unmanaged => CheckAll(candidate, problem, Baseline.Of(problem), seed);

    /// <summary>
    /// Every invariant against a <see cref="Baseline"/> the caller already computed for this problem (the oracle and the
    /// naive results are the expensive part of a case: compute them once).
    /// </summary>
    public static IReadOnlyList<InvariantReport> CheckAll<T>(IAttentionForward candidate, AttentionProblem<T> problem, Baseline baseline, int seed)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(baseline);
        return
        [
            KeyValuePermutation(candidate, problem, baseline, seed),
            HiddenKeysDoNotMatter(candidate, problem, seed),
            OnesInOnesOut(candidate, problem),
            GqaEqualsRepeatedHeads(candidate, problem),
            RowConstantBiasChangesNothing(candidate, problem, baseline, seed),
            PositionalMaskEqualsKeepMask(candidate, problem, baseline),
        ];
    }

    /// <summary>The oracle and the storage-precision naive result and the score-rounding yardstick of a problem, computed once and shared.</summary>
    public sealed record Baseline(AttentionResult Oracle, AttentionResult Naive, AttentionResult ScoreRounding)
    {
        /// <summary>Computes the three results of <paramref name="problem"/> (the oracle and two naive yardsticks).</summary>
        public static Baseline Of<T>(AttentionProblem<T> problem) where T : unmanaged =>
            new(problem.Oracle(), problem.Naive(NaivePrecision.Storage), problem.Naive(NaivePrecision.ScoreRounding));

        /// <summary>The tolerance rule on a candidate's output and (when it has one) LSE.</summary>
        public InvariantReport Check<T>(string name, AttentionResult candidate, AttentionResult? oracle = null)
        {
            var expected = oracle ?? Oracle;
            var output = ToleranceRule.Check<T>(candidate.Output, expected.Output, Naive.Output, ScoreRounding.Output);
            if (!output.Passed || candidate.Lse.Length == 0 || expected.Lse.Length == 0)
                return new InvariantReport(name, output.Passed, $"output {output}");
            var lse = ToleranceRule.Check<float>(candidate.Lse, expected.Lse, Naive.Lse, ScoreRounding.Lse);
            return new InvariantReport(name, lse.Passed, $"output {output}; LSE {lse}");
        }
    }

    /// <summary>Permuting keys and values together (and the mask columns with them) leaves the output unchanged, within the rule.</summary>
    public static InvariantReport KeyValuePermutation<T>(IAttentionForward candidate, AttentionProblem<T> problem, Baseline baseline, int seed)
        where T : unmanaged
    {
        if (problem.Dropout.IsActive) return new InvariantReport("key/value permutation", true, "not applicable: the dropout mask follows key positions");
        var s = problem.Shape;
        var permutation = Enumerable.Range(0, s.KeyLength).ToArray();
        new Random(seed).Shuffle(permutation);
        var visible = problem.Visibility();
        using var fullBias = problem.FullBias();
        var k = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.HeadDim);
        var v = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim);
        var bias = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength);
        var keep = NativeTensor<bool>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength);
        for (int b = 0; b < s.Batch; b++)
        for (int j = 0; j < s.KeyLength; j++)
        {
            int from = permutation[j];
            for (int h = 0; h < s.KvHeads; h++)
            {
                for (int c = 0; c < s.HeadDim; c++) k[b, h, j, c] = problem.K[b, h, from, c];
                for (int c = 0; c < s.ValueDim; c++) v[b, h, j, c] = problem.V[b, h, from, c];
            }
            for (int h = 0; h < s.QueryHeads; h++)
            for (int i = 0; i < s.QueryLength; i++)
            {
                keep[b, h, i, j] = visible[Index(s, b, h, i, from)];
                bias[b, h, i, j] = fullBias[b, h, i, from];
            }
        }
        using var permuted = new AttentionProblem<T>($"{problem} keys permuted", NativeTensor<T>.CopyOf(problem.Q), k, v, bias, keep, Mask.None, problem.Scale);
        return baseline.Check<T>("key/value permutation", permuted.Run(candidate));
    }

    /// <summary>
    /// Poisoning every hidden position changes nothing (bitwise): the keys a drawn query row cannot see get NaN,
    /// ±infinity or ±1e30 in every element of K and V, and every bias entry at a pair the positional mask or the
    /// keep-mask hides (from any row) gets NaN or +infinity. Each row that sees none of the poisoned keys, the drawn one
    /// and every other, must keep its output and LSE to the last bit.
    /// </summary>
    public static InvariantReport HiddenKeysDoNotMatter<T>(IAttentionForward candidate, AttentionProblem<T> problem, int seed)
        where T : unmanaged
    {
        const string name = "hidden keys do not matter";
        var s = problem.Shape;
        var visible = problem.Visibility();
        var rng = new Random(seed);
        // Pick a row that hides at least one key; without one the keys say nothing (the bias may still be poisoned).
        var candidates = new List<(int B, int H, int I)>();
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
            for (int j = 0; j < s.KeyLength; j++)
                if (!visible[Index(s, b, h, i, j)]) { candidates.Add((b, h, i)); break; }
        if (candidates.Count == 0) return new InvariantReport(name, true, "vacuous: every key is visible to every query");
        var (rb, rh, ri) = candidates[rng.Next(candidates.Count)];
        int kvHead = rh / s.GroupSize;
        var hidden = Enumerable.Range(0, s.KeyLength).Where(j => !visible[Index(s, rb, rh, ri, j)]).ToArray();

        var k = NativeTensor<T>.CopyOf(problem.K);
        var v = NativeTensor<T>.CopyOf(problem.V);
        foreach (int j in hidden)
        {
            for (int c = 0; c < s.HeadDim; c++) k[rb, kvHead, j, c] = ElementTypes.FromDouble<T>(HiddenKeyPoisons[rng.Next(HiddenKeyPoisons.Count)]);
            for (int c = 0; c < s.ValueDim; c++) v[rb, kvHead, j, c] = ElementTypes.FromDouble<T>(HiddenKeyPoisons[rng.Next(HiddenKeyPoisons.Count)]);
        }
        var (bias, poisonedBias) = BiasPoisonedWhereMasked(problem, rng);
        using var poisoned = new AttentionProblem<T>($"{problem} hidden keys poisoned", NativeTensor<T>.CopyOf(problem.Q), k, v,
            bias, problem.KeepMask is null ? null : NativeTensor<bool>.CopyOf(problem.KeepMask), problem.Mask, problem.Scale, problem.OutputLayout, problem.Dropout);
        var before = problem.Run(candidate);
        var after = poisoned.Run(candidate);

        int rowsCompared = 0;
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        {
            // Rows of the poisoned (batch, KV head) that see a poisoned key are the only ones allowed to change.
            if (b == rb && h / s.GroupSize == kvHead && !hidden.All(j => !visible[Index(s, b, h, i, j)])) continue;
            rowsCompared++;
            long row = ((long)b * s.QueryHeads + h) * s.QueryLength + i;
            for (int c = 0; c < s.ValueDim; c++)
                if (!before.Output[row * s.ValueDim + c].Equals(after.Output[row * s.ValueDim + c]))
                    return new InvariantReport(name, false,
                        $"row (b={b}, h={h}, i={i}) output[{c}] changed from {before.Output[row * s.ValueDim + c]:R} to {after.Output[row * s.ValueDim + c]:R} " +
                        $"after poisoning {hidden.Length} keys it cannot see and {poisonedBias} masked bias entries");
            if (!before.Lse[row].Equals(after.Lse[row]))
                return new InvariantReport(name, false, $"row (b={b}, h={h}, i={i}) LSE changed from {before.Lse[row]:R} to {after.Lse[row]:R}");
        }
        return new InvariantReport(name, true, $"{hidden.Length} keys and {poisonedBias} masked bias entries poisoned, {rowsCompared} rows bitwise unchanged");
    }

    /// <summary>
    /// The problem's bias at full shape with NaN or +infinity at every pair the positional mask or the keep-mask hides
    /// (left as is where only a −infinity bias hides: poisoning it would unhide the pair). A problem without a bias keeps
    /// none: adding one would change what is computed, and problems with every kind of bias are drawn anyway.
    /// </summary>
    internal static (NativeTensor<float>? Bias, int Poisoned) BiasPoisonedWhereMasked<T>(AttentionProblem<T> problem, Random rng) where T : unmanaged
    {
        if (problem.Bias is null) return (null, 0);
        var s = problem.Shape;
        var band = problem.Mask.ToFunctor(s.QueryLength, s.KeyLength);
        using var keep = problem.KeepMask is null ? null : ExpandKeep(problem);
        var bias = problem.FullBias();
        int poisoned = 0;
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        for (int j = 0; j < s.KeyLength; j++)
        {
            if (band.Keep(0, 0, i, j) && (keep is null || keep[b, h, i, j])) continue;
            bias[b, h, i, j] = HiddenBiasPoisons[rng.Next(HiddenBiasPoisons.Count)];
            poisoned++;
        }
        return (bias, poisoned);
    }

    /// <summary>With every value 1, every row with a visible key outputs 1 (rows without one output 0), within the rule.</summary>
    public static InvariantReport OnesInOnesOut<T>(IAttentionForward candidate, AttentionProblem<T> problem) where T : unmanaged
    {
        if (problem.Dropout.IsActive) return new InvariantReport("V = 1 gives 1", true, "not applicable: dropout rows average to 1 only in expectation");
        var s = problem.Shape;
        var v = NativeTensor<T>.Zeros(s.Batch, s.KvHeads, s.KeyLength, s.ValueDim);
        v.Fill(ElementTypes.FromSingle<T>(1f));
        using var ones = new AttentionProblem<T>($"{problem} V = 1", NativeTensor<T>.CopyOf(problem.Q), NativeTensor<T>.CopyOf(problem.K), v,
            problem.Bias is null ? null : NativeTensor<float>.CopyOf(problem.Bias), problem.KeepMask is null ? null : NativeTensor<bool>.CopyOf(problem.KeepMask),
            problem.Mask, problem.Scale);
        var baseline = Baseline.Of(ones);
        // Rows with a visible key must give exactly 1, rows without one exactly 0.
        var exact = Array.ConvertAll(baseline.Oracle.Output, x => x == 0 ? 0.0 : 1.0);
        return baseline.Check<T>("V = 1 gives 1", ones.Run(candidate) with { Lse = [] }, baseline.Oracle with { Output = exact, Lse = [] });
    }

    /// <summary>GQA/MQA gives bitwise the same output as MHA with each KV head repeated for its query heads.</summary>
    public static InvariantReport GqaEqualsRepeatedHeads<T>(IAttentionForward candidate, AttentionProblem<T> problem) where T : unmanaged
    {
        var s = problem.Shape;
        var k = NativeTensor<T>.Zeros(s.Batch, s.QueryHeads, s.KeyLength, s.HeadDim);
        var v = NativeTensor<T>.Zeros(s.Batch, s.QueryHeads, s.KeyLength, s.ValueDim);
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int j = 0; j < s.KeyLength; j++)
        {
            for (int c = 0; c < s.HeadDim; c++) k[b, h, j, c] = problem.K[b, h / s.GroupSize, j, c];
            for (int c = 0; c < s.ValueDim; c++) v[b, h, j, c] = problem.V[b, h / s.GroupSize, j, c];
        }
        using var repeated = new AttentionProblem<T>($"{problem} KV heads repeated", NativeTensor<T>.CopyOf(problem.Q), k, v,
            problem.Bias is null ? null : NativeTensor<float>.CopyOf(problem.Bias), problem.KeepMask is null ? null : NativeTensor<bool>.CopyOf(problem.KeepMask),
            problem.Mask, problem.Scale, problem.OutputLayout, problem.Dropout);
        return Bitwise($"GQA equals repeated heads (group {s.GroupSize})", problem.Run(candidate), repeated.Run(candidate));
    }

    /// <summary>Adding a constant to every score of a row (through the bias) leaves the output unchanged, within the rule.</summary>
    public static InvariantReport RowConstantBiasChangesNothing<T>(IAttentionForward candidate, AttentionProblem<T> problem, Baseline baseline, int seed)
        where T : unmanaged
    {
        var s = problem.Shape;
        var rng = new Random(seed);
        var bias = problem.FullBias();
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        {
            float shift = rng.Next(-32, 33) / 4f; // multiples of 1/4 in [-8, 8]: exact in float
            for (int j = 0; j < s.KeyLength; j++) bias[b, h, i, j] += shift;
        }
        using var shifted = new AttentionProblem<T>($"{problem} rows shifted", NativeTensor<T>.CopyOf(problem.Q), NativeTensor<T>.CopyOf(problem.K),
            NativeTensor<T>.CopyOf(problem.V), bias, problem.KeepMask is null ? null : NativeTensor<bool>.CopyOf(problem.KeepMask), problem.Mask, problem.Scale,
            dropout: problem.Dropout);
        // Output only: the LSE moves by the shift. The yardstick is the naive formula on the shifted problem.
        return Baseline.Of(shifted).Check<T>("row-constant bias changes nothing", shifted.Run(candidate) with { Lse = [] },
            baseline.Oracle with { Lse = [] });
    }

    /// <summary>The positional mask equals its explicit boolean keep-mask, within the rule.</summary>
    public static InvariantReport PositionalMaskEqualsKeepMask<T>(IAttentionForward candidate, AttentionProblem<T> problem, Baseline baseline)
        where T : unmanaged
    {
        var s = problem.Shape;
        var band = problem.Mask.ToFunctor(s.QueryLength, s.KeyLength);
        using var fullKeep = problem.KeepMask is null ? null : ExpandKeep(problem);
        var keep = NativeTensor<bool>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength);
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        for (int j = 0; j < s.KeyLength; j++)
            keep[b, h, i, j] = band.Keep(0, 0, i, j) && (fullKeep is null || fullKeep[b, h, i, j]);
        using var explicitMask = new AttentionProblem<T>($"{problem} mask made explicit", NativeTensor<T>.CopyOf(problem.Q), NativeTensor<T>.CopyOf(problem.K),
            NativeTensor<T>.CopyOf(problem.V), problem.Bias is null ? null : NativeTensor<float>.CopyOf(problem.Bias), keep, Mask.None, problem.Scale,
            dropout: problem.Dropout);
        return baseline.Check<T>($"mask {problem.Mask} equals explicit keep-mask", explicitMask.Run(candidate));
    }

    private static NativeTensor<bool> ExpandKeep<T>(AttentionProblem<T> problem) where T : unmanaged
    {
        var s = problem.Shape;
        var full = NativeTensor<bool>.Zeros(s.Batch, s.QueryHeads, s.QueryLength, s.KeyLength);
        using var output = problem.AllocateOutput();
        var call = AttentionValidator.Validate<T>(problem.Q, problem.K, problem.V, output, problem.Options());
        for (int b = 0; b < s.Batch; b++)
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        for (int j = 0; j < s.KeyLength; j++)
            full[b, h, i, j] = call.KeepMask[b, h, i, j];
        return full;
    }

    private static long Index(AttentionShape s, int b, int h, int i, int j) =>
        (((long)b * s.QueryHeads + h) * s.QueryLength + i) * s.KeyLength + j;

    private static InvariantReport Bitwise(string name, AttentionResult first, AttentionResult second)
    {
        for (int n = 0; n < first.Output.Length; n++)
            if (!first.Output[n].Equals(second.Output[n]))
                return new InvariantReport(name, false, $"output element {n}: {first.Output[n]:R} vs {second.Output[n]:R}");
        for (int n = 0; n < first.Lse.Length; n++)
            if (!first.Lse[n].Equals(second.Lse[n]))
                return new InvariantReport(name, false, $"LSE element {n}: {first.Lse[n]:R} vs {second.Lse[n]:R}");
        return new InvariantReport(name, true, "bitwise equal");
    }
}
