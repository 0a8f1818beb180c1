using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

/// <summary>
/// Addresses one call's device tensors for the flash kernel: in place where the layout allows it (rows of exactly the
/// kernel's head dimension, contiguous along D, 16-byte aligned address and strides, as cp.async and ldmatrix need),
/// otherwise through a packed, zero-padded copy made on the device by strided_copy.cu.
/// </summary>
internal sealed class DeviceOperands(CudaKernels kernels, DeviceScratch scratch, CudaStream stream, int headDim, int elementBytes)
{
    private const int Alignment = 16;
    private const int MaxCopyBlocks = 8192;

    /// <summary>Q, K or V: the tensor itself, or a packed copy queued on the stream.</summary>
    public (ulong Address, Strides3 Strides) Input<T>(DeviceTensor<T> tensor) where T : unmanaged
    {
        if (InPlace(tensor)) return (tensor.Address, StridesOf(tensor));
        var (batch, heads, rows, columns) = Dimensions(tensor);
        var (packed, dense) = Padded(batch, heads, rows);
        Copy(tensor.Address, StridesOf(tensor), columns, packed, dense, headDim, batch, heads, rows);
        return (packed, dense);
    }

    /// <summary>The output: the tensor itself, or a padded buffer and the copy that unpacks it after the kernel.</summary>
    public (ulong Address, Strides3 Strides, Action? Unpack) Output<T>(DeviceTensor<T> tensor) where T : unmanaged
    {
        if (InPlace(tensor)) return (tensor.Address, StridesOf(tensor), null);
        var (batch, heads, rows, columns) = Dimensions(tensor);
        var (padded, dense) = Padded(batch, heads, rows);
        ulong target = tensor.Address;
        var strides = StridesOf(tensor);
        return (padded, dense, () => Copy(padded, dense, headDim, target, strides, columns, batch, heads, rows));
    }

    /// <summary>A dense [batch, heads, rows, headDim] scratch buffer: the layout the kernel reads in place.</summary>
    private (ulong Address, Strides3 Strides) Padded(int batch, int heads, int rows) =>
        (scratch.Allocate((long)batch * heads * rows * headDim * elementBytes).Address, CudaBackend.Dense(heads, rows, headDim));

    /// <summary>True when the flash kernel can read or write <paramref name="tensor"/> where it lies.</summary>
    public bool InPlace<T>(DeviceTensor<T> tensor) where T : unmanaged
    {
        var lengths = tensor.Lengths;
        var strides = tensor.Strides;
        if (lengths[3] != headDim || strides[3] != 1 || tensor.Address % Alignment != 0) return false;
        for (int d = 0; d < 3; d++)
            if (lengths[d] > 1 && strides[d] * elementBytes % Alignment != 0) return false;
        return true;
    }

    private static Strides3 StridesOf<T>(DeviceTensor<T> tensor) where T : unmanaged
    {
        var s = tensor.Strides;
        return new(s[0], s[1], s[2]);
    }

    private static (int Batch, int Heads, int Rows, int Columns) Dimensions<T>(DeviceTensor<T> tensor) where T : unmanaged
    {
        var l = tensor.Lengths;
        return ((int)l[0], (int)l[1], (int)l[2], (int)l[3]);
    }

    private unsafe void Copy(ulong source, Strides3 sourceStrides, int sourceColumns, ulong destination, Strides3 destinationStrides,
        int destinationColumns, int batch, int heads, int rows)
    {
        long total = (long)batch * heads * rows * destinationColumns;
        int threads = CudaStridedCopy.ThreadsPerBlock;
        int blocks = (int)Math.Min((total + threads - 1) / threads, MaxCopyBlocks);
        var p = new CopyParams
        {
            Source = source, Destination = destination, SourceStrides = sourceStrides, DestinationStrides = destinationStrides,
            Total = total, Heads = heads, Rows = rows, SourceColumns = sourceColumns, DestinationColumns = destinationColumns, Blocks = blocks,
        };
        void* argument = &p;
        kernels.StridedCopy(elementBytes).Launch(((uint)blocks, 1, 1), ((uint)threads, 1, 1), 0, stream, &argument);
    }
}
