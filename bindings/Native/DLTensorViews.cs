using System.Numerics.Tensors;
using System.Runtime.CompilerServices;

namespace AttentionEngine.Native;

/// <summary>
/// Reads a caller's DLTensor into a tensor span over the same memory (no copy) after the checks only the C ABI needs:
/// NULL pointers, rank, element type, device, byte offset, strides. Shapes against each other are the managed
/// validator's job, as in every managed call.
/// </summary>
internal static unsafe class DLTensorViews
{
    /// <summary>Most dimensions a tensor may declare; attention tensors have at most 4, so more is an error anyway.</summary>
    public const int MaxRank = 8;

    /// <summary>The tensor, or NativeCallException(NullPointer) naming it.</summary>
    public static DLTensor* Require(DLTensor* tensor, string name) =>
        tensor is not null ? tensor : throw new NativeCallException(NativeStatus.NullPointer, $"{name} is NULL.");

    /// <summary>True for memory the CPU backends can read and write: kDLCPU and pinned host memory (kDLCUDAHost).</summary>
    public static bool IsHost(DLTensor* tensor) => tensor->Device.DeviceType is DLDeviceType.Cpu or DLDeviceType.CudaHost;

    /// <summary>A host tensor, or NativeCallException(UnsupportedDevice) naming it and the device it is on.</summary>
    public static void RequireHost(DLTensor* tensor, string name, string why)
    {
        if (!IsHost(tensor))
            throw new NativeCallException(NativeStatus.UnsupportedDevice,
                $"{name} is on {DeviceName(tensor->Device)}; {why}.");
    }

    public static string DeviceName(DLDevice device)
    {
        string type = Enum.IsDefined(device.DeviceType) ? $"kDL{device.DeviceType}" : $"device type {(int)device.DeviceType}";
        return $"{type} device {device.DeviceId}";
    }

    /// <summary>The element type's managed counterpart for q/k/v/output-like tensors: float, Half or BFloat16.</summary>
    public static Type ValueType(DLTensor* tensor, string name)
    {
        var dtype = tensor->DType;
        if (dtype.Lanes == 1)
        {
            if (dtype.Code == DLDataTypeCode.Float && dtype.Bits == 32) return typeof(float);
            if (dtype.Code == DLDataTypeCode.Float && dtype.Bits == 16) return typeof(Half);
            if (dtype.Code == DLDataTypeCode.Bfloat && dtype.Bits == 16) return typeof(BFloat16);
        }
        throw new NativeCallException(NativeStatus.UnsupportedDtype,
            $"{name} has dtype {dtype}; expected float32, float16 or bfloat16.");
    }

    /// <summary>Throws UnsupportedDtype unless the tensor holds exactly <paramref name="expected"/>.</summary>
    public static void RequireDtype(DLTensor* tensor, string name, DLDataTypeCode code, byte bits, string expected)
    {
        var dtype = tensor->DType;
        if (dtype.Code != code || dtype.Bits != bits || dtype.Lanes != 1)
            throw new NativeCallException(NativeStatus.UnsupportedDtype, $"{name} has dtype {dtype}; expected {expected}.");
    }

    /// <summary>
    /// Lengths and strides (in elements, NULL strides meaning compact row-major) into the given buffers, and the number
    /// of elements the strides span. Dimensions of length 0 or 1 take stride 0: their stride never addresses memory.
    /// </summary>
    public static int Layout(DLTensor* tensor, string name, Span<nint> lengths, Span<nint> strides, out nint span)
    {
        int rank = tensor->NDim;
        if (rank < 0 || rank > MaxRank)
            throw new ArgumentException($"{name} has ndim {rank}; attention tensors have 1 to 4 dimensions.", name);
        if (rank > 0 && tensor->Shape is null)
            throw new NativeCallException(NativeStatus.NullPointer, $"{name}.shape is NULL (ndim {rank}).");
        bool empty = false;
        for (int d = 0; d < rank; d++)
        {
            long length = tensor->Shape[d];
            if (length < 0)
                throw new ArgumentException($"{name}.shape[{d}] is {length}; lengths must be >= 0.", name);
            lengths[d] = (nint)length;
            empty |= length == 0;
        }
        try
        {
            return Strides(tensor, name, rank, lengths, strides, empty, out span);
        }
        catch (OverflowException)
        {
            throw new ArgumentException($"{name}: shape [{string.Join(", ", lengths[..rank].ToArray())}] addresses more elements than a pointer can.", name);
        }
    }

    /// <summary>The strides (given, or compact row-major) and the number of elements they span; overflow throws.</summary>
    private static int Strides(DLTensor* tensor, string name, int rank, Span<nint> lengths, Span<nint> strides, bool empty, out nint span)
    {
        if (tensor->Strides is null)
        {
            nint stride = 1;
            for (int d = rank - 1; d >= 0; d--)
            {
                strides[d] = lengths[d] <= 1 ? 0 : stride;
                stride = empty ? 0 : checked(stride * Math.Max(lengths[d], 1));
            }
        }
        else
        {
            for (int d = 0; d < rank; d++)
            {
                long stride = tensor->Strides[d];
                if (lengths[d] <= 1) stride = 0;
                else if (stride < 0)
                    throw new ArgumentException(
                        $"{name}.strides[{d}] is {stride} (dimension {d} has length {lengths[d]}); strides must be >= 0: pass a view that does not run backwards.", name);
                strides[d] = (nint)stride;
            }
        }
        span = 0;
        if (!empty)
        {
            try
            {
                nint last = 0;
                for (int d = 0; d < rank; d++) last = checked(last + (lengths[d] - 1) * strides[d]);
                span = checked(last + 1);
            }
            catch (OverflowException)
            {
                throw new ArgumentException($"{name}: shape [{string.Join(", ", lengths[..rank].ToArray())}] with strides [{string.Join(", ", strides[..rank].ToArray())}] addresses more elements than a pointer can.", name);
            }
        }
        return rank;
    }

    /// <summary>The first element's address: data + byte_offset, checked for NULL and for the element's alignment.</summary>
    public static T* First<T>(DLTensor* tensor, string name, nint span) where T : unmanaged
    {
        if (tensor->Data is null)
        {
            if (span == 0) return null;
            throw new NativeCallException(NativeStatus.NullPointer, $"{name}.data is NULL (the tensor has {span} elements' extent).");
        }
        nuint address = (nuint)tensor->Data + (nuint)tensor->ByteOffset;
        if (address % (nuint)sizeof(T) != 0)
            throw new ArgumentException(
                $"{name}'s first element (data + byte_offset = 0x{address:x}) is not aligned to its element size ({sizeof(T)} bytes).", name);
        return (T*)address;
    }

    /// <summary>A writable span over a host tensor's memory.</summary>
    public static TensorSpan<T> Span<T>(DLTensor* tensor, string name, Span<nint> lengths, Span<nint> strides) where T : unmanaged
    {
        int rank = Layout(tensor, name, lengths, strides, out nint span);
        // A rank-0 span is the managed API's "none": a 0-d tensor must be refused, never read as an absent option.
        if (rank == 0)
            throw new ArgumentException($"{name} has ndim 0; attention tensors have 1 to 4 dimensions.", name);
        T* first = First<T>(tensor, name, span);
        try
        {
            return new TensorSpan<T>(first, span, lengths[..rank], strides[..rank]);
        }
        catch (OverflowException)
        {
            // System.Numerics.Tensors sums lengths x strides in checked arithmetic of its own.
            throw new ArgumentException(
                $"{name}: shape [{string.Join(", ", lengths[..rank].ToArray())}] with strides [{string.Join(", ", strides[..rank].ToArray())}] addresses more elements than a pointer can.", name);
        }
        catch (ArgumentException)
        {
            // TensorSpan takes strides under which no two elements share memory, except stride 0 (broadcast).
            throw new ArgumentException(
                $"{name} has shape [{string.Join(", ", lengths[..rank].ToArray())}] with strides [{string.Join(", ", strides[..rank].ToArray())}], under which distinct elements overlap in memory; " +
                "the engine takes strides that address each element once (or 0, to broadcast a dimension).", name);
        }
    }

    /// <summary>An optional host tensor: NULL gives the default span, the managed API's "none".</summary>
    public static TensorSpan<T> Optional<T>(DLTensor* tensor, string name, Span<nint> lengths, Span<nint> strides) where T : unmanaged =>
        tensor is null ? default : Span<T>(tensor, name, lengths, strides);
}
