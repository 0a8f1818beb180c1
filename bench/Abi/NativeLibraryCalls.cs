using System.Runtime.InteropServices;

namespace AttentionEngine.Bench.Abi;

/// <summary>
/// The published C ABI library loaded into this process, and the two structs a forward call needs, laid out as
/// bindings/include/attention_engine.h declares them (the header is the source; the library checks the sizes).
/// </summary>
internal sealed unsafe class NativeLibraryCalls
{
    [StructLayout(LayoutKind.Sequential)]
    public struct DLTensor
    {
        public void* Data;
        public int DeviceType, DeviceId;
        public int NDim;
        public byte Code, Bits;
        public ushort Lanes;
        public long* Shape;
        public long* Strides;
        public ulong ByteOffset;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Options
    {
        public uint StructSize, Mask;
        public int Alignment, HasScale;
        public float Scale;
        public int MaxThreads;
        public long WindowLeft, WindowRight;
        public DLTensor* Bias, KeepMask, Lse, Weights;
        public int Backend, Reserved;
    }

    private readonly delegate* unmanaged<DLTensor*, DLTensor*, DLTensor*, DLTensor*, Options*, int> _forward;
    private readonly delegate* unmanaged<byte*> _lastError;

    public NativeLibraryCalls(string path)
    {
        nint handle = NativeLibrary.Load(path);
        Path = path;
        var check = (delegate* unmanaged<uint, nuint, nuint, int>)NativeLibrary.GetExport(handle, "ae_check_abi");
        _forward = (delegate* unmanaged<DLTensor*, DLTensor*, DLTensor*, DLTensor*, Options*, int>)NativeLibrary.GetExport(handle, "ae_forward");
        _lastError = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(handle, "ae_last_error");
        var version = (delegate* unmanaged<byte*>)NativeLibrary.GetExport(handle, "ae_version");
        Version = Marshal.PtrToStringUTF8((nint)version())!;
        if (check(1, (nuint)sizeof(Options), (nuint)sizeof(DLTensor)) != 0)
            throw new InvalidOperationException($"{path}: {Marshal.PtrToStringUTF8((nint)_lastError())}");
    }

    public string Path { get; }
    public string Version { get; }

    /// <summary>ae_forward; a failure throws with the library's status and message.</summary>
    public void Forward(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, Options* options)
    {
        int status = _forward(q, k, v, output, options);
        if (status != 0) throw new InvalidOperationException($"ae_forward returned {status}: {Marshal.PtrToStringUTF8((nint)_lastError())}");
    }

    /// <summary>A float32 DLTensor over a NativeTensor's memory (its lengths and strides copied into the given arrays).</summary>
    public static DLTensor Describe(NativeTensor<float> tensor, long* shape, long* strides)
    {
        var span = tensor.AsTensorSpan();
        for (int d = 0; d < span.Rank; d++) { shape[d] = span.Lengths[d]; strides[d] = span.Strides[d]; }
        return new DLTensor
        {
            Data = tensor.Pointer,
            DeviceType = 1, // kDLCPU
            NDim = span.Rank,
            Code = 2, Bits = 32, Lanes = 1, // float32
            Shape = shape,
            Strides = strides,
        };
    }
}
