namespace AttentionEngine;

/// <summary>ALiBi: score + slope_h · (key − query), slope per query head (Press et al.: 2^(−8(h+1)/H)).</summary>
public readonly struct AlibiScore : IScoreMod
{
    private readonly float[] _slopes;

    public AlibiScore(float[] slopes) => _slopes = slopes ?? throw new ArgumentNullException(nameof(slopes));

    /// <summary>The standard geometric slopes for <paramref name="heads"/> heads.</summary>
    public static AlibiScore Standard(int heads)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(heads, 1);
        return new(Enumerable.Range(0, heads).Select(h => MathF.Pow(2, -8f * (h + 1) / heads)).ToArray());
    }

    public float Slope(int head) => _slopes[head];

    public float Apply(float score, int batch, int head, int query, int key) => score + _slopes[head] * (key - query);
    public float Derivative(float score, int batch, int head, int query, int key) => 1;
}

/// <summary>Soft-capping (Gemma 2, Grok): cap · tanh(score / cap), keeping logits within ±cap smoothly.</summary>
public readonly record struct TanhSoftcapScore(float Cap) : IScoreMod
{
    public float Apply(float score, int batch, int head, int query, int key) => Cap * MathF.Tanh(score / Cap);

    public float Derivative(float score, int batch, int head, int query, int key)
    {
        float t = MathF.Tanh(score / Cap);
        return 1 - t * t;
    }
}

/// <summary>
/// A learned relative-position bias (T5-style, unbucketed): score + table[clamp(key − query, −MaxDistance, MaxDistance) + MaxDistance].
/// </summary>
public readonly struct RelativePositionScore : IScoreMod
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

    public int MaxDistance => _table.Length / 2;

    public float Bias(int distance) => _table[Math.Clamp(distance, -MaxDistance, MaxDistance) + MaxDistance];

    public float Apply(float score, int batch, int head, int query, int key) => score + Bias(key - query);
    public float Derivative(float score, int batch, int head, int query, int key) => 1;
}

/// <summary>First one score mod, then the other.</summary>
public readonly record struct ChainedScore<TFirst, TSecond>(TFirst First, TSecond Second) : IScoreMod
    where TFirst : struct, IScoreMod where TSecond : struct, IScoreMod
{
    public float Apply(float score, int batch, int head, int query, int key) =>
        Second.Apply(First.Apply(score, batch, head, query, key), batch, head, query, key);

    /// <summary>The chain rule: Second'(First(s)) · First'(s).</summary>
    public float Derivative(float score, int batch, int head, int query, int key) =>
        Second.Derivative(First.Apply(score, batch, head, query, key), batch, head, query, key) * First.Derivative(score, batch, head, query, key);
}
