using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.IlGpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttentionEngine;

/// <summary>
/// Attention on any ILGPU accelerator (CUDA, OpenCL, or ILGPU's CPU accelerator), written in C#: the same
/// <see cref="IMaskMod"/>/<see cref="IScoreMod"/> structs as the CPU kernel run inside the GPU kernel as generic type
/// arguments. Host spans are copied to the device (packed dense, so any strides work) and the results copied back.
/// The accelerator opens on first use; <see cref="Dispose"/> releases it and every kernel compiled on it.
/// </summary>
public sealed class IlGpuBackend : AttentionBackend, IDisposable
{
    /// <summary>Largest head dimension (D and Dv) the kernel takes.</summary>
    public const int MaxHeadDim = 256;

    private readonly Lazy<(IlGpuSession? Session, string? Error)> _session;
    private volatile bool _disposed;

    /// <summary>CUDA if present, else OpenCL, else the CPU accelerator. Opened on first use.</summary>
    public static IlGpuBackend Default { get; } = new(IlGpuDeviceKind.Auto);

    // Referencing this package is what puts the backend into Attention's automatic choice: the core looks this type up
    // by name when it starts, and this constructor registers it (also when the application touches this type first).
    static IlGpuBackend() => Attention.Register(Default);

    /// <summary>A backend on the given ILGPU accelerator kind, opened on first use; dispose it to release the accelerator.</summary>
    public IlGpuBackend(IlGpuDeviceKind device)
    {
        if (!Enum.IsDefined(device)) throw new ArgumentOutOfRangeException(nameof(device), device, "Unknown ILGPU device kind.");
        Device = device;
        _session = new(() =>
        {
            // ILGPU compiles kernels from IL at run time (Reflection.Emit): under NativeAOT it cannot, and its own failure
            // is an opaque type-initializer error. Say so instead.
            if (!RuntimeFeature.IsDynamicCodeSupported)
                return (null, "ILGPU compiles kernels at run time, which this process (NativeAOT, no dynamic code) cannot do; use the Cpu or Cuda backend");
            try { return (IlGpuSession.Open(device), null); }
            catch (Exception e) when (e is InvalidOperationException or NotSupportedException or DllNotFoundException or TypeInitializationException)
            {
                return (null, e.Message);
            }
        });
    }

    /// <summary>The kind asked for (<see cref="IlGpuDeviceKind.Auto"/> resolves when the accelerator opens).</summary>
    public IlGpuDeviceKind Device { get; }

    /// <inheritdoc/>
    public override Backend Kind => Backend.IlGpu;

    /// <inheritdoc/>
    public override string Name => Device == IlGpuDeviceKind.Auto ? "IlGpu" : $"IlGpu-{Device}";

    /// <inheritdoc/>
    public override string? UnavailableReason => _session.Value.Error;

    /// <summary>The accelerator calls run on ("Cuda NVIDIA H100", "CPU CPUAccelerator"), once opened.</summary>
    public string? Accelerator => _session.Value.Session?.ToString();

    /// <summary>True when the accelerator is ILGPU's CPU simulator (correct, but no measure of GPU speed).</summary>
    public bool IsSimulator => _session.Value.Session?.Kind == IlGpuDeviceKind.Cpu;

    /// <inheritdoc/>
    public override bool SupportsFunctors => true;

    /// <inheritdoc/>
    public override bool SupportsDropout => true;

    /// <inheritdoc/>
    public override string? CannotServe<T>(scoped in AttentionCall<T> call)
    {
        var shape = call.Shape;
        if (shape.HeadDim > MaxHeadDim || shape.ValueDim > MaxHeadDim)
            return $"head dimensions up to {MaxHeadDim} (q has D = {shape.HeadDim}, v has Dv = {shape.ValueDim})";
        return DenseCopyLimit(shape, 0, call.ReturnWeights);
    }

    /// <inheritdoc/>
    protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
    {
        if (RuntimeHelpers.IsReferenceOrContainsReferences<TScore>())
            throw new NotSupportedException(
                $"Backend {Name} cannot run score functor {typeof(TScore).Name}: it holds managed references (arrays), and GPU kernels take " +
                "only unmanaged structs. Write it with value fields only (e.g. TanhSoftcapScore), or use the Cpu backend.");
        Run(call, blockMask, scoreMod);
    }

    private void Run<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        where T : unmanaged where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var session = _session.Value.Session ?? throw new InvalidOperationException($"Backend {Name} is not available: {_session.Value.Error}");
        if (typeof(T) == typeof(float)) IlGpuLauncher<T, float, FloatCodec>.Run(session, call, blockMask, scoreMod);
        else if (typeof(T) == typeof(System.Half)) IlGpuLauncher<T, ushort, HalfCodec>.Run(session, call, blockMask, scoreMod);
        else if (typeof(T) == typeof(BFloat16)) IlGpuLauncher<T, ushort, BFloat16Codec>.Run(session, call, blockMask, scoreMod);
        else ElementTypes.ThrowIfUnsupported<T>();
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _disposed = true;
        if (_session.IsValueCreated) _session.Value.Session?.Dispose();
    }
}
