using System.Runtime.InteropServices;

namespace AttentionEngine.Native;

/// <summary>ae_options of attention_engine.h, field for field (80 bytes in ABI version 1).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativeOptions
{
    public uint StructSize;
    public uint Mask;
    public int Alignment;
    public int HasScale;
    public float Scale;
    public int MaxThreads;
    public long WindowLeft;
    public long WindowRight;
    public DLTensor* Bias;
    public DLTensor* KeepMask;
    public DLTensor* Lse;
    public DLTensor* Weights;
    public int Backend;
    public int Reserved;

    public const uint MaskCausal = 1, MaskWindow = 2;
}

/// <summary>ae_backend.</summary>
internal enum NativeBackend
{
    Auto = 0,
    Cpu = 1,
    Reference = 2,
    Cuda = 3,
}
