using System.Runtime.CompilerServices;

namespace AttentionEngine;

/// <summary>
/// One row of an LSE merge, streaming: parts arrive one by one, the running maximum LSE rescales what came before
/// (online softmax over parts), all in float64. A part with LSE −infinity is skipped without reading its output.
/// </summary>
internal ref struct MergeRow
{
    private readonly Span<double> _sum; // Σ w_s · output_s, relative to _max
    private double _max;
    private double _weight;             // Σ w_s, relative to _max

    public MergeRow(Span<double> accumulator)
    {
        _sum = accumulator;
        _sum.Clear();
        _max = double.NegativeInfinity;
        _weight = 0;
    }

    /// <summary>Adds a part: its LSE and its output row (Dv elements, <paramref name="stride"/> apart).</summary>
    public void Add<T>(float lse, ref readonly T output, nint stride) where T : unmanaged
    {
        if (float.IsNegativeInfinity(lse)) return; // saw no key: contributes nothing, its output is never read
        double partLse = lse;
        if (partLse > _max || double.IsNaN(partLse))
        {
            // A new maximum rescales the sum so far (exp(-inf) = 0 on the first part); NaN or +inf (garbage LSEs)
            // propagate as NaN through exp(NaN) or exp(inf - inf).
            double rescale = Math.Exp(_max - partLse);
            if (_weight != 0)
            {
                for (int x = 0; x < _sum.Length; x++) _sum[x] *= rescale;
                _weight *= rescale;
            }
            _max = partLse;
        }
        double w = Math.Exp(partLse - _max);
        _weight += w;
        for (int x = 0; x < _sum.Length; x++)
            _sum[x] += w * ElementTypes.ToDouble(Unsafe.Add(ref Unsafe.AsRef(in output), x * stride));
    }

    /// <summary>Writes the merged row (zeros when no part saw a key) and returns the merged LSE.</summary>
    public readonly float Finish<T>(ref T output, nint stride) where T : unmanaged
    {
        if (_weight == 0)
        {
            for (int x = 0; x < _sum.Length; x++) Unsafe.Add(ref output, x * stride) = default;
            return float.NegativeInfinity;
        }
        for (int x = 0; x < _sum.Length; x++) Unsafe.Add(ref output, x * stride) = ElementTypes.FromDouble<T>(_sum[x] / _weight);
        return (float)(_max + Math.Log(_weight));
    }
}
