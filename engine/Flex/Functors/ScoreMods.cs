namespace AttentionEngine;

/// <summary>ALiBi: score + slope_h · (key − query), slope per query head (Press et al.: 2^(−8(h+1)/H)).</summary>
public readonly struct AlibiScore : IScoreMod, IShapeCheckedFunctor
{
    private readonly float[] _slopes;

    /// <summary>ALiBi with one slope per query head (<paramref name="slopes"/>[h] for head h; the array is not copied).</summary>
    public AlibiScore(float[] slopes) => _slopes = slopes ?? throw new ArgumentNullException(nameof(slopes));

    /// <summary>The standard geometric slopes for <paramref name="heads"/> heads.</summary>
    public static AlibiScore Standard(int heads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        return new(Enumerable.Range(0, heads).Select(h => MathF.Pow(2, -8f * (h + 1) / heads)).ToArray());
    }

    /// <summary>The slope of query head <paramref name="head"/>.</summary>
    public float Slope(int head) => _slopes[head];

    /// <inheritdoc/>
    public float Apply(float score, int batch, int head, int query, int key) => score + _slopes[head] * (key - query);
    /// <inheritdoc/>
    public float Derivative(float score, int batch, int head, int query, int key) => 1;

    /// <summary>One slope per query head of the call is needed; a default AlibiScore has none.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        _slopes is null ? "it holds no slopes (a default value); build it with AlibiScore.Standard(heads) or new AlibiScore(slopes)"
        : _slopes.Length < heads ? $"it holds {_slopes.Length} slopes; the call has {heads} query heads, one slope each" : null;
}

/// <summary>Soft-capping (Gemma 2, Grok): cap · tanh(score / cap), keeping logits within ±cap smoothly.</summary>
public readonly record struct TanhSoftcapScore(float Cap) : IScoreMod, IShapeCheckedFunctor
{
    /// <summary>The cap must be positive and finite (a cap of 0 would divide by zero).</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        Cap > 0 && float.IsFinite(Cap) ? null : $"Cap is {Cap}; expected a positive, finite number";

    /// <inheritdoc/>
    public float Apply(float score, int batch, int head, int query, int key) => Cap * MathF.Tanh(score / Cap);

    /// <inheritdoc/>
    public float Derivative(float score, int batch, int head, int query, int key)
    {
        float t = MathF.Tanh(score / Cap);
        return 1 - t * t;
    }
}

/// <summary>
/// A learned relative-position bias (T5-style, unbucketed): score + table[clamp(key − query, −MaxDistance, MaxDistance) + MaxDistance].
/// </summary>
public readonly struct RelativePositionScore : IScoreMod, IShapeCheckedFunctor
{
    private readonly float[] _table;

    /// <param name="table">2 · maxDistance + 1 biases, for key − query from −maxDistance to +maxDistance</param>
    public RelativePositionScore(float[] table)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (table.Length % 2 == 0)
            throw new ArgumentException($"table has {table.Length} entries; expected an odd count 2·maxDistance + 1.", nameof(table));
        _table = table;
    }

    /// <summary>The largest |key − query| with its own bias; farther pairs take the bias at ± MaxDistance.</summary>
    public int MaxDistance => _table.Length / 2;

    /// <summary>The bias added at key − query = <paramref name="distance"/> (clamped to ± <see cref="MaxDistance"/>).</summary>
    public float Bias(int distance) => _table[Math.Clamp(distance, -MaxDistance, MaxDistance) + MaxDistance];

    /// <inheritdoc/>
    public float Apply(float score, int batch, int head, int query, int key) => score + Bias(key - query);
    /// <inheritdoc/>
    public float Derivative(float score, int batch, int head, int query, int key) => 1;

    /// <summary>Any call fits (distances are clamped), but a default RelativePositionScore has no table.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        _table is null ? "it holds no table (a default value); build it with new RelativePositionScore(table)" : null;
}

/// <summary>First one score mod, then the other.</summary>
public readonly record struct ChainedScore<TFirst, TSecond>(TFirst First, TSecond Second) : IScoreMod, IShapeCheckedFunctor
    where TFirst : struct, IScoreMod where TSecond : struct, IScoreMod
{
    /// <summary>Both parts must fit.</summary>
    public string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength) =>
        FunctorShape.Incompatibility(First, batch, heads, queryLength, keyLength) is { } first ? $"First: {first}"
        : FunctorShape.Incompatibility(Second, batch, heads, queryLength, keyLength) is { } second ? $"Second: {second}" : null;

    /// <inheritdoc/>
    public float Apply(float score, int batch, int head, int query, int key) =>
        Second.Apply(First.Apply(score, batch, head, query, key), batch, head, query, key);

    /// <summary>The chain rule: Second'(First(s)) · First'(s).</summary>
    public float Derivative(float score, int batch, int head, int query, int key) =>
        Second.Derivative(First.Apply(score, batch, head, query, key), batch, head, query, key) * First.Derivative(score, batch, head, query, key);
}
