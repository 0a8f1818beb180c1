using AttentionEngine.Bindings.Memory;

namespace AttentionEngine;

/// <summary>
/// What a training forward of a <see cref="MultiHeadAttention{TWeight}"/> layer keeps for its backward, as autograd
/// keeps a module's saved tensors: the input, its projections (queries and keys rotated), attention's output and
/// log-sum-exp, and the gated output, all in float. With them the backward does not run the projections and attention
/// forward again (about a quarter of a recomputing backward's work at E1024, S2048).
/// <para>
/// Make one with <see cref="MultiHeadAttention{TWeight}.CreateActivations"/>, fill it with the training forward
/// (<see cref="MultiHeadAttention{TWeight}.Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, MultiHeadAttentionActivations, in MultiHeadAttentionOptions)"/>),
/// and pass it to the matching backward, as often as needed: the backward only reads it. Its native memory
/// (<see cref="ByteCount"/>: per query token, in floats, the input, the Q, gate, K and V projections, the attention and
/// gated outputs and one LSE per head; cross-attention adds, per key token, the key and value inputs and their
/// projections) grows to the largest call and is freed by <see cref="Dispose"/>. Not for concurrent use: one forward at
/// a time, and no forward while a backward reads it.
/// </para>
/// </summary>
public sealed unsafe class MultiHeadAttentionActivations : IDisposable
{
    private AlignedMemoryHandle? _memory;
    private long _capacity; // floats
    private bool _disposed;

    internal MultiHeadAttentionActivations(object layer) => Layer = layer;

    /// <summary>The layer that made this holder; only it can fill and read it.</summary>
    internal object Layer { get; }

    /// <summary>Native bytes held (the largest call's activations so far; 0 before the first forward and after <see cref="Dispose"/>).</summary>
    public long ByteCount => _memory is null ? 0 : _capacity * sizeof(float);

    /// <summary>Whether a training forward has filled it (and no load of weights or failed forward came since).</summary>
    public bool IsFilled { get; private set; }

    /// <summary>Batch size of the forward that filled it.</summary>
    public int Batch { get; private set; }

    /// <summary>Query sequence length of the forward that filled it.</summary>
    public int Length { get; private set; }

    /// <summary>Key sequence length of the forward that filled it (<see cref="Length"/> for self-attention).</summary>
    public int KeyLength { get; private set; }

    /// <summary>Whether the forward that filled it was cross-attention (separate query, key and value inputs).</summary>
    public bool IsCrossAttention { get; private set; }

    // What the backward must be given again, compared there: the settings that decide the forward's result.
    internal int WeightsVersion { get; private set; }
    internal Mask? Mask { get; private set; }
    internal DiagonalBand Band { get; private set; } // what the mask leaves visible: masks compare by it
    internal float? Scale { get; private set; }
    internal long PositionOffset { get; private set; }
    internal long KeyPositionOffset { get; private set; }
    internal AttentionDropout Dropout { get; private set; }
    internal bool Padding { get; private set; }

    /// <summary>At least <paramref name="floats"/> floats for a forward; what it held before is invalid from here on.</summary>
    internal float* Reserve(long floats)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        IsFilled = false;
        if (floats > _capacity)
        {
            _memory?.Dispose();
            _memory = null;
            _capacity = 0;
            _memory = AlignedMemoryHandle.Allocate((nuint)Math.Max(16, floats) * sizeof(float));
            _capacity = floats;
        }
        return (float*)_memory!.DangerousGetHandle();
    }

    /// <summary>The saved floats, for a backward (after <see cref="IsFilled"/> was checked).</summary>
    internal float* Pointer
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return (float*)_memory!.DangerousGetHandle();
        }
    }

    internal void MarkFilled(bool cross, int batch, int length, int keyLength, int weightsVersion, scoped in MultiHeadAttentionOptions options)
    {
        (IsCrossAttention, Batch, Length, KeyLength, WeightsVersion) = (cross, batch, length, keyLength, weightsVersion);
        (Mask, Scale, PositionOffset, KeyPositionOffset, Dropout, Padding) =
            (options.Mask, options.Scale, options.PositionOffset, cross ? options.KeyPositionOffset : 0, options.Dropout, options.KeyPadding.Rank != 0);
        Band = BandOf(options.Mask, length, keyLength);
        IsFilled = true;
    }

    /// <summary>The keys <paramref name="mask"/> leaves visible in a call of <paramref name="length"/> queries and <paramref name="keyLength"/> keys.</summary>
    internal static DiagonalBand BandOf(Mask? mask, int length, int keyLength) => mask?.Resolve(length, keyLength) ?? DiagonalBand.All;

    /// <summary>Frees the saved activations' native memory; the holder cannot be used afterwards.</summary>
    public void Dispose()
    {
        _memory?.Dispose();
        _memory = null;
        _capacity = 0;
        _disposed = true;
        IsFilled = false;
    }
}
