using System.Runtime.InteropServices;

namespace AttentionEngine;

/// <summary>The host mirror of kernels/Cuda/strided_copy.cu's CopyParams, field for field in the same order.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct CopyParams
{
    public ulong Source, Destination;
    public Strides3 SourceStrides, DestinationStrides;
    public long Total;
    public int Heads, Rows, SourceColumns, DestinationColumns, Blocks;
    private int _padding;
}
