using System.Numerics.Tensors;

namespace AttentionEngine.Testing;

/// <summary>
/// One attention problem as tensors: Q, K, V in a memory layout, optional bias and keep-mask in their broadcast
/// shapes, a positional mask and a scale. Owns its native memory. Runs any <see cref="IAttentionForward"/>, the
/// oracle and the naive formula on itself, so checking a kernel is a few lines.
/// </summary>
public sealed class AttentionProblem<T> : IDisposable where T : unmanaged
{
    /// <summary>Takes ownership of the tensors.</summary>
    public AttentionProblem(
        string description, NativeTensor<T> q, NativeTensor<T> k, NativeTensor<T> v,
        NativeTensor<float>? bias = null, NativeTensor<bool>? keepMask = null, Mask? mask = null, float? scale = null,
        MemoryLayout outputLayout = MemoryLayout.Contiguous, AttentionDropout dropout = default)
    {
        Dropout = dropout;
        ElementTypes.ThrowIfUnsupported<T>();
        Description = description;
        (Q, K, V, Bias, KeepMask) = (q, k, v, bias, keepMask);
        Mask = mask ?? Mask.None;
        Scale = scale;
        OutputLayout = outputLayout;
        Shape = new AttentionShape((int)q.Lengths[0], (int)q.Lengths[1], (int)k.Lengths[1], (int)q.Lengths[2],
            (int)k.Lengths[2], (int)q.Lengths[3], (int)v.Lengths[3]);
    }

    /// <summary>What the problem is, for failure messages (its spec's text when made from a spec).</summary>
    public string Description { get; }
    /// <summary>The sizes of Q, K and V.</summary>
    public AttentionShape Shape { get; }
    /// <summary>[B, Hq, Lq, D] queries in the problem's layout.</summary>
    public NativeTensor<T> Q { get; }
    /// <summary>[B, Hkv, Lk, D] keys.</summary>
    public NativeTensor<T> K { get; }
    /// <summary>[B, Hkv, Lk, Dv] values.</summary>
    public NativeTensor<T> V { get; }
    /// <summary>The additive bias in its broadcast shape, or null.</summary>
    public NativeTensor<float>? Bias { get; }
    /// <summary>The boolean keep-mask in its broadcast shape, or null.</summary>
    public NativeTensor<bool>? KeepMask { get; }
    /// <summary>The positional mask (<see cref="AttentionEngine.Mask.None"/> when there is none).</summary>
    public Mask Mask { get; }
    /// <summary>The scale of Q·K, or null for 1/sqrt(D).</summary>
    public float? Scale { get; }
    /// <summary>The layout of the output tensors the problem allocates for a candidate.</summary>
    public MemoryLayout OutputLayout { get; }
    /// <summary>Dropout on the probabilities (the default: none), part of <see cref="Options"/>.</summary>
    public AttentionDropout Dropout { get; }

    /// <summary>Builds the problem a spec describes; the same spec gives the same values everywhere.</summary>
    public static AttentionProblem<T> Create(ProblemSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        spec.Validate();
        var rng = new Random(spec.DataSeed);
        int qSeed = rng.Next(), kSeed = rng.Next(), vSeed = rng.Next(), biasSeed = rng.Next(), keepSeed = rng.Next();
        var q = Allocate<T>([spec.Batch, spec.QueryHeads, spec.QueryLength, spec.HeadDim], spec.Layout);
        var k = Allocate<T>([spec.Batch, spec.KvHeads, spec.KeyLength, spec.HeadDim], spec.Layout);
        var v = Allocate<T>([spec.Batch, spec.KvHeads, spec.KeyLength, spec.ValueDim], spec.Layout);
        // Values at the range's edge go into V only: their averages are the hazard (Q·K that overflow are not defined).
        var queryKeyValues = spec.Values == ValueDistribution.NearRangeEdge ? ValueDistribution.Normal : spec.Values;
        TensorRandom.Fill(q, qSeed, queryKeyValues);
        TensorRandom.Fill(k, kSeed, queryKeyValues);
        TensorRandom.Fill(v, vSeed, spec.Values);
        return new AttentionProblem<T>(
            spec.ToString(), q, k, v,
            MaskGeneration.Bias(spec, new Random(biasSeed)), MaskGeneration.KeepMask(spec, new Random(keepSeed)),
            spec.BuildMask(), spec.Scale, spec.Layout, spec.Dropout);
    }

    /// <summary>A tensor of the given logical lengths laid out as <paramref name="layout"/> says.</summary>
    public static NativeTensor<TElement> Allocate<TElement>(nint[] lengths, MemoryLayout layout) where TElement : unmanaged =>
        NativeTensor<TElement>.Allocate(lengths, layout switch
        {
            MemoryLayout.Contiguous => TensorLayout.Contiguous(lengths),
            MemoryLayout.Bshd => TensorLayout.Permuted(lengths, [0, 2, 1, 3]),
            MemoryLayout.Padded => TensorLayout.Padded(lengths, 3),
            _ => throw new ArgumentOutOfRangeException(nameof(layout), layout, "Unknown layout."),
        });

    /// <summary>The options of this problem, with optional destinations.</summary>
    public AttentionOptions Options(TensorSpan<float> lse = default, TensorSpan<float> weights = default) => new()
    {
        Scale = Scale,
        Mask = Mask,
        Bias = Bias is null ? default : Bias.AsReadOnlyTensorSpan(),
        KeepMask = KeepMask is null ? default : KeepMask.AsReadOnlyTensorSpan(),
        Lse = lse,
        Weights = weights,
        Dropout = Dropout,
    };

    /// <summary>An output tensor [B, Hq, Lq, Dv] in this problem's layout.</summary>
    public NativeTensor<T> AllocateOutput() =>
        Allocate<T>([Shape.Batch, Shape.QueryHeads, Shape.QueryLength, Shape.ValueDim], OutputLayout);

    /// <summary>Runs a candidate and widens what it wrote (output, LSE, and weights when asked) to float64.</summary>
    public AttentionResult Run(IAttentionForward candidate, bool withLse = true, bool withWeights = false)
    {
        ArgumentNullException.ThrowIfNull(candidate);
        using var output = AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(Shape.Batch, Shape.QueryHeads, Shape.QueryLength);
        using var weights = withWeights ? NativeTensor<float>.Zeros(Shape.Batch, Shape.QueryHeads, Shape.QueryLength, Shape.KeyLength) : null;
        // Poison the destinations so a candidate that skips an element cannot pass by the zeros left there.
        output.Fill(ElementTypes.FromSingle<T>(float.NaN));
        lse.Fill(float.NaN);
        weights?.Fill(float.NaN);
        candidate.Forward<T>(Q, K, V, output,
            Options(withLse ? lse.AsTensorSpan() : default, weights is null ? default : weights.AsTensorSpan()));
        return new AttentionResult(
            Shape,
            Array.ConvertAll(output.ToArray(), ElementTypes.ToDouble),
            withLse ? Array.ConvertAll(lse.ToArray(), x => (double)x) : [],
            weights is null ? null : Array.ConvertAll(weights.ToArray(), x => (double)x));
    }

    /// <summary>The float64 oracle's answer.</summary>
    public AttentionResult Oracle(bool withWeights = false)
    {
        using var output = AllocateOutput();
        return ReferenceAttention.Compute(AttentionValidator.Validate<T>(Q, K, V, output, Options()), withWeights);
    }

    /// <summary>The textbook formula's answer (with its weights when asked: the yardstick of a weights check).</summary>
    public AttentionResult Naive(NaivePrecision precision, bool withWeights = false) =>
        NaiveAttention.Compute<T>(Q, K, V, precision, Options(), withWeights);

    /// <summary>
    /// Which (b, h, i, j) pairs are visible, row-major [B, Hq, Lq, Lk]: positional mask, keep-mask and
    /// non-(-infinity) bias combined.
    /// </summary>
    public bool[] Visibility()
    {
        var result = new bool[(long)Shape.Batch * Shape.QueryHeads * Shape.QueryLength * Shape.KeyLength];
        using var output = AllocateOutput();
        var call = AttentionValidator.Validate<T>(Q, K, V, output, Options());
        var band = call.Mask.ToFunctor(Shape.QueryLength, Shape.KeyLength);
        long n = 0;
        for (int b = 0; b < Shape.Batch; b++)
        for (int h = 0; h < Shape.QueryHeads; h++)
        for (int i = 0; i < Shape.QueryLength; i++)
        for (int j = 0; j < Shape.KeyLength; j++)
            result[n++] = band.Keep(b, h, i, j) && (!call.HasKeepMask || call.KeepMask[b, h, i, j])
                && (!call.HasBias || !float.IsNegativeInfinity(call.Bias[b, h, i, j]));
        return result;
    }

    /// <summary>The bias broadcast to [B, Hq, Lq, Lk] (zeros when there is none).</summary>
    public NativeTensor<float> FullBias()
    {
        var full = NativeTensor<float>.Zeros(Shape.Batch, Shape.QueryHeads, Shape.QueryLength, Shape.KeyLength);
        if (Bias is null) return full;
        using var output = AllocateOutput();
        var call = AttentionValidator.Validate<T>(Q, K, V, output, Options());
        for (int b = 0; b < Shape.Batch; b++)
        for (int h = 0; h < Shape.QueryHeads; h++)
        for (int i = 0; i < Shape.QueryLength; i++)
        for (int j = 0; j < Shape.KeyLength; j++)
            full[b, h, i, j] = call.Bias[b, h, i, j];
        return full;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Q.Dispose();
        K.Dispose();
        V.Dispose();
        Bias?.Dispose();
        KeepMask?.Dispose();
    }

    /// <inheritdoc/>
    public override string ToString() => Description;
}
