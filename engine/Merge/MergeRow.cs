using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
        int done = stride == 1 ? AddContiguous(w, in output) : 0;
        for (int x = done; x < _sum.Length; x++)
            _sum[x] += w * ElementTypes.ToDouble(Unsafe.Add(ref Unsafe.AsRef(in output), x * stride));
    }

    /// <summary>
    /// Σ += w · output for a contiguous row, four doubles at a time (float rows in place, 16-bit rows widened to float
    /// first, exactly); returns how many elements it did. A separate multiply and add per element, as the scalar loop
    /// does, so the bits are the same. A paged cache merges every row over each of its pages, per decode step.
    /// </summary>
    private readonly unsafe int AddContiguous<T>(double w, ref readonly T output) where T : unmanaged
    {
        if (!Avx.IsSupported || (typeof(T) != typeof(float) && typeof(T) != typeof(BFloat16) && typeof(T) != typeof(Half))) return 0;
        int count = _sum.Length & ~3;
        if (count == 0) return 0;
        var weight = Vector256.Create(w);
        fixed (T* source = &output)
        fixed (double* sum = _sum)
        {
            const int Chunk = 64;
            float* widened = stackalloc float[Chunk];
            for (int x0 = 0; x0 < count; x0 += Chunk)
            {
                int n = Math.Min(Chunk, count - x0);
                float* values = (float*)(source + x0);
                if (typeof(T) != typeof(float))
                {
                    Kernels.ElementConversion.ToSingle(source + x0, 1, n, widened);
                    values = widened;
                }
                for (int x = 0; x < n; x += 4)
                {
                    var products = Avx.Multiply(weight, Avx.ConvertToVector256Double(Sse.LoadVector128(values + x)));
                    Avx.Store(sum + x0 + x, Avx.Add(Avx.LoadVector256(sum + x0 + x), products));
                }
            }
        }
        return count;
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
