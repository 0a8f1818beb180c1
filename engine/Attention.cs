using System.Numerics.Tensors;

namespace AttentionEngine;

/// <summary>
/// Fused scaled-dot-product attention: softmax(scale · Q Kᵀ + bias, masked) · V.
/// Tensors are in logical order [batch, heads, seq, headDim] with any strides, over any memory.
/// </summary>
public static class Attention
{
    // Most preferred first: the automatic choice takes the first that is available and can serve the call. Backends
    // of other packages (IlGpu) register between the built-in CPU ones and Cuda: IlGpu falls back to ILGPU's CPU
    // simulator on a machine without a GPU, which only Using(Backend.IlGpu) asks for, and Cuda is last until its kernel
    // has been verified on a GPU (it has only been compile-checked). Replaced whole on registration, never mutated, so
    // readers need no lock.
    private static volatile AttentionBackend[] Preference = [CpuBackend.Default, ReferenceBackend.Instance, CudaBackend.Default];
    private static readonly object RegistrationGate = new();

    /// <summary>The assembly-qualified type whose static constructor registers the IlGpu package's backend.</summary>
    private const string IlGpuBackendType = "AttentionEngine.IlGpuBackend, AttentionEngine.IlGpu";

    static Attention()
    {
        // The IlGpu backend lives in its own package (it brings ILGPU). When the application references it, its assembly
        // is here to load and its backend joins the list; otherwise (and under NativeAOT, where ILGPU cannot run) the
        // lookup finds nothing and the core goes on without it.
        if (Type.GetType(IlGpuBackendType, throwOnError: false) is { } ilGpu)
            System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(ilGpu.TypeHandle);
    }

    /// <summary>
    /// Every backend of this build, available or not, in the automatic choice's order: Cpu, Reference, the backends of
    /// referenced packages (IlGpu, from AttentionEngine.IlGpu), Cuda.
    /// </summary>
    public static IReadOnlyList<AttentionBackend> Backends => Preference;

    /// <summary>A specific built-in backend (custom ones are found by name: <see cref="Using(string)"/>).</summary>
    public static AttentionBackend Using(Backend backend)
    {
        if (backend == Backend.Custom)
            throw new ArgumentOutOfRangeException(nameof(backend), backend, "Custom backends are found by name: Attention.Using(string name).");
        return Array.Find(Preference, b => b.Kind == backend)
            ?? throw new ArgumentOutOfRangeException(nameof(backend), backend,
                $"Unknown backend; this build has {string.Join(", ", Preference.Select(b => b.Kind))}." +
                (backend == Backend.IlGpu ? " The IlGpu backend comes with the AttentionEngine.IlGpu package: reference it." : ""));
    }

    /// <summary>A backend by its <see cref="AttentionBackend.Name"/> (case-insensitive): built-in or registered.</summary>
    public static AttentionBackend Using(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return Array.Find(Preference, b => b.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"No backend is named '{name}'; this process has {string.Join(", ", Preference.Select(b => b.Name))}.", nameof(name));
    }

    /// <summary>
    /// Adds a backend (your own <see cref="AttentionBackend"/> subclass, or another package's) to <see cref="Backends"/>
    /// and the automatic choice, after Cpu, Reference and earlier registrations and before Cuda. The automatic choice
    /// takes the first backend that is available and can serve a call, so a registered one serves what those before it
    /// cannot; ask for it by name with <see cref="Using(string)"/>. Registering the same instance again does nothing.
    /// </summary>
    /// <exception cref="ArgumentException">another backend already has this one's name.</exception>
    public static void Register(AttentionBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        lock (RegistrationGate)
        {
            var current = Preference;
            if (Array.IndexOf(current, backend) >= 0) return;
            if (Array.Find(current, b => b.Name.Equals(backend.Name, StringComparison.OrdinalIgnoreCase)) is { } taken)
                throw new ArgumentException($"A backend named '{taken.Name}' is already registered ({taken.GetType().FullName}); give this one another Name.", nameof(backend));
            int cuda = Array.IndexOf(current, CudaBackend.Default);
            Preference = [.. current[..cuda], backend, .. current[cuda..]];
        }
    }

    /// <summary>Removes a registered backend; false when it was not registered. Built-in backends cannot be removed.</summary>
    /// <exception cref="ArgumentException">a built-in backend (Cpu, Reference, Cuda).</exception>
    public static bool Unregister(AttentionBackend backend)
    {
        ArgumentNullException.ThrowIfNull(backend);
        if (backend == CpuBackend.Default || backend == ReferenceBackend.Instance || backend == CudaBackend.Default)
            throw new ArgumentException($"{backend.Name} is built in and cannot be unregistered.", nameof(backend));
        lock (RegistrationGate)
        {
            var current = Preference;
            if (Array.IndexOf(current, backend) < 0) return false;
            Preference = [.. current.Where(b => b != backend)];
            return true;
        }
    }

    /// <summary>
    /// Computes attention with the best backend that is available and can serve the call.
    /// </summary>
    /// <param name="q">queries [batch, queryHeads, Lq, headDim]</param>
    /// <param name="k">keys [batch, kvHeads, Lk, headDim]; queryHeads must be a multiple of kvHeads</param>
    /// <param name="v">values [batch, kvHeads, Lk, valueDim]</param>
    /// <param name="output">destination [batch, queryHeads, Lq, valueDim]; must not overlap any input</param>
    /// <param name="options">scale, masks, and optional LSE / weights destinations</param>
    /// <exception cref="ArgumentException">an invalid shape, stride, option or aliasing; the message names it.</exception>
    /// <exception cref="NotSupportedException">no backend can serve the call; the message gives each one's reason.</exception>
    public static void Forward<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, TensorSpan<T> output,
        scoped in AttentionOptions options = default) where T : unmanaged
    {
        var call = AttentionValidator.Validate(q, k, v, output, options);
        Serve(call);
    }

    /// <summary>
    /// Computes attention over int8 keys and values with per-token scales (an int8 KV cache: a quarter of fp32's
    /// bytes), with the best backend that reads them (<see cref="AttentionBackend.SupportsQuantizedKeyValues"/>: the
    /// Cpu backend, and the Reference as the oracle). The result is attention of the dequantised keys and values,
    /// <c>k[b, h, j, c] = k.Values[b, h, j, c] · k.Scales[b, h, j]</c>, with every option of a float call.
    /// </summary>
    /// <param name="q">queries [batch, queryHeads, Lq, headDim]</param>
    /// <param name="k">int8 keys [batch, kvHeads, Lk, headDim] and their scales [batch, kvHeads, Lk]</param>
    /// <param name="v">int8 values [batch, kvHeads, Lk, valueDim] and their scales [batch, kvHeads, Lk]</param>
    /// <param name="output">destination [batch, queryHeads, Lq, valueDim]; must not overlap any input</param>
    /// <param name="options">scale, masks, and optional LSE / weights destinations</param>
    /// <exception cref="ArgumentException">an invalid shape, stride, scale, option or aliasing; the message names it.</exception>
    /// <exception cref="NotSupportedException">no backend can serve the call; the message gives each one's reason.</exception>
    public static void Forward<T>(
        ReadOnlyTensorSpan<T> q, QuantizedTensorSpan k, QuantizedTensorSpan v, TensorSpan<T> output,
        scoped in AttentionOptions options = default) where T : unmanaged
    {
        var call = AttentionValidator.ValidateQuantized(q, k, v, output, options);
        Serve(call);
    }

    /// <summary>The first preferred backend that can take a validated call runs it.</summary>
    private static void Serve<T>(scoped in AttentionCall<T> call) where T : unmanaged
    {
        foreach (var backend in Preference)
        {
            if ((backend.UnavailableReason ?? backend.Refusal(call)) is not null) continue;
            backend.ExecutePlain(call);
            return;
        }
        // Reasons are gathered only on failure: a served call allocates nothing.
        var reasons = new List<string>();
        foreach (var backend in Preference) reasons.Add($"{backend.Name}: {backend.UnavailableReason ?? backend.Refusal(call)}");
        throw new NotSupportedException($"No backend can serve this call. {string.Join("; ", reasons)}");
    }

    /// <summary>
    /// Computes attention on tensors already on the GPU with the CUDA backend, the one backend that runs on them; see
    /// <see cref="CudaBackend.Forward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, DeviceTensor{float}?, Bindings.Cuda.CudaStream?)"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">the CUDA backend is not available here (the message says why).</exception>
    public static void Forward<T>(
        DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
        scoped in AttentionOptions options = default, DeviceTensor<float>? lse = null) where T : unmanaged =>
        CudaBackend.Default.Forward(q, k, v, output, options, lse);

    /// <summary>
    /// Gradients with respect to q, k and v on tensors already on the GPU with the CUDA backend, the one backend that runs
    /// on them; see <see cref="CudaBackend.Backward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{float}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, TensorSpan{float}, Bindings.Cuda.CudaStream?)"/>.
    /// </summary>
    /// <exception cref="InvalidOperationException">the CUDA backend is not available here (the message says why).</exception>
    public static void Backward<T>(
        DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output, DeviceTensor<float> lse, DeviceTensor<T> dOutput,
        DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, scoped in AttentionOptions options = default, TensorSpan<float> dBias = default)
        where T : unmanaged =>
        CudaBackend.Default.Backward(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias);

    /// <summary>
    /// Gradients of a loss with respect to q, k and v with the best backend that has a backward pass (see
    /// <see cref="AttentionBackend.Backward{T}"/>): dOutput is ∂L/∂output of <see cref="Forward{T}(System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.ReadOnlyTensorSpan{T}, System.Numerics.Tensors.TensorSpan{T}, in AttentionOptions)"/> with the same
    /// options, output and lse are what that forward call produced.
    /// </summary>
    public static void Backward<T>(
        ReadOnlyTensorSpan<T> q, ReadOnlyTensorSpan<T> k, ReadOnlyTensorSpan<T> v, ReadOnlyTensorSpan<T> output,
        ReadOnlyTensorSpan<float> lse, ReadOnlyTensorSpan<T> dOutput, TensorSpan<T> dQ, TensorSpan<T> dK, TensorSpan<T> dV,
        scoped in AttentionOptions options = default, TensorSpan<float> dBias = default) where T : unmanaged
    {
        foreach (var backend in Preference)
        {
            if (!backend.SupportsBackward || !backend.IsAvailable || (options.Dropout.IsActive && !backend.SupportsDropout)) continue;
            backend.Backward(q, k, v, output, lse, dOutput, dQ, dK, dV, options, dBias);
            return;
        }
        throw new NotSupportedException(options.Dropout.IsActive
            ? "No available backend has a backward pass with dropout."
            : "No available backend has a backward pass.");
    }
}
