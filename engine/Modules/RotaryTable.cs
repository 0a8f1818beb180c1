namespace AttentionEngine;

/// <summary>
/// Cosines and sines of the rotary angles for positions [0, Capacity), computed in float64 and rounded once, grown by
/// doubling when a call reaches further. Immutable once built, so concurrent forward calls share it safely.
/// </summary>
internal sealed class RotaryTable
{
    private readonly float[] _cos, _sin;
    private readonly int _pairs;

    public int Capacity { get; }

    private RotaryTable(int capacity, int pairs, double @base)
    {
        Capacity = capacity;
        _pairs = pairs;
        _cos = new float[(long)capacity * pairs];
        _sin = new float[(long)capacity * pairs];
        for (int i = 0; i < pairs; i++)
        {
            double frequency = Math.Pow(@base, -2.0 * i / (2 * pairs));
            for (int p = 0; p < capacity; p++)
            {
                double angle = p * frequency;
                _cos[(long)p * pairs + i] = (float)Math.Cos(angle);
                _sin[(long)p * pairs + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>A table holding positions below <paramref name="end"/>: <paramref name="current"/> when it does, else a new one.</summary>
    public static RotaryTable Reaching(RotaryTable? current, long end, int pairs, double @base)
    {
        if (current is not null && end <= current.Capacity) return current;
        if (end > int.MaxValue / 2) throw new ArgumentOutOfRangeException(nameof(end), $"Rotary positions reach {end}; at most {int.MaxValue / 2} are supported.");
        long capacity = Math.Max(256, current?.Capacity ?? 0);
        while (capacity < end) capacity *= 2;
        return new RotaryTable((int)capacity, pairs, @base);
    }

    /// <summary>
    /// Rotates the first 2·pairs dimensions of each of <paramref name="heads"/> heads (headDim apart) of
    /// <paramref name="tokens"/> rows (rowStride apart); row t is at position firstPosition + t.
    /// </summary>
    public unsafe void Apply(float* rows, nint rowStride, int tokens, int heads, int headDim, long firstPosition, RotaryLayout layout) =>
        Rotate(rows, rowStride, tokens, heads, headDim, firstPosition, layout, inverse: false);

    /// <summary>The transpose of <see cref="Apply"/> (a rotation by the opposite angles): how gradients flow back through it.</summary>
    public unsafe void ApplyInverse(float* rows, nint rowStride, int tokens, int heads, int headDim, long firstPosition, RotaryLayout layout) =>
        Rotate(rows, rowStride, tokens, heads, headDim, firstPosition, layout, inverse: true);

    private unsafe void Rotate(float* rows, nint rowStride, int tokens, int heads, int headDim, long firstPosition, RotaryLayout layout, bool inverse)
    {
        fixed (float* cosines = _cos)
        fixed (float* sines = _sin)
        {
            for (int t = 0; t < tokens; t++)
            {
                float* cos = cosines + (firstPosition + t) * _pairs, sin = sines + (firstPosition + t) * _pairs;
                for (int h = 0; h < heads; h++)
                {
                    float* x = rows + t * rowStride + (nint)h * headDim;
                    if (layout == RotaryLayout.Interleaved)
                        for (int i = 0; i < _pairs; i++) Turn(ref x[2 * i], ref x[2 * i + 1], cos[i], inverse ? -sin[i] : sin[i]);
                    else
                        for (int i = 0; i < _pairs; i++) Turn(ref x[i], ref x[i + _pairs], cos[i], inverse ? -sin[i] : sin[i]);
                }
            }
        }
    }

    private static void Turn(ref float x, ref float y, float cos, float sin)
    {
        float a = x, b = y;
        x = a * cos - b * sin;
        y = a * sin + b * cos;
    }
}
