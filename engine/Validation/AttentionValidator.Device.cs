namespace AttentionEngine;

internal static partial class AttentionValidator
{
    /// <summary>Checks a call on device tensors (see <see cref="CudaBackend.Forward{T}(DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, DeviceTensor{T}, in AttentionOptions, DeviceTensor{float}?, Bindings.Cuda.CudaStream?)"/>).</summary>
    internal static DeviceAttentionCall<T> ValidateDevice<T>(
        DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
        scoped in AttentionOptions options, DeviceTensor<float>? lse) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        int ordinal = RequireOneDevice(q, k, nameof(k), v, nameof(v), output);

        var shape = ValidateShapes(q.Lengths, k.Lengths, v.Lengths, output.Lengths);
        CheckNonOverlapping(output.Lengths, output.Strides, nameof(output));
        float scale = ResolveScale(options, shape);
        CheckCudaOptions(options);

        Span<int> scoreShape = [shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength];
        var bias = BroadcastMask(options.Bias, scoreShape, "options.Bias");
        var keep = BroadcastMask(options.KeepMask, scoreShape, "options.KeepMask");

        var hostLse = default(Kernels.Tensors.Strided4<float>);
        if (options.ReturnLse)
        {
            if (lse is not null)
                throw new ArgumentException("Both options.Lse (a host destination) and lse (a device destination) are given; give one.", nameof(lse));
            hostLse = HostLseView(options, shape);
        }
        if (lse is not null)
        {
            ThrowIfUnusable(lse, nameof(lse), ordinal);
            CheckLseLengths(lse.Lengths, shape, nameof(lse));
            CheckNonOverlapping(lse.Lengths, lse.Strides, nameof(lse));
        }

        // Outputs must not share memory with inputs or with each other: the kernel reads while it writes.
        void ThrowIfWrittenOverlaps((ulong, ElementSet) input, string inputName)
        {
            ThrowIfOverlaps(Extent(output), "output", input, inputName);
            if (lse is not null) ThrowIfOverlaps(Extent(lse), nameof(lse), input, inputName);
        }
        ThrowIfWrittenOverlaps(Extent(q), "q");
        ThrowIfWrittenOverlaps(Extent(k), "k");
        ThrowIfWrittenOverlaps(Extent(v), "v");
        if (lse is not null) ThrowIfOverlaps(Extent(lse), nameof(lse), Extent(output), "output");

        var mask = options.Mask ?? Mask.None;
        return new DeviceAttentionCall<T>(shape, scale, mask.Resolve(shape.QueryLength, shape.KeyLength), q, k, v, output, bias, keep, lse, hostLse, options.Dropout);
    }

    /// <summary>The options no CUDA kernel takes, refused by name: threads below 1, int8 scores, attention weights.</summary>
    private static void CheckCudaOptions(scoped in AttentionOptions options)
    {
        if (options.MaxDegreeOfParallelism is < 1)
            throw new ArgumentException($"MaxDegreeOfParallelism is {options.MaxDegreeOfParallelism}; expected at least 1 (or null).", "options.MaxDegreeOfParallelism");
        CheckScorePrecision(options.ScorePrecision);
        if (options.ScorePrecision != ScorePrecision.Float)
            throw new NotSupportedException(
                $"options.ScorePrecision is {options.ScorePrecision}: the CUDA kernels compute scores in float; use the Cpu backend for int8 scores.");
        if (options.ReturnWeights)
            throw new NotSupportedException("options.Weights: attention weights are not returned by the CUDA kernel; use the Cpu backend to inspect them.");
    }

    /// <summary>
    /// The four tensors of a device call are non-null, undisposed and on q's device; returns that device's ordinal.
    /// K and V are named by the caller (the paged call's are <c>keyPages</c> and <c>valuePages</c>).
    /// </summary>
    private static int RequireOneDevice<T>(DeviceTensor<T> q, DeviceTensor<T> k, string kName, DeviceTensor<T> v, string vName, DeviceTensor<T> output)
        where T : unmanaged
    {
        ArgumentNullException.ThrowIfNull(q, nameof(q));
        ArgumentNullException.ThrowIfNull(k, kName);
        ArgumentNullException.ThrowIfNull(v, vName);
        ArgumentNullException.ThrowIfNull(output, nameof(output));
        int ordinal = q.Device.Ordinal;
        ThrowIfUnusable(q, nameof(q), ordinal);
        ThrowIfUnusable(k, kName, ordinal);
        ThrowIfUnusable(v, vName, ordinal);
        ThrowIfUnusable(output, nameof(output), ordinal);
        return ordinal;
    }

    private static void ThrowIfUnusable<TElement>(DeviceTensor<TElement> tensor, string name, int ordinal) where TElement : unmanaged
    {
        if (tensor.IsDisposed) throw new ObjectDisposedException(name, $"{name} ({tensor}) or its device has been disposed.");
        if (tensor.Device.Ordinal != ordinal)
            throw new ArgumentException($"{name} lives on device {tensor.Device.Ordinal}; q lives on device {ordinal}. Every tensor of a call must be on one device.", name);
    }

    /// <summary>A device tensor's elements as bytes from its address, for the exact overlap test (<see cref="ElementSet"/>).</summary>
    private static (ulong Address, ElementSet Elements) Extent<TElement>(DeviceTensor<TElement> tensor) where TElement : unmanaged =>
        (tensor.Address, ElementSet.Of(tensor.Lengths, tensor.Strides, System.Runtime.CompilerServices.Unsafe.SizeOf<TElement>()));

    /// <summary>
    /// Throws when an element of <paramref name="written"/> shares a byte with one of <paramref name="other"/>. Element by
    /// element, not by extents: interleaved views of one packed buffer (FlashAttention's [B, S, 3, H, D]) do not overlap.
    /// </summary>
    private static void ThrowIfOverlaps((ulong Address, ElementSet Elements) written, string name, (ulong Address, ElementSet Elements) other, string otherName)
    {
        if (written.Elements.Intersects(other.Elements, (long)(other.Address - written.Address)))
            throw new ArgumentException(
                $"{name} overlaps the memory of {otherName}: outputs must not share memory with inputs or with other outputs, " +
                "because the kernel reads while it writes.", name);
    }
}
