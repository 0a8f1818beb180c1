using AttentionEngine.Kernels.Quantization;

namespace AttentionEngine;

/// <summary>
/// A call's queries and keys quantised for int8 scores (<see cref="ScorePrecision.Int8"/>) by the kernels' own
/// <see cref="Int8ScoreQuantizer"/>, for the oracles: they compute the exact (float64) attention of these integers, so
/// a kernel is checked against the result of its own quantised inputs, and the quantisation error is measured apart.
/// </summary>
internal sealed unsafe class Int8ScoreOracle<T> where T : unmanaged
{
    /// <summary>Keys per smoothing block (<see cref="Int8ScoreQuantizer.KeyBlock"/>).</summary>
    public const int KeyBlock = Int8ScoreQuantizer.KeyBlock;

    private readonly AttentionShape _shape;
    private readonly int _blocks;
    private readonly short[] _queries, _keys;
    private readonly float[] _queryScales, _keyScales, _means;
    private readonly bool[] _queryUsable, _blockUsable;

    public Int8ScoreOracle(in PinnedCall<T> call)
    {
        var s = _shape = call.Shape;
        int d = s.HeadDim, block = Int8ScoreQuantizer.KeyBlock;
        _blocks = (s.KeyLength + block - 1) / block;
        long rows = (long)s.Batch * s.QueryHeads * s.QueryLength, keys = (long)s.Batch * s.KvHeads * s.KeyLength;
        _queries = new short[rows * d];
        _queryScales = new float[rows];
        _queryUsable = new bool[rows];
        _keys = new short[keys * d];
        _keyScales = new float[keys];
        _means = new float[(long)s.Batch * s.KvHeads * _blocks * d];
        _blockUsable = new bool[(long)s.Batch * s.KvHeads * _blocks];
        var row = new float[Math.Max(d, 1) * block];
        fixed (float* buffer = row)
        fixed (short* queries = _queries, keyInts = _keys)
        fixed (float* keyScales = _keyScales, means = _means)
        {
            for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.QueryHeads; h++)
            for (int i = 0; i < s.QueryLength; i++)
            {
                long r = QueryRow(b, h, i);
                for (int c = 0; c < d; c++) buffer[c] = (float)ElementTypes.ToDouble(call.Q[b, h, i, c]);
                _queryUsable[r] = Int8ScoreQuantizer.QuantizeRow(buffer, d, queries + r * d, out _queryScales[r])
                    && Int8ScoreQuantizer.QueryScaleUsable(_queryScales[r], (float)call.Scale);
            }
            for (int b = 0; b < s.Batch; b++)
            for (int h = 0; h < s.KvHeads; h++)
            for (int k = 0; k < _blocks; k++)
            {
                int first = k * block, count = Math.Min(block, s.KeyLength - first);
                for (int j = 0; j < count; j++)
                for (int c = 0; c < d; c++) buffer[j * d + c] = (float)call.KeyAt(b, h, first + j, c);
                long key = KeyIndex(b, h, first), at = BlockIndex(b, h, k);
                _blockUsable[at] = Int8ScoreQuantizer.QuantizeKeyBlock(buffer, d, count, d, means + at * d, keyInts + key * d, d, keyScales + key);
            }
        }
    }

    /// <summary>Whether row (b, h, i) may take int8 scores over key block <paramref name="block"/> (before the hidden-key rule).</summary>
    public bool Usable(int b, int h, int i, int block) =>
        _queryUsable[QueryRow(b, h, i)] && _blockUsable[BlockIndex(b, h / _shape.GroupSize, block)];

    /// <summary>
    /// The int8 dot product of a usable pair in float64: s_q · s_k · Σ q8 · k8 + q · mean, and the magnitude of its terms
    /// (|s_q · s_k · Σ q8 · k8| + Σ |q_c · mean_c|) for rounding sensitivities.
    /// </summary>
    public double Dot(in PinnedCall<T> call, int b, int h, int i, int j, out double magnitude)
    {
        int d = _shape.HeadDim, kvHead = h / _shape.GroupSize;
        long r = QueryRow(b, h, i), key = KeyIndex(b, kvHead, j), block = BlockIndex(b, kvHead, j / Int8ScoreQuantizer.KeyBlock);
        double products = (double)_queryScales[r] * _keyScales[key] * IntegerDot(r, key), shift = 0, shiftMagnitude = 0;
        for (int c = 0; c < d; c++)
        {
            double term = ElementTypes.ToDouble(call.Q[b, h, i, c]) * _means[block * d + c];
            shift += term;
            shiftMagnitude += Math.Abs(term);
        }
        magnitude = Math.Abs(products) + shiftMagnitude;
        return products + shift;
    }

    /// <summary>The parts of a usable pair as an fp32 implementation rounds them: (s_q · s_k) · Σ q8 · k8 and q · mean.</summary>
    public (double Products, double Shift) Parts(in PinnedCall<T> call, int b, int h, int i, int j, Func<double, double> f32)
    {
        int d = _shape.HeadDim, kvHead = h / _shape.GroupSize;
        long r = QueryRow(b, h, i), key = KeyIndex(b, kvHead, j), block = BlockIndex(b, kvHead, j / Int8ScoreQuantizer.KeyBlock);
        long sum = IntegerDot(r, key);
        double shift = 0;
        for (int c = 0; c < d; c++) shift = f32(shift + f32(ElementTypes.ToDouble(call.Q[b, h, i, c]) * _means[block * d + c]));
        return (f32(f32((double)_queryScales[r] * _keyScales[key]) * sum), shift);
    }

    /// <summary>
    /// A bound on |int8 score − exact score| of a usable pair, from the scales: with q = s_q·q8 + e_q and
    /// k − mean = s_k·k8 + e_k (|e| ≤ s/2 per element), the dot moves by at most
    /// s_k/2 · Σ|q_c| + s_q/2 · Σ|k_c − mean_c| + 3·D·s_q·s_k/4, times |scale|.
    /// </summary>
    public double ScoreErrorBound(in PinnedCall<T> call, int b, int h, int i, int j)
    {
        int d = _shape.HeadDim, kvHead = h / _shape.GroupSize;
        long r = QueryRow(b, h, i), key = KeyIndex(b, kvHead, j), block = BlockIndex(b, kvHead, j / Int8ScoreQuantizer.KeyBlock);
        double queryNorm = 0, keyNorm = 0;
        for (int c = 0; c < d; c++)
        {
            queryNorm += Math.Abs(ElementTypes.ToDouble(call.Q[b, h, i, c]));
            keyNorm += Math.Abs((double)(float)((float)call.KeyAt(b, kvHead, j, c) - _means[block * d + c]));
        }
        double sq = _queryScales[r], sk = _keyScales[key];
        return Math.Abs(call.Scale) * (sk / 2 * queryNorm + sq / 2 * keyNorm + 0.75 * d * sq * sk);
    }

    /// <summary>Σ q8 · k8 of query row <paramref name="r"/> and key <paramref name="key"/> (exact).</summary>
    private long IntegerDot(long r, long key)
    {
        int d = _shape.HeadDim;
        long sum = 0;
        for (int c = 0; c < d; c++) sum += _queries[r * d + c] * _keys[key * d + c];
        return sum;
    }

    private long QueryRow(int b, int h, int i) => ((long)b * _shape.QueryHeads + h) * _shape.QueryLength + i;
    private long KeyIndex(int b, int kvHead, int j) => ((long)b * _shape.KvHeads + kvHead) * _shape.KeyLength + j;
    private long BlockIndex(int b, int kvHead, int block) => ((long)b * _shape.KvHeads + kvHead) * _blocks + block;
}
