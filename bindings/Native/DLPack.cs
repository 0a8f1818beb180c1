using System.Runtime.InteropServices;

namespace AttentionEngine.Native;

// DLPack 1.x's ABI as attention_engine.h declares it (the header is the source; these mirror it field for field).

/// <summary>DLDeviceType: where a tensor's memory lives.</summary>
internal enum DLDeviceType
{
    Cpu = 1,
    Cuda = 2,
    CudaHost = 3,
    OpenCL = 4,
    Vulkan = 7,
    Metal = 8,
    Vpi = 9,
    Rocm = 10,
    RocmHost = 11,
    ExtDev = 12,
    CudaManaged = 13,
    OneApi = 14,
    WebGpu = 15,
    Hexagon = 16,
    Maia = 17,
}

/// <summary>DLDataTypeCode.</summary>
internal enum DLDataTypeCode : byte
{
    Int = 0,
    UInt = 1,
    Float = 2,
    OpaqueHandle = 3,
    Bfloat = 4,
    Complex = 5,
    Bool = 6,
}

[StructLayout(LayoutKind.Sequential)]
internal struct DLDevice
{
    public DLDeviceType DeviceType;
    public int DeviceId;
}

[StructLayout(LayoutKind.Sequential)]
internal struct DLDataType
{
    public DLDataTypeCode Code;
    public byte Bits;
    public ushort Lanes;

    public override readonly string ToString() => Code switch
    {
        DLDataTypeCode.Int => $"int{Bits}",
        DLDataTypeCode.UInt => $"uint{Bits}",
        DLDataTypeCode.Float => $"float{Bits}",
        DLDataTypeCode.Bfloat => $"bfloat{Bits}",
        DLDataTypeCode.Complex => $"complex{Bits}",
        DLDataTypeCode.Bool => $"bool{Bits}",
        DLDataTypeCode.OpaqueHandle => "opaque handle",
        _ => $"code {(int)Code} bits {Bits}",
    } + (Lanes == 1 ? "" : $"x{Lanes}");
}

[StructLayout(LayoutKind.Sequential)]
internal unsafe struct DLTensor
{
    public void* Data;
    public DLDevice Device;
    public int NDim;
    public DLDataType DType;
    public long* Shape;
    public long* Strides;
    public ulong ByteOffset;
}
