using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// One attention implementation. Validation is done here, once, for every backend; a backend implements
/// <see cref="Execute{T, TMask, TScore}"/> (and, with a backward pass, <see cref="ExecuteBackward{T, TMask, TScore}"/>)
/// over an already validated call, and says what it cannot do through
/// <see cref="UnavailableReason"/> (not on this machine) and <see cref="CannotServe{T}"/> (not this call).
/// </summary>
public abstract class AttentionBackend : IAttentionForward
{
    /// <summary>Which built-in backend this is; <see cref="Backend.Custom"/> (the default) for one from another library.</summary>
    public virtual Backend Kind => Backend.Custom;

    /// <summary>The backend's name: the kind for built-in ones, the class name for custom ones unless they override it.</summary>
    public virtual string Name => Kind == Backend.Custom ? GetType().Name : Kind.ToString();

    /// <summary>Why this backend cannot run on this machine (no GPU, no driver...), or null when it can.</summary>
    public virtual string? UnavailableReason => null;

    /// <summary>True when this backend can run on this machine (<see cref="UnavailableReason"/> is null).</summary>
    public bool IsAvailable => UnavailableReason is null;

    /// <summary>Why this backend cannot honour a validated call (names the option), or null when it can.</summary>
    public virtual string? CannotServe<T>(scoped in AttentionCall<T> call) where T : unmanaged => null;

    /// <summary>
    /// True when this backend applies <see cref="AttentionOptions.Dropout"/> (drawing the engine's Philox mask, see
    /// <see cref="AttentionDropout"/>). A backend that does not is never given a call with dropout: such a call is
    /// refused rather than run without it.
    /// </summary>
    public virtual bool SupportsDropout => false;

    /// <summary>
    /// True when this backend reads int8 keys and values with per-token scales (<see cref="AttentionCall{T}.HasQuantizedKeyValues"/>).
    /// A backend that does not is never given such a call.
    /// </summary>
    public virtual bool SupportsQuantizedKeyValues => false;

    /// <summary>
    /// True when this backend computes scores in int8 (<see cref="ScorePrecision.Int8"/>). A backend that does not is never
    /// given such a call: it is refused rather than run in float.
    /// </summary>
    public virtual bool SupportsInt8Scores => false;

    /// <summary>Why this backend cannot take the call: <see cref="CannotServe{T}"/>, or dropout, int8 keys and values or int8 scores it does not do.</summary>
    internal string? Refusal<T>(scoped in AttentionCall<T> call) where T : unmanaged =>
        (call.HasQuantizedKeyValues && !SupportsQuantizedKeyValues ? "k, v: this backend does not read int8 keys and values" : null)
        ?? (call.ScorePrecision == ScorePrecision.Int8 && !SupportsInt8Scores ? "options.ScorePrecision: this backend does not compute int8 scores" : null)
        ?? CannotServe(call)
        ?? (call.Dropout.IsActive && !SupportsDropout ? "options.Dropout: this backend does not apply dropout" : null);

    /// <inheritdoc />
    /// <exception cref="ArgumentException">the call is invalid (see <see cref="AttentionValidator"/>).</exception>
    /// <exception cref="NotSupportedException">this backend cannot honour an option of the call.</exception>
    /// <exception cref="InvalidOperationException">this backend is not available on this machine.</exception>
    public void Forward<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options = default) where T : unmanaged =>
        ForwardFlex(q, k, v, output, options, (BlockMask<KeepAll>?)null, default(IdentityScore));

    /// <summary>
    /// Attention over int8 keys and values with per-token scales on this backend (see
    /// <see cref="Attention.Forward{T}(ReadOnlyTensorSpan{T}, QuantizedTensorSpan, QuantizedTensorSpan, TensorSpan{T}, in AttentionOptions)"/>).
    /// </summary>
    /// <exception cref="ArgumentException">the call is invalid; the message names the tensor or scale.</exception>
    /// <exception cref="NotSupportedException">this backend does not read int8 keys and values, or an option of the call.</exception>
    /// <exception cref="InvalidOperationException">this backend is not available on this machine.</exception>
    public void Forward<T>(
        ReadOnlyTensorSpan<T> q, QuantizedTensorSpan k, QuantizedTensorSpan v, TensorSpan<T> output,
        scoped in AttentionOptions options = default) where T : unmanaged
    {
        ThrowIfCannotRun(backward: false, functors: false);
        var call = AttentionValidator.ValidateQuantized(q, k, v, output, options);
        ThrowIfRefused(call);
        ExecutePlain(call);
    }

    /// <summary>
    /// Computes a validated call into its destinations. Plain calls come with <paramref name="blockMask"/> null and
    /// <typeparamref name="TScore"/> = <see cref="IdentityScore"/>; a backend whose <see cref="SupportsFunctors"/> is
    /// false is given only those, and one whose <see cref="SupportsDropout"/> is false never a call with dropout.
    /// </summary>
    protected internal abstract void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod;

    /// <summary>A validated call with no functors.</summary>
    internal void ExecutePlain<T>(scoped in AttentionCall<T> call) where T : unmanaged =>
        Execute(call, (BlockMask<KeepAll>?)null, default(IdentityScore));

    /// <summary>True when this backend computes gradients (<see cref="Backward{T}"/>).</summary>
    public virtual bool SupportsBackward => false;

    /// <summary>
    /// Gradients of a loss L with respect to q, k and v, given dOutput = ∂L/∂output of the forward call with the same
    /// options, its saved output and LSE. dQ, dK, dV are overwritten (not accumulated into). With <paramref name="dBias"/>
    /// (lengths of options.Bias) also ∂L/∂bias, summed over the dimensions the bias broadcasts over.
    /// </summary>
    /// <exception cref="ArgumentException">a shape, stride, option or aliasing error; the message says which.</exception>
    /// <exception cref="NotSupportedException">this backend has no backward pass.</exception>
    public void Backward<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, ReadOnlyTensorSpan<T> output,
        ReadOnlyTensorSpan<float> lse, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dQ, TensorSpan<T> dK, TensorSpan<T> dV,
        scoped in AttentionOptions options = default, TensorSpan<float> dBias = default) where T : unmanaged =>
        BackwardFlex(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias, (BlockMask<KeepAll>?)null, default(IdentityScore));

    /// <summary>
    /// Computes a validated backward call into dQ, dK, dV (and dBias when asked), with the same conventions as
    /// <see cref="Execute{T, TMask, TScore}"/>; called only when <see cref="SupportsBackward"/> is true.
    /// </summary>
    protected internal virtual void ExecuteBackward<T, TMask, TScore>(scoped in AttentionBackwardCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        throw new NotSupportedException($"Backend {Name} has no backward pass.");

    internal void BackwardFlex<T, TMask, TScore>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, ReadOnlyTensorSpan<T> output,
        ReadOnlyTensorSpan<float> lse, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dQ, TensorSpan<T> dK, TensorSpan<T> dV,
        scoped in AttentionOptions options, TensorSpan<float> dBias, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        ThrowIfCannotRun(backward: true, UsesFunctors(blockMask, scoreMod));
        var call = AttentionValidator.ValidateBackward(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias);
        AttentionValidator.ValidateFunctors(blockMask, scoreMod, call.Forward.Shape);
        ThrowIfRefused(call.Forward);
        ExecuteBackward(call, blockMask, scoreMod);
    }

    /// <summary>True when this backend runs block masks and mask/score functors (<see cref="FlexAttention"/>).</summary>
    public virtual bool SupportsFunctors => false;

    internal void ForwardFlex<T, TMask, TScore>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        ThrowIfCannotRun(backward: false, UsesFunctors(blockMask, scoreMod));
        var call = AttentionValidator.Validate(q, k, v, output, options);
        AttentionValidator.ValidateFunctors(blockMask, scoreMod, call.Shape);
        ThrowIfRefused(call);
        Execute(call, blockMask, scoreMod);
    }

    private static bool UsesFunctors<TMask, TScore>(BlockMask<TMask>? blockMask, TScore scoreMod)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod =>
        blockMask is not null || typeof(TScore) != typeof(IdentityScore);

    /// <summary>The one guard of every entry point, before validation: the machine, then the direction and functors.</summary>
    private void ThrowIfCannotRun(bool backward, bool functors)
    {
        if (UnavailableReason is { } unavailable)
            throw new InvalidOperationException($"Backend {Name} is not available: {unavailable}");
        if (backward && !SupportsBackward)
            throw new NotSupportedException($"Backend {Name} has no backward pass.");
        if (functors && !SupportsFunctors)
            throw new NotSupportedException($"Backend {Name} does not run block masks or mask/score functors.");
    }

    /// <summary>After validation: what this backend cannot honour in the call (an option, dropout).</summary>
    private void ThrowIfRefused<T>(scoped in AttentionCall<T> call) where T : unmanaged
    {
        if (Refusal(call) is { } reason)
            throw new NotSupportedException($"Backend {Name} cannot serve this call: {reason}");
    }

    /// <summary>
    /// Why a backend that copies q, k, v and the output (and the weights, when asked for) into dense host arrays before
    /// uploading them cannot take a call: a tensor with more elements than one array holds. Null when it can.
    /// </summary>
    internal static string? DenseCopyLimit(AttentionShape shape, int rowWidth, bool weights)
    {
        long width = Math.Max(rowWidth, Math.Max(shape.HeadDim, shape.ValueDim));
        (string Name, long Elements)[] copies =
        [
            ("q", (long)shape.Batch * shape.QueryHeads * shape.QueryLength * width),
            ("k and v", (long)shape.Batch * shape.KvHeads * shape.KeyLength * width),
            ("weights", weights ? (long)shape.Batch * shape.QueryHeads * shape.QueryLength * shape.KeyLength : 0),
        ];
        foreach (var (name, elements) in copies)
            if (elements > Array.MaxLength)
                return $"{name} would be copied into {elements} dense elements, more than one array holds ({Array.MaxLength}); use the Cpu backend, which reads the caller's memory in place";
        return null;
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}
