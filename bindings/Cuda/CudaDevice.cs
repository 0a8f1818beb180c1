using System.Text;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>
/// One GPU with its primary context made current on the calling thread. Dispose releases the context reference.
/// </summary>
public sealed unsafe class CudaDevice : IDisposable
{
    private readonly int _device;
    private bool _released;

    private CudaDevice(int device, int ordinal, nint context)
    {
        _device = device;
        Ordinal = ordinal;
        Context = context;
    }

    /// <summary>The retained primary context (CUcontext) of the device, for driver calls made outside these bindings.</summary>
    public nint Context { get; }

    /// <summary>The device's index among this machine's GPUs (what <see cref="Open"/> was given).</summary>
    public int Ordinal { get; }

    /// <summary>True once disposed: the context reference is released and nothing may run through this object.</summary>
    public bool IsDisposed => _released;

    /// <exception cref="InvalidOperationException">CUDA is unavailable (the message gives <see cref="CudaDriver.UnavailableReason"/>).</exception>
    public static CudaDevice Open(int ordinal = 0)
    {
        if (CudaDriver.UnavailableReason is { } reason) throw new InvalidOperationException($"CUDA cannot be used: {reason}.");
        if (ordinal < 0 || ordinal >= CudaDriver.DeviceCount)
            throw new ArgumentOutOfRangeException(nameof(ordinal), ordinal, $"device {ordinal} does not exist; this machine has {CudaDriver.DeviceCount}.");
        CudaException.Check(CudaDriverNative.cuDeviceGet(out int device, ordinal), "cuDeviceGet");
        CudaException.Check(CudaDriverNative.cuDevicePrimaryCtxRetain(out nint context, device), "cuDevicePrimaryCtxRetain");
        var opened = new CudaDevice(device, ordinal, context);
        opened.MakeCurrent();
        return opened;
    }

    /// <summary>Binds the context to the calling thread (needed once per thread that launches or copies).</summary>
    /// <exception cref="ObjectDisposedException">this device object was disposed.</exception>
    public void MakeCurrent()
    {
        ObjectDisposedException.ThrowIf(_released, this);
        CudaException.Check(CudaDriverNative.cuCtxSetCurrent(Context), "cuCtxSetCurrent");
    }

    /// <summary>Waits until all work queued in this device's context has finished; a failed kernel surfaces here as a <see cref="CudaException"/>.</summary>
    public void Synchronize() => CudaException.Check(CudaDriverNative.cuCtxSynchronize(), "cuCtxSynchronize");

    /// <summary>The device's marketing name, e.g. "NVIDIA H100 80GB HBM3".</summary>
    public string Name
    {
        get
        {
            var buffer = stackalloc byte[256];
            CudaException.Check(CudaDriverNative.cuDeviceGetName(buffer, 256, _device), "cuDeviceGetName");
            return Encoding.UTF8.GetString(new ReadOnlySpan<byte>(buffer, 256)).TrimEnd('\0');
        }
    }

    /// <summary>One attribute of the device (cuDeviceGetAttribute), e.g. its multiprocessor count.</summary>
    public int Attribute(CudaDeviceAttribute attribute)
    {
        CudaException.Check(CudaDriverNative.cuDeviceGetAttribute(out int value, (int)attribute, _device), $"cuDeviceGetAttribute({attribute})");
        return value;
    }

    /// <summary>The sm_XX architecture name, e.g. "sm_90".</summary>
    public string Architecture => $"sm_{Attribute(CudaDeviceAttribute.ComputeCapabilityMajor)}{Attribute(CudaDeviceAttribute.ComputeCapabilityMinor)}";

    /// <summary>The device's total global memory in bytes.</summary>
    public nuint TotalMemory
    {
        get
        {
            CudaException.Check(CudaDriverNative.cuDeviceTotalMem_v2(out nuint bytes, _device), "cuDeviceTotalMem");
            return bytes;
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_released) return;
        _released = true;
        CudaDriverNative.cuDevicePrimaryCtxRelease_v2(_device);
    }
}
