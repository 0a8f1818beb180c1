using System.Runtime.InteropServices;

namespace AttentionEngine.Native;

/// <summary>
/// ae_options of attention_engine.h, field for field: 80 bytes as ABI version 1 first shipped it, 112 with the dropout
/// fields appended (same ABI version: a caller's struct_size says which fields it has, and the missing ones read as 0).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct NativeOptions
{
    /// <summary>The first ae_options (no dropout fields): callers compiled against that header still work.</summary>
    public const int FirstSize = 80;

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
    // Appended after the first 80 bytes.
    public double Dropout;
    public ulong DropoutSeed;
    public ulong DropoutOffset;
    public int DropoutInWeights;
    public int Reserved2;

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
