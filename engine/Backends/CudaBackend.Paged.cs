using AttentionEngine.Bindings.Cuda;
using AttentionEngine.Kernels.Cuda;

namespace AttentionEngine;

public sealed partial class CudaBackend
{
    /// <summary>
    /// Decode attention over a paged KV cache on the device (vLLM's layout): each sequence's keys and values live in
    /// fixed-size pages of one shared pool, listed in order by its row of <paramref name="blockTable"/>, and each
    /// sequence has its own length. The queries are each sequence's last positions: every mask is aligned to the end
    /// of that sequence's keys (causal and sliding-window masks must say <see cref="CausalAlignment.BottomRight"/>).
    /// Runs the split-KV decode kernel; a sequence of length 0 outputs zeros and LSE = -inf.
    /// </summary>
    /// <param name="q">[batch, heads, queries ≤ 8, D] on the device, any strides</param>
    /// <param name="keyPages">[pages, page size, KV heads, D], contiguous along D</param>
    /// <param name="valuePages">[pages, page size, KV heads, Dv], contiguous along D</param>
    /// <param name="blockTable">host memory, batch rows of pages per sequence (row-major): entry [b, n] is the page holding
    /// keys n·pageSize … of sequence b. Entries past a sequence's last page are not read (they may be -1).</param>
    /// <param name="keyLengths">host memory, the number of keys of each sequence (0 … pages per sequence · page size)</param>
    /// <param name="output">[batch, heads, queries, Dv] on the device, any strides</param>
    /// <param name="options">scale and mask (bottom-right aligned); bias, keep-mask, weights, dropout and a host LSE are refused</param>
    /// <param name="lse">[batch, heads, queries] on the device, or null</param>
    /// <param name="stream">queue the work after what the caller queued there; null: run on a stream of the call's own and wait</param>
    /// <exception cref="ArgumentException">shapes, devices, the table, the lengths or the mask are invalid; the message names which.</exception>
    /// <exception cref="NotSupportedException">more than 8 queries, D or Dv above 256, or an option the paged decode does not take.</exception>
    /// <exception cref="InvalidOperationException">the backend is unavailable, or the tensors are on another device than the backend's.</exception>
    public void ForwardPaged<T>(DeviceTensor<T> q, DeviceTensor<T> keyPages, DeviceTensor<T> valuePages, ReadOnlySpan<int> blockTable,
        ReadOnlySpan<int> keyLengths, DeviceTensor<T> output, scoped in AttentionOptions options = default, DeviceTensor<float>? lse = null,
        CudaStream? stream = null) where T : unmanaged
    {
        var call = AttentionValidator.ValidatePaged(q, keyPages, valuePages, blockTable, keyLengths, output, options, lse);
        var (device, kernels) = OpenedFor(q.Device.Ordinal);
        var shape = call.Shape;
        if (CudaDecodeKernel.GridLimit(shape) is { } grid) throw new NotSupportedException($"{shape}: {grid}.");
        var element = CudaElements.Of<T>();
        int bytes = CudaElements.Bytes(element);
        // Q and the output go through the packed layout where they cannot be used in place (the kernel reads D and
        // writes Dv of their columns); the pages are read where they lie.
        int dn = CudaFlashVariant.For(Math.Max(shape.HeadDim, shape.ValueDim), element).HeadDim;

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            device.MakeCurrent();
            using var scope = new DeviceCallScope(stream);
            var copies = new DeviceOperands(kernels, scope.Scratch, scope.Queue, dn, bytes);
            var d = new DecodeParams
            {
                BandLo = call.BandFromEnd.Lo, BandHi = call.BandFromEnd.Hi, BandFromEnd = 1,
                Batch = shape.Batch, Heads = shape.QueryHeads, KvHeads = shape.KvHeads, Lq = shape.QueryLength, Lk = shape.KeyLength,
                D = shape.HeadDim, Dv = shape.ValueDim, Scale = call.Scale,
                K = keyPages.Address, V = valuePages.Address,
                KStrides = new(keyPages.Strides[0], keyPages.Strides[2], keyPages.Strides[1]),
                VStrides = new(valuePages.Strides[0], valuePages.Strides[2], valuePages.Strides[1]),
                BlockTable = scope.Scratch.Upload<int>(call.BlockTable).Address, TableStride = call.PagesPerSequence, PageSize = call.PageSize,
                KeyLengths = scope.Scratch.Upload<int>(call.KeyLengths).Address,
            };
            (d.Q, d.QStrides) = copies.Input(q);
            var (outputAddress, outputStrides, unpack) = copies.Output(output);
            (d.O, d.OStrides) = (outputAddress, outputStrides);
            if (lse is not null) (d.Lse, d.LseStrides) = (lse.Address, new Strides3(lse.Strides[0], lse.Strides[1], lse.Strides[2]));
            LaunchDecode(kernels, element, ref d, shape, scope.Queue, scope.Scratch);
            unpack?.Invoke();
            // The table, the lengths and the partials are temporaries the queued kernels read.
            scope.Complete();
        }
    }
}
