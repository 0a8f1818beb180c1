using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Native;

/// <summary>
/// ae_forward on kDLCUDA tensors: they are wrapped in place (<see cref="DeviceTensor{T}.FromAddress"/>, no copy, no
/// ownership) and go to the CUDA backend's device-tensor call. The LSE may be on the device or the host; bias and
/// keep-mask come from host memory, as in the managed API.
/// </summary>
internal static unsafe class DeviceCalls
{
    private static readonly Dictionary<int, CudaDevice> Devices = [];
    private static readonly Dictionary<int, CudaBackend> Backends = [];

    public static void Forward<T>(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, in CallOptions options) where T : unmanaged
    {
        if (options.Backend is not (NativeBackend.Auto or NativeBackend.Cuda))
            throw new NativeCallException(NativeStatus.UnsupportedDevice,
                $"q is on {DLTensorViews.DeviceName(q->Device)}, which options->backend ({options.Backend}) cannot read; use AE_BACKEND_AUTO or AE_BACKEND_CUDA.");
        int ordinal = q->Device.DeviceId;
        if (ordinal < 0)
            throw new NativeCallException(NativeStatus.InvalidArgument, $"q.device.device_id is {ordinal}; a CUDA device's index is 0 or more.");
        if (CudaDriver.UnavailableReason is { } noDriver)
            throw new NativeCallException(NativeStatus.BackendUnavailable,
                $"q is on {DLTensorViews.DeviceName(q->Device)}, but the CUDA backend is not available here: {noDriver}");
        if (ordinal >= CudaDriver.DeviceCount)
            throw new NativeCallException(NativeStatus.InvalidArgument,
                $"q is on {DLTensorViews.DeviceName(q->Device)}, but this machine has {CudaDriver.DeviceCount} CUDA device(s).");
        var backend = BackendFor(ordinal);
        if (backend.UnavailableReason is { } reason)
            throw new NativeCallException(NativeStatus.BackendUnavailable,
                $"q is on {DLTensorViews.DeviceName(q->Device)}, but the CUDA backend is not available there: {reason}");
        foreach (var (tensor, name) in new[] { ((nint)k, "k"), ((nint)v, "v"), ((nint)output, "output") })
            RequireSameDevice((DLTensor*)tensor, name, q->Device);
        if (options.Weights is not null)
            throw new NotSupportedException("options->weights: the CUDA kernel does not return attention weights; use CPU tensors to inspect them.");
        HostCalls.CheckMaskTypes(options);
        if (options.Bias is not null) DLTensorViews.RequireHost(options.Bias, "options->bias", "the CUDA backend reads the bias from host memory");
        if (options.KeepMask is not null) DLTensorViews.RequireHost(options.KeepMask, "options->keep_mask", "the CUDA backend reads the keep-mask from host memory");

        var device = DeviceFor(ordinal);
        Span<nint> lengths = stackalloc nint[DLTensorViews.MaxRank], strides = stackalloc nint[DLTensorViews.MaxRank];
        Span<nint> bl = stackalloc nint[DLTensorViews.MaxRank], bs = stackalloc nint[DLTensorViews.MaxRank];
        Span<nint> ml = stackalloc nint[DLTensorViews.MaxRank], ms = stackalloc nint[DLTensorViews.MaxRank];
        Span<nint> ll = stackalloc nint[DLTensorViews.MaxRank], ls = stackalloc nint[DLTensorViews.MaxRank];
        using var qd = Wrap<T>(device, q, "q", lengths, strides);
        using var kd = Wrap<T>(device, k, "k", lengths, strides);
        using var vd = Wrap<T>(device, v, "v", lengths, strides);
        using var od = Wrap<T>(device, output, "output", lengths, strides);
        DeviceTensor<float>? lseOnDevice = null;
        var managed = new AttentionOptions
        {
            Scale = options.Scale,
            Mask = options.Mask,
            MaxDegreeOfParallelism = options.MaxThreads,
            Bias = DLTensorViews.Optional<float>(options.Bias, "options->bias", bl, bs),
            KeepMask = DLTensorViews.Optional<bool>(options.KeepMask, "options->keep_mask", ml, ms),
            Dropout = options.Dropout,
        };
        if (options.Lse is not null)
        {
            DLTensorViews.RequireDtype(options.Lse, "options->lse", DLDataTypeCode.Float, 32, "float32");
            if (DLTensorViews.IsHost(options.Lse))
                managed = managed with { Lse = DLTensorViews.Span<float>(options.Lse, "options->lse", ll, ls) };
            else
            {
                RequireSameDevice(options.Lse, "options->lse", q->Device);
                lseOnDevice = Wrap<float>(device, options.Lse, "options->lse", lengths, strides);
            }
        }
        using (lseOnDevice)
            backend.Forward(qd, kd, vd, od, managed, lseOnDevice);
    }

    private static void RequireSameDevice(DLTensor* tensor, string name, DLDevice expected)
    {
        var device = DLTensorViews.Require(tensor, name)->Device;
        if (device.DeviceType != expected.DeviceType || device.DeviceId != expected.DeviceId)
            throw new NativeCallException(NativeStatus.UnsupportedDevice,
                $"{name} is on {DLTensorViews.DeviceName(device)} but q is on {DLTensorViews.DeviceName(expected)}; a CUDA call takes q, k, v, output (and a device LSE) from one GPU.");
    }

    private static DeviceTensor<T> Wrap<T>(CudaDevice device, DLTensor* tensor, string name, Span<nint> lengths, Span<nint> strides) where T : unmanaged
    {
        int rank = DLTensorViews.Layout(tensor, name, lengths, strides, out _);
        if (tensor->Data is null)
            throw new NativeCallException(NativeStatus.NullPointer, $"{name}.data is NULL.");
        ulong address = (ulong)tensor->Data + tensor->ByteOffset;
        return DeviceTensor<T>.FromAddress(device, address, lengths[..rank], strides[..rank]);
    }

    /// <summary>One CudaDevice per ordinal for the life of the process (it holds the device's primary context).</summary>
    private static CudaDevice DeviceFor(int ordinal)
    {
        lock (Devices)
        {
            if (!Devices.TryGetValue(ordinal, out var device))
                Devices[ordinal] = device = CudaDevice.Open(ordinal);
            return device;
        }
    }

    /// <summary>One backend per ordinal for the life of the process: a tensor on GPU n runs on GPU n, with kernels built for it.</summary>
    private static CudaBackend BackendFor(int ordinal)
    {
        lock (Backends)
        {
            if (!Backends.TryGetValue(ordinal, out var backend))
                Backends[ordinal] = backend = ordinal == 0 ? CudaBackend.Default : new CudaBackend(ordinal);
            return backend;
        }
    }
}
