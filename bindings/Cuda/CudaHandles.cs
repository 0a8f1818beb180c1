using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>A driver object released on every path; each kind says how in its ReleaseHandle.</summary>
public abstract class CudaHandle : SafeHandle
{
    /// <summary>Creates an invalid (zero) handle that the derived kind's factory fills in; released by ReleaseHandle.</summary>
    protected CudaHandle() : base(0, ownsHandle: true) { }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <summary>The raw driver handle, for launches and copies while this object is alive.</summary>
    public nint Value => handle;

    internal void Own(nint value) => SetHandle(value);
}

/// <summary>A CUDA stream (work on it runs in order; different streams may overlap).</summary>
public sealed class CudaStream : CudaHandle
{
    /// <summary>Creates a stream on the current context.</summary>
    public static CudaStream Create()
    {
        var stream = new CudaStream();
        CudaException.Check(CudaDriverNative.cuStreamCreate(out nint raw, 0), "cuStreamCreate");
        stream.Own(raw);
        return stream;
    }

    /// <summary>Waits until all work queued on this stream has finished.</summary>
    public void Synchronize() => CudaException.Check(CudaDriverNative.cuStreamSynchronize(Value), "cuStreamSynchronize");

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => CudaDriverNative.cuStreamDestroy_v2(handle) == 0;
}

/// <summary>A CUDA event, for timing work on a stream.</summary>
public sealed class CudaEvent : CudaHandle
{
    /// <summary>Creates an event (with timing) on the current context.</summary>
    public static CudaEvent Create()
    {
        var created = new CudaEvent();
        CudaException.Check(CudaDriverNative.cuEventCreate(out nint raw, 0), "cuEventCreate");
        created.Own(raw);
        return created;
    }

    /// <summary>Records the event at the current end of <paramref name="stream"/>'s queue.</summary>
    public void Record(CudaStream stream) => CudaException.Check(CudaDriverNative.cuEventRecord(Value, stream.Value), "cuEventRecord");

    /// <summary>Waits until the work recorded before this event has finished.</summary>
    public void Synchronize() => CudaException.Check(CudaDriverNative.cuEventSynchronize(Value), "cuEventSynchronize");

    /// <summary>Milliseconds from <paramref name="start"/> to this event (both recorded and completed).</summary>
    public float MillisecondsSince(CudaEvent start)
    {
        CudaException.Check(CudaDriverNative.cuEventElapsedTime(out float ms, start.Value, Value), "cuEventElapsedTime");
        return ms;
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => CudaDriverNative.cuEventDestroy_v2(handle) == 0;
}

/// <summary>A loaded module (PTX, CUBIN or fatbin image) and lookup of its kernels.</summary>
public sealed unsafe class CudaModule : CudaHandle
{
    /// <summary>Loads a PTX, CUBIN or fatbin image into the current context (the driver JIT-compiles PTX for the device).</summary>
    public static CudaModule Load(ReadOnlySpan<byte> image)
    {
        // PTX must be NUL-terminated text; CUBIN and fatbin are self-delimiting, and the extra byte is harmless.
        var terminated = new byte[image.Length + 1];
        image.CopyTo(terminated);
        var module = new CudaModule();
        nint raw;
        fixed (byte* data = terminated)
            CudaException.Check(CudaDriverNative.cuModuleLoadData(out raw, data), "cuModuleLoadData");
        module.Own(raw);
        return module;
    }

    /// <summary>A kernel of this module by its (extern "C") name.</summary>
    public CudaFunction Function(string name)
    {
        CudaException.Check(CudaDriverNative.cuModuleGetFunction(out nint function, Value, name), $"cuModuleGetFunction({name})");
        return new CudaFunction(function, name, this);
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => CudaDriverNative.cuModuleUnload(handle) == 0;
}
