using System.Numerics.Tensors;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The public LSE merge: attention over disjoint key sets, computed apart and merged, equals one-shot attention
/// (checked with the tolerance rule against the float64 oracle), over generated problems with every mask kind.
/// </summary>
public class AttentionMergeTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 160, MaxHeadDim = 128, MaxCost = 2e7 };

    [Fact] public void Disjoint_key_sets_merge_to_one_shot_attention_f32() => CheckSplits<float>(40, 1);
    [Fact] public void Disjoint_key_sets_merge_to_one_shot_attention_f16() => CheckSplits<Half>(20, 2);
    [Fact] public void Disjoint_key_sets_merge_to_one_shot_attention_bf16() => CheckSplits<BFloat16>(20, 3);

    /// <summary>
    /// Each problem's keys are dealt at random into 1-4 parts (so some rows see no key of a part, or of any); each part
    /// is the problem with a keep-mask of its own keys, computed by the CPU backend. Three checks: the stacked merge
    /// equals an independent float64 evaluation of the formula on the same parts (rounded once); folding the parts in
    /// one by one (MergeInto) gives the same; and the merge is within the tolerance rule of one-shot attention, where
    /// the yardstick is the same merge of the textbook formula's parts in storage precision (a part's LSE is a float, so
    /// its rounding, which grows with |LSE|, is part of any merge and of the yardstick alike).
    /// </summary>
    private static void CheckSplits<T>(int count, ulong seed) where T : unmanaged
    {
        foreach (var spec in AttentionGen.Sample(count, seed, Limits))
        {
            using var problem = AttentionProblem<T>.Create(spec);
            var shape = problem.Shape;
            var rng = new Random(spec.GetHashCode());
            int parts = rng.Next(1, 5);
            var partOf = Enumerable.Range(0, shape.KeyLength).Select(_ => rng.Next(parts)).ToArray();
            var visible = problem.Visibility();
            using var stacked = NativeTensor<T>.Zeros(parts, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
            using var stackedLse = NativeTensor<float>.Zeros(parts, shape.Batch, shape.QueryHeads, shape.QueryLength);
            using var naiveStacked = NativeTensor<T>.Zeros(parts, shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
            using var naiveStackedLse = NativeTensor<float>.Zeros(parts, shape.Batch, shape.QueryHeads, shape.QueryLength);
            using var running = NativeTensor<T>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
            using var runningLse = NativeTensor<float>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength);
            runningLse.Fill(float.NegativeInfinity);
            var partNaiveError = new double[(long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.ValueDim];
            var partNaiveLseError = new double[(long)shape.Batch * shape.QueryHeads * shape.QueryLength];
            for (int s = 0; s < parts; s++)
            {
                using var keep = NativeTensor<bool>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength);
                var keepSpan = keep.AsTensorSpan();
                long n = 0;
                for (int b = 0; b < shape.Batch; b++)
                for (int h = 0; h < shape.QueryHeads; h++)
                for (int i = 0; i < shape.QueryLength; i++)
                for (int j = 0; j < shape.KeyLength; j++)
                    keepSpan[b, h, i, j] = visible[n++] && partOf[j] == s;
                using var output = problem.AllocateOutput();
                using var lse = NativeTensor<float>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength);
                var options = problem.Options(lse) with { KeepMask = keep.AsTensorSpan() };
                Attention.Using(Backend.Cpu).Forward<T>(problem.Q, problem.K, problem.V, output, options);
                AttentionMerge.MergeInto<T>(running, runningLse, output, lse);
                var naive = NaiveAttention.Compute<T>(problem.Q, problem.K, problem.V, NaivePrecision.Storage, options with { Lse = default });
                var partOracle = NaiveAttention.Compute<T>(problem.Q, problem.K, problem.V, NaivePrecision.Float64, options with { Lse = default });
                // The rule's two textbook realisations: storage precision, and float64 from fp32-rounded scores.
                var scoreRounding = NaiveAttention.Compute<T>(problem.Q, problem.K, problem.V, NaivePrecision.ScoreRounding, options with { Lse = default });
                for (long e = 0; e < partNaiveError.Length; e++)
                    partNaiveError[e] = Math.Max(partNaiveError[e], Math.Max(Difference(naive.Output[e], partOracle.Output[e]), Difference(scoreRounding.Output[e], partOracle.Output[e])));
                for (long e = 0; e < partNaiveLseError.Length; e++)
                    partNaiveLseError[e] = Math.Max(partNaiveLseError[e], Math.Max(Difference(naive.Lse[e], partOracle.Lse[e]), Difference(scoreRounding.Lse[e], partOracle.Lse[e])));
                var stackedSpan = stacked.AsTensorSpan();
                var stackedLseSpan = stackedLse.AsTensorSpan();
                var naiveSpan = naiveStacked.AsTensorSpan();
                var naiveLseSpan = naiveStackedLse.AsTensorSpan();
                var outputSpan = output.AsTensorSpan();
                var lseSpan = lse.AsTensorSpan();
                long row = 0;
                for (int b = 0; b < shape.Batch; b++)
                for (int h = 0; h < shape.QueryHeads; h++)
                for (int i = 0; i < shape.QueryLength; i++, row++)
                {
                    stackedLseSpan[s, b, h, i] = lseSpan[b, h, i];
                    naiveLseSpan[s, b, h, i] = (float)naive.Lse[row];
                    for (int x = 0; x < shape.ValueDim; x++)
                    {
                        stackedSpan[s, b, h, i, x] = outputSpan[b, h, i, x];
                        naiveSpan[s, b, h, i, x] = ElementTypes.FromDouble<T>(naive.Output[row * shape.ValueDim + x]);
                    }
                }
            }
            using var merged = NativeTensor<T>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
            using var mergedLse = NativeTensor<float>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength);
            AttentionMerge.Merge<T>(stacked, stackedLse, merged, mergedLse);
            using var naiveMerged = NativeTensor<T>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.ValueDim);
            using var naiveMergedLse = NativeTensor<float>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength);
            AttentionMerge.Merge<T>(naiveStacked, naiveStackedLse, naiveMerged, naiveMergedLse);

            AssertIsTheFormula(stacked, stackedLse, merged, mergedLse, $"{parts} parts, {spec}");
            var lseRounding = LseRoundingEffect(stacked, stackedLse, merged);

            // Two yardsticks, the worse counting (as the rule does for its two naive realisations): the textbook parts
            // merged, and the textbook parts' own errors, which a merge (a weighted average) does not cancel.
            // Two yardsticks, the worse counting (as the rule does for its two naive realisations): the textbook parts
            // merged; and the textbook parts' own errors (which a weighted average does not cancel) plus what rounding
            // each part's LSE to float moves the weights by (|ΔLSE| ≤ half an ulp of the LSE: inherent to any LSE merge).
            var oracle = problem.Oracle();
            var secondYardstick = oracle.Output.Select((x, e) => x + partNaiveError[e] + lseRounding[e]).ToArray();
            var secondLseYardstick = oracle.Lse.Select((x, e) => x + partNaiveLseError[e]).ToArray();
            // MergeInto keeps the running output in T, so it rounds once per part folded in: checked by the same rule.
            foreach (var (what, result, resultLse) in new[] { ("Merge", merged, mergedLse), ("MergeInto", running, runningLse) })
            {
                var outputReport = ToleranceRule.Check<T>(Widen(result), oracle.Output, Widen(naiveMerged), secondYardstick);
                var lseReport = ToleranceRule.Check<float>(Widen(resultLse), oracle.Lse, Widen(naiveMergedLse), secondLseYardstick);
                Assert.True(outputReport.Passed, $"{what} output, {parts} parts, {spec}: {outputReport}");
                Assert.True(lseReport.Passed, $"{what} LSE, {parts} parts, {spec}: {lseReport}");
            }
        }
    }

    private static double Difference(double a, double b) => a.Equals(b) ? 0 : Math.Abs(a - b) is var d && double.IsNaN(d) ? double.PositiveInfinity : d;

    /// <summary>Per output element: Σ_s w_s · |o_s − o| · ulp(lse_s) / Σ_s w_s, the first-order effect of the LSEs' float rounding.</summary>
    private static double[] LseRoundingEffect<T>(NativeTensor<T> parts, NativeTensor<float> lses, NativeTensor<T> merged) where T : unmanaged
    {
        var l = merged.Lengths;
        var effect = new double[merged.ToArray().Length];
        long e = 0;
        for (int b = 0; b < l[0]; b++)
        for (int h = 0; h < l[1]; h++)
        for (int i = 0; i < l[2]; i++)
        {
            double max = double.NegativeInfinity, total = 0;
            for (int s = 0; s < parts.Lengths[0]; s++) max = Math.Max(max, lses[s, b, h, i]);
            for (int s = 0; s < parts.Lengths[0]; s++) total += double.IsNegativeInfinity(lses[s, b, h, i]) ? 0 : Math.Exp(lses[s, b, h, i] - max);
            for (int x = 0; x < l[3]; x++, e++)
            {
                if (total == 0 || !double.IsFinite(max)) continue;
                for (int s = 0; s < parts.Lengths[0]; s++)
                {
                    float lse = lses[s, b, h, i];
                    if (float.IsNegativeInfinity(lse)) continue;
                    double ulp = Math.Abs(lse) == float.MaxValue ? Math.ScaleB(1, 104) : MathF.BitIncrement(Math.Abs(lse)) - Math.Abs(lse);
                    effect[e] += Math.Exp(lse - max) / total * Math.Abs(ElementTypes.ToDouble(parts[s, b, h, i, x]) - ElementTypes.ToDouble(merged[b, h, i, x])) * ulp;
                }
            }
        }
        return effect;
    }

    private static double[] Widen<T>(NativeTensor<T> tensor) where T : unmanaged => Array.ConvertAll(tensor.ToArray(), ElementTypes.ToDouble);

    /// <summary>Two-pass float64 evaluation (max first, then weights), written apart from the merge's streaming one.</summary>
    private static void AssertIsTheFormula<T>(NativeTensor<T> parts, NativeTensor<float> lses, NativeTensor<T> merged, NativeTensor<float> mergedLse, string what)
        where T : unmanaged
    {
        var l = merged.Lengths;
        for (int b = 0; b < l[0]; b++)
        for (int h = 0; h < l[1]; h++)
        for (int i = 0; i < l[2]; i++)
        {
            double max = double.NegativeInfinity;
            for (int s = 0; s < parts.Lengths[0]; s++) max = Math.Max(max, lses[s, b, h, i]);
            double total = 0;
            for (int s = 0; s < parts.Lengths[0]; s++) total += double.IsNegativeInfinity(lses[s, b, h, i]) ? 0 : Math.Exp(lses[s, b, h, i] - max);
            Assert.Equal(total == 0 ? float.NegativeInfinity : (float)(max + Math.Log(total)), mergedLse[b, h, i], (float)Math.Abs(max) * 1e-6f);
            for (int x = 0; x < l[3]; x++)
            {
                double sum = 0;
                for (int s = 0; s < parts.Lengths[0]; s++)
                    if (!double.IsNegativeInfinity(lses[s, b, h, i])) sum += Math.Exp(lses[s, b, h, i] - max) * ElementTypes.ToDouble(parts[s, b, h, i, x]);
                double expected = total == 0 ? 0 : sum / total, actual = ElementTypes.ToDouble(merged[b, h, i, x]);
                // One rounding to T: within one unit of T at the value's scale, or one subnormal step of T.
                double subnormalStep = typeof(T) == typeof(Half) ? Math.ScaleB(1, -24) : typeof(T) == typeof(BFloat16) ? Math.ScaleB(1, -133) : Math.ScaleB(1, -149);
                Assert.True(Math.Abs(actual - expected) <= ElementTypes.MachineEpsilon<T>() * Math.Abs(expected) + subnormalStep,
                    $"{what}: [{b},{h},{i},{x}] merged {actual:R}, formula {expected:R}");
            }
        }
    }

    [Fact]
    public void A_part_that_saw_no_key_is_not_read_and_rows_no_part_saw_are_zero()
    {
        // Row 0: part 0 saw keys (LSE 0.5), part 1 saw none (LSE -inf) and holds NaN. Row 1: no part saw anything.
        float[] outputs = [1, 2, /* row 1 */ float.NaN, float.NaN, /* part 1 */ float.NaN, float.PositiveInfinity, float.NaN, 7];
        float[] lses = [0.5f, float.NegativeInfinity, float.NegativeInfinity, float.NegativeInfinity];
        var partials = new ReadOnlyTensorSpan<float>(outputs, [2, 1, 1, 2, 2], []);
        var partialLse = new ReadOnlyTensorSpan<float>(lses, [2, 1, 1, 2], []);
        var merged = new float[4];
        var mergedLse = new float[2];
        AttentionMerge.Merge(partials, partialLse, new TensorSpan<float>(merged, [1, 1, 2, 2], []), new TensorSpan<float>(mergedLse, [1, 1, 2], []));
        Assert.Equal([1f, 2f, 0f, 0f], merged);
        Assert.Equal([0.5f, float.NegativeInfinity], mergedLse);
    }

    [Fact]
    public void Equal_parts_merge_to_their_average_and_add_log_two()
    {
        float[] outputs = [1, -3, 5, 3];
        float[] lses = [2, 2];
        var merged = new float[2];
        var mergedLse = new float[1];
        AttentionMerge.Merge(new ReadOnlyTensorSpan<float>(outputs, [2, 1, 1, 1, 2], []), new ReadOnlyTensorSpan<float>(lses, [2, 1, 1, 1], []),
            new TensorSpan<float>(merged, [1, 1, 1, 2], []), new TensorSpan<float>(mergedLse, [1, 1, 1], []));
        Assert.Equal([3f, 0f], merged);
        Assert.Equal((float)(2 + Math.Log(2)), mergedLse[0]);
    }

    [Fact]
    public void Wide_rows_past_the_stack_accumulator_merge_too()
    {
        // Dv above 512 takes a heap accumulator instead of the stack one.
        const int dv = 700;
        var outputs = new float[2 * dv];
        for (int x = 0; x < dv; x++) (outputs[x], outputs[dv + x]) = (x, -x + 2);
        var merged = new float[dv];
        AttentionMerge.Merge(new ReadOnlyTensorSpan<float>(outputs, [2, 1, 1, 1, dv], []), new ReadOnlyTensorSpan<float>(new[] { 1f, 1f }, [2, 1, 1, 1], []),
            new TensorSpan<float>(merged, [1, 1, 1, dv], []));
        Assert.All(merged, x => Assert.Equal(1f, x));
    }

    [Fact]
    public void Garbage_LSEs_of_parts_that_count_propagate_as_NaN()
    {
        foreach (float bad in new[] { float.NaN, float.PositiveInfinity })
        {
            float[] outputs = [1, 2];
            float[] lses = [0, bad];
            var merged = new float[1];
            var mergedLse = new float[1];
            AttentionMerge.Merge(new ReadOnlyTensorSpan<float>(outputs, [2, 1, 1, 1, 1], []), new ReadOnlyTensorSpan<float>(lses, [2, 1, 1, 1], []),
                new TensorSpan<float>(merged, [1, 1, 1, 1], []), new TensorSpan<float>(mergedLse, [1, 1, 1], []));
            Assert.True(float.IsNaN(merged[0]), $"LSE {bad}: output {merged[0]}");
        }
    }

    [Fact]
    public void Bad_arguments_name_the_tensor_dimension_and_values()
    {
        var parts = new float[2 * 1 * 2 * 3 * 4];
        var partLse = new float[2 * 1 * 2 * 3];
        var output = new float[1 * 2 * 3 * 4];
        var lse = new float[1 * 2 * 3];
        void Merge(nint[] partShape, nint[] lseShape, nint[] outShape, nint[]? mergedLseShape, float[]? outputMemory = null) =>
            AttentionMerge.Merge<float>(new ReadOnlyTensorSpan<float>(parts, partShape, []), new ReadOnlyTensorSpan<float>(partLse, lseShape, []),
                new TensorSpan<float>(outputMemory ?? output, outShape, []), mergedLseShape is null ? default : new TensorSpan<float>(lse, mergedLseShape, []));

        var e = Assert.Throws<ArgumentException>(() => Merge([2, 1, 2, 12], [2, 1, 2, 3], [1, 2, 3, 4], null));
        Assert.Equal("partialOutputs", e.ParamName);
        Assert.Contains("rank 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Merge([2, 1, 2, 3, 4], [2, 1, 6], [1, 2, 3, 4], null));
        Assert.Equal("partialLse", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => Merge([2, 1, 2, 3, 4], [2, 1, 2, 3], [1, 2, 4, 3], null));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("dimension 2 (Lq) is 4; expected 3", e.Message);
        e = Assert.Throws<ArgumentException>(() => Merge([2, 1, 2, 3, 4], [2, 1, 2, 3], [1, 2, 3, 4], [1, 3, 2]));
        Assert.Equal("lse", e.ParamName);
        Assert.Contains("dimension 1 (heads) is 3; expected 2", e.Message);
        // The output may not share memory with the parts it reads.
        e = Assert.Throws<ArgumentException>(() => Merge([2, 1, 2, 3, 4], [2, 1, 2, 3], [1, 2, 3, 4], null, parts));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("overlaps the memory of partialOutputs", e.Message);

        var running = new float[1 * 2 * 3 * 4];
        e = Assert.Throws<ArgumentException>(() => AttentionMerge.MergeInto<float>(new TensorSpan<float>(running, [1, 2, 3, 4], []), default,
            new ReadOnlyTensorSpan<float>(output, [1, 2, 3, 4], []), new ReadOnlyTensorSpan<float>(lse, [1, 2, 3], [])));
        Assert.Equal("lse", e.ParamName);
        e = Assert.Throws<ArgumentException>(() => AttentionMerge.MergeInto<float>(new TensorSpan<float>(running, [1, 2, 3, 4], []),
            new TensorSpan<float>(new float[6], [1, 2, 3], []), new ReadOnlyTensorSpan<float>(running, [1, 2, 3, 4], []), new ReadOnlyTensorSpan<float>(lse, [1, 2, 3], [])));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("overlaps the memory of partOutput", e.Message);
        Assert.Throws<NotSupportedException>(() => AttentionMerge.Merge<int>(default, default, default));
    }
}
