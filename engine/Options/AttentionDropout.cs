using AttentionEngine.Kernels.Dropout;

namespace AttentionEngine;

/// <summary>
/// Dropout on the attention probabilities, as training uses it: each probability P(i, j) is kept with probability
/// 1 − p and then multiplied by 1 / (1 − p), or dropped (set to 0), so output_i = Σ_j P(i, j) · M(i, j) · v_j. The
/// softmax itself and the LSE are unaffected (the row's sum includes dropped keys), and a dropped key's V never
/// reaches the output, whatever it holds. The default value (p = 0) is no dropout, bit for bit. Outputs are then no
/// longer averages of V: where |V| comes within a factor 1 / (1 − p) of float.MaxValue an output can exceed the float
/// range, and it overflows to infinity as float arithmetic does (the exact result rounded).
/// <para>
/// The mask is never stored: the keep decision of (batch, head, query, key) is a pure function of
/// (<see cref="Seed"/>, <see cref="Offset"/>, batch, head, query, key), drawn with Philox4x32-10, so the forward, the
/// backward (pass it the same options) and every backend draw the same bits whatever the tiling, thread count or
/// vector width. <see cref="IsKept"/> gives any single decision. Every (batch, head, query, key) of a call has its own
/// Philox counter; for one seed, every offset gives another mask, so a training loop keeps one seed and advances the
/// offset once per step (as PyTorch's Philox offset). Keys are drawn four to a Philox call: counter (key / 4, query,
/// batch · queryHeads + head, offset's low 32 bits), key (seed's low 32 bits, seed's high 32 bits xor offset's high
/// 32 bits); a key is kept when its 32-bit word is at least ⌊p · 2^32⌋.
/// </para>
/// </summary>
public readonly record struct AttentionDropout
{
    /// <param name="probability">chance that a probability is dropped, in [0, 1)</param>
    /// <param name="seed">the mask's key: another seed draws an unrelated mask</param>
    /// <param name="offset">the mask's stream within the seed, typically the training step</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="probability"/> is NaN or outside [0, 1).</exception>
    public AttentionDropout(double probability, ulong seed, ulong offset = 0)
    {
        if (!(probability >= 0 && probability < 1))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "Dropout probability must be in [0, 1) (1 would drop every key and scale by infinity).");
        Probability = probability;
        Seed = seed;
        Offset = offset;
        Stream = new DropoutStream(probability, seed, offset);
    }

    /// <summary>Chance that a probability is dropped, in [0, 1); 0 means no dropout.</summary>
    public double Probability { get; }

    /// <summary>The mask's key.</summary>
    public ulong Seed { get; }

    /// <summary>The mask's stream within <see cref="Seed"/>: advance it per training step instead of reseeding.</summary>
    public ulong Offset { get; }

    /// <summary>
    /// Whether <see cref="AttentionOptions.Weights"/> receives the probabilities after dropout (scaled by 1 / (1 − p),
    /// 0 where dropped: the matrix that multiplies V, as PyTorch's multi-head attention returns in training) rather
    /// than before (the softmax, the default). Either way the LSE is that of the undropped scores.
    /// </summary>
    public bool InWeights { get; init; }

    /// <summary>True when this drops anything: p &gt; 0.</summary>
    public bool IsActive => Probability > 0;

    /// <summary>The factor of a kept probability, 1 / (1 − p) rounded to float, as the kernels apply it.</summary>
    public float KeptScale => IsActive ? Stream.Scale : 1f;

    /// <summary>
    /// Whether the probability of (batch, head, query, key) is kept in a call with <paramref name="queryHeads"/> query
    /// heads: the bit every backend draws. Always true without dropout.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a negative index, or head not below queryHeads.</exception>
    public bool IsKept(int batch, int head, int query, int key, int queryHeads)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(batch);
        ArgumentOutOfRangeException.ThrowIfNegative(query);
        ArgumentOutOfRangeException.ThrowIfNegative(key);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(queryHeads);
        if (head < 0 || head >= queryHeads)
            throw new ArgumentOutOfRangeException(nameof(head), head, $"head must be in [0, queryHeads = {queryHeads}).");
        return Stream.Keeps(DropoutStream.RowStream(batch, queryHeads, head), query, key);
    }

    /// <summary>The exact factor of P(i, j) in float64 (the oracles'): 1 without dropout, 1 / (1 − p) where kept, 0 where dropped.</summary>
    internal double Factor(int batch, int queryHeads, int head, int query, int key) =>
        !IsActive ? 1.0 : Stream.Keeps(DropoutStream.RowStream(batch, queryHeads, head), query, key) ? 1.0 / (1.0 - Probability) : 0.0;

    /// <summary>The kernels' form of this dropout, derived once (the oracles ask it for every pair); default: inactive.</summary>
    internal DropoutStream Stream { get; }
}
