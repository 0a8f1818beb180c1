using System.Numerics.Tensors;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// Deliberately wrong attentions. The harness is only worth something if it catches them: each test in
/// <see cref="HarnessCatchesMutantsTests"/> shows the rule or an invariant failing on one.
/// </summary>
internal sealed class MutantBackend(string name, MutantBackend.Mutation mutation) : IAttentionForward
{
    public delegate void Mutation(
        ReadOnlyTensorSpan<float> q, ReadOnlyTensorSpan<float> k, ReadOnlyTensorSpan<float> v, TensorSpan<float> output,
        scoped in AttentionOptions options);

    public string Name => name;

    public void Forward<T>(ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options) where T : unmanaged
    {
        if (typeof(T) != typeof(float)) throw new NotSupportedException("Mutants run on float.");
        mutation(Cast(q), Cast(k), Cast(v), Cast(output), options);
    }

    private static ReadOnlyTensorSpan<float> Cast<T>(ReadOnlyTensorSpan<T> t) =>
        System.Runtime.CompilerServices.Unsafe.As<ReadOnlyTensorSpan<T>, ReadOnlyTensorSpan<float>>(ref t);

    private static TensorSpan<float> Cast<T>(TensorSpan<T> t) =>
        System.Runtime.CompilerServices.Unsafe.As<TensorSpan<T>, TensorSpan<float>>(ref t);

    private static readonly AttentionBackend Reference = Attention.Using(Backend.Reference);

    /// <summary>Multiplies the scale by 1.001.</summary>
    public static MutantBackend SlightlyWrongScale { get; } = new("scale x1.001", (q, k, v, o, scoped in options) =>
        Reference.Forward(q, k, v, o, options with { Scale = (options.Scale ?? (float)(1 / Math.Sqrt(q.Lengths[3]))) * 1.001f }));

    /// <summary>Computes in float but rounds the output to bfloat16: too imprecise for an f32 kernel.</summary>
    public static MutantBackend RoundsThroughBFloat16 { get; } = new("rounds through bf16", (q, k, v, o, scoped in options) =>
    {
        Reference.Forward(q, k, v, o, options);
        var flat = new float[o.FlattenedLength];
        o.FlattenTo(flat);
        for (int n = 0; n < flat.Length; n++) flat[n] = (BFloat16)flat[n];
        new ReadOnlyTensorSpan<float>(flat, o.Lengths).CopyTo(o);
    });

    /// <summary>Ignores the additive bias.</summary>
    public static MutantBackend IgnoresBias { get; } = new("ignores bias", (q, k, v, o, scoped in options) =>
        Reference.Forward(q, k, v, o, options with { Bias = default }));

    /// <summary>Gives a hidden row NaN instead of zeros (0/0 left unguarded).</summary>
    public static MutantBackend NaNOnHiddenRows { get; } = new("NaN on hidden rows", (q, k, v, o, scoped in options) =>
    {
        Reference.Forward(q, k, v, o, options);
        var l = o.Lengths;
        for (nint b = 0; b < l[0]; b++)
        for (nint h = 0; h < l[1]; h++)
        for (nint i = 0; i < l[2]; i++)
            if (float.IsNegativeInfinity(options.Lse[b, h, i]))
                for (nint c = 0; c < l[3]; c++) o[b, h, i, c] = float.NaN;
    });

    /// <summary>Maps query head h to KV head h % Hkv instead of h / group.</summary>
    public static MutantBackend WrongGqaHeadMapping { get; } = new("GQA h % Hkv", (q, k, v, o, scoped in options) =>
    {
        int hq = (int)q.Lengths[1], hkv = (int)k.Lengths[1];
        using var k2 = Repeat(k, hq, hkv);
        using var v2 = Repeat(v, hq, hkv);
        Reference.Forward(q, k2, v2, o, options);
    });

    /// <summary>Adds 1e-3 · j to the score of key j: a hidden dependence on key position.</summary>
    public static MutantBackend PositionDependent { get; } = new("position-dependent score", (q, k, v, o, scoped in options) =>
    {
        var l = q.Lengths;
        int lk = (int)k.Lengths[2];
        using var bias = NativeTensor<float>.Zeros(l[0], l[1], l[2], lk);
        for (nint b = 0; b < l[0]; b++)
        for (nint h = 0; h < l[1]; h++)
        for (nint i = 0; i < l[2]; i++)
        for (nint j = 0; j < lk; j++)
            bias[b, h, i, j] = (options.Bias.IsEmpty ? 0 : BroadcastAt(options.Bias, b, h, i, j)) + 0.05f * j;
        Reference.Forward(q, k, v, o, options with { Bias = bias });
    });

    /// <summary>Hides keys with a -60 penalty instead of excluding them: a poisoned hidden key then outscores it.</summary>
    public static MutantBackend LeaksHiddenKeys { get; } = new("hidden keys leak", (q, k, v, o, scoped in options) =>
    {
        var l = q.Lengths;
        int lk = (int)k.Lengths[2];
        using var bias = NativeTensor<float>.Zeros(l[0], l[1], l[2], lk);
        // Replace every hiding (keep-mask false or -inf bias) by a very negative but finite bias.
        for (nint b = 0; b < l[0]; b++)
        for (nint h = 0; h < l[1]; h++)
        for (nint i = 0; i < l[2]; i++)
        for (nint j = 0; j < lk; j++)
        {
            float value = options.Bias.IsEmpty ? 0 : BroadcastAt(options.Bias, b, h, i, j);
            bool kept = options.KeepMask.IsEmpty || BroadcastAt(options.KeepMask, b, h, i, j);
            bias[b, h, i, j] = !kept || float.IsNegativeInfinity(value) ? -60f : value;
        }
        Reference.Forward(q, k, v, o, options with { Bias = bias, KeepMask = default });
    });

    /// <summary>The element of a right-aligned broadcast mask at [b, h, i, j].</summary>
    private static TElement BroadcastAt<TElement>(ReadOnlyTensorSpan<TElement> mask, nint b, nint h, nint i, nint j)
    {
        var l = mask.Lengths;
        nint[] index = [b, h, i, j];
        var at = new nint[l.Length];
        for (int d = 0; d < l.Length; d++) at[d] = l[d] == 1 ? 0 : index[4 - l.Length + d];
        return mask[at];
    }

    private static NativeTensor<float> Repeat(ReadOnlyTensorSpan<float> kv, int hq, int hkv)
    {
        var l = kv.Lengths;
        var result = NativeTensor<float>.Zeros(l[0], hq, l[2], l[3]);
        for (nint b = 0; b < l[0]; b++)
        for (nint h = 0; h < hq; h++)
        for (nint j = 0; j < l[2]; j++)
        for (nint c = 0; c < l[3]; c++)
            result[b, h, j, c] = kv[b, h % hkv, j, c];
        return result;
    }
}

public class HarnessCatchesMutantsTests
{
    private static AttentionProblem<float> Problem(ProblemSpec spec) => AttentionProblem<float>.Create(spec);

    private static readonly ProblemSpec Plain = new()
    {
        Batch = 2, QueryHeads = 4, KvHeads = 2, QueryLength = 33, KeyLength = 47, HeadDim = 40, ValueDim = 24, DataSeed = 5,
    };

    private static ToleranceReport RuleOn(IAttentionForward candidate, AttentionProblem<float> problem)
    {
        var result = problem.Run(candidate);
        return ToleranceRule.Check<float>(result.Output, problem.Oracle().Output, problem.Naive(NaivePrecision.Storage).Output);
    }

    [Fact]
    public void The_rule_passes_the_reference_and_fails_a_0_1_percent_scale_error()
    {
        using var problem = Problem(Plain);
        Assert.True(RuleOn(Attention.Using(Backend.Reference), problem).Passed);
        var report = RuleOn(MutantBackend.SlightlyWrongScale, problem);
        Assert.False(report.Passed, report.ToString());
    }

    [Fact]
    public void The_rule_fails_a_kernel_less_precise_than_its_storage_type()
    {
        using var problem = Problem(Plain);
        Assert.False(RuleOn(MutantBackend.RoundsThroughBFloat16, problem).Passed);
    }

    [Fact]
    public void The_rule_fails_an_ignored_bias()
    {
        using var problem = Problem(Plain with { Bias = BiasKind.PerHead });
        Assert.False(RuleOn(MutantBackend.IgnoresBias, problem).Passed);
    }

    [Fact]
    public void The_rule_fails_NaN_on_hidden_rows()
    {
        using var problem = Problem(Plain with { KeepMask = KeepMaskKind.Random, DataSeed = 8 });
        Assert.Contains(problem.Oracle().Lse, double.IsNegativeInfinity); // the problem has hidden rows
        var report = RuleOn(MutantBackend.NaNOnHiddenRows, problem);
        Assert.False(report.Passed);
        Assert.Equal(double.PositiveInfinity, report.MaxError);
    }

    [Fact]
    public void The_gqa_invariant_fails_a_wrong_head_mapping()
    {
        using var problem = Problem(Plain with { QueryHeads = 6, KvHeads = 2 });
        Assert.False(AttentionInvariants.GqaEqualsRepeatedHeads(MutantBackend.WrongGqaHeadMapping, problem).Passed);
        Assert.True(AttentionInvariants.GqaEqualsRepeatedHeads(Attention.Using(Backend.Reference), problem).Passed);
    }

    [Fact]
    public void The_permutation_invariant_fails_a_position_dependent_score()
    {
        using var problem = Problem(Plain);
        var baseline = AttentionInvariants.Baseline.Of(problem);
        Assert.False(AttentionInvariants.KeyValuePermutation(MutantBackend.PositionDependent, problem, baseline, 1).Passed);
        Assert.True(AttentionInvariants.KeyValuePermutation(Attention.Using(Backend.Reference), problem, baseline, 1).Passed);
    }

    [Fact]
    public void The_hidden_keys_invariant_fails_masking_by_a_large_finite_penalty()
    {
        using var problem = Problem(Plain with { KeepMask = KeepMaskKind.Random });
        var report = AttentionInvariants.HiddenKeysDoNotMatter(MutantBackend.LeaksHiddenKeys, problem, 3);
        Assert.False(report.Passed, report.ToString());
        Assert.True(AttentionInvariants.HiddenKeysDoNotMatter(Attention.Using(Backend.Reference), problem, 3).Passed);
    }

    [Fact]
    public void The_ones_and_row_shift_invariants_fail_a_position_dependent_score_too()
    {
        using var problem = Problem(Plain with { Causal = CausalAlignment.BottomRight });
        var baseline = AttentionInvariants.Baseline.Of(problem);
        Assert.False(AttentionInvariants.RowConstantBiasChangesNothing(MutantBackend.PositionDependent, problem, baseline, 2).Passed);
        Assert.False(AttentionInvariants.PositionalMaskEqualsKeepMask(MutantBackend.PositionDependent, problem, baseline).Passed);
        // V = 1 is blind to score errors by design: any softmax of ones is one.
        Assert.True(AttentionInvariants.OnesInOnesOut(MutantBackend.PositionDependent, problem).Passed);
    }
}
