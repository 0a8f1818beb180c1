using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// Host-side copies between the caller's strided views and the dense arrays the ILGPU buffers are filled from. Any
/// stride the validator accepts works; element bits are moved unchanged (T and its device storage type have the same
/// size: float as float, Half and BFloat16 as their 16 bits).
/// </summary>
internal static class HostPacking
{
    /// <summary>
    /// The view's elements in logical order, reinterpreted as <typeparamref name="TStorage"/>, each innermost row
    /// placed in <paramref name="rowWidth"/> slots (default: its length) with zeros after it: the CUDA kernel's padded D.
    /// </summary>
    public static TStorage[] Dense<T, TStorage>(scoped in ReadOnlyStrided4<T> view, int rowWidth = 0) where T : unmanaged where TStorage : unmanaged
    {
        int width = rowWidth == 0 ? view.Length3 : rowWidth;
        var dense = new TStorage[(long)view.Length0 * view.Length1 * view.Length2 * width];
        long row = 0;
        for (int a = 0; a < view.Length0; a++)
        for (int b = 0; b < view.Length1; b++)
        for (int c = 0; c < view.Length2; c++, row++)
        for (int d = 0; d < view.Length3; d++)
        {
            T value = view[a, b, c, d];
            dense[row * width + d] = Unsafe.As<T, TStorage>(ref value);
        }
        return dense;
    }

    /// <summary>
    /// Writes dense logical-order elements into a strided destination; source rows are <paramref name="rowWidth"/>
    /// apart (default: the destination's innermost length), and what lies past the destination's length is dropped.
    /// </summary>
    public static void Scatter<TStorage, T>(ReadOnlySpan<TStorage> dense, scoped in Strided4<T> destination, int rowWidth = 0)
        where T : unmanaged where TStorage : unmanaged
    {
        int width = rowWidth == 0 ? destination.Length3 : rowWidth;
        long row = 0;
        for (int a = 0; a < destination.Length0; a++)
        for (int b = 0; b < destination.Length1; b++)
        for (int c = 0; c < destination.Length2; c++, row++)
        for (int d = 0; d < destination.Length3; d++)
        {
            TStorage value = dense[checked((int)(row * width + d))];
            destination[a, b, c, d] = Unsafe.As<TStorage, T>(ref value);
        }
    }

    /// <summary>
    /// A [B, Hq, Lq, Lk] mask view compacted to its real extent: a broadcast dimension (stride 0) keeps one entry and
    /// gets device stride 0, so a [1, 1, 1, Lk] bias costs Lk elements on the device, not B·Hq·Lq·Lk.
    /// </summary>
    public static (TOut[] Dense, long StrideB, long StrideH, long StrideQ) Broadcast<T, TOut>(scoped in ReadOnlyStrided4<T> view, Func<T, TOut> convert)
        where T : unmanaged
    {
        int nb = view.Stride0 == 0 ? 1 : view.Length0, nh = view.Stride1 == 0 ? 1 : view.Length1, nq = view.Stride2 == 0 ? 1 : view.Length2;
        int nk = view.Length3;
        var dense = new TOut[(long)nb * nh * nq * nk];
        long n = 0;
        for (int b = 0; b < nb; b++)
        for (int h = 0; h < nh; h++)
        for (int q = 0; q < nq; q++)
        for (int k = 0; k < nk; k++)
            dense[n++] = convert(view[b, h, q, k]);
        long sq = nq == 1 ? 0 : nk, sh = nh == 1 ? 0 : (long)nq * nk, sb = nb == 1 ? 0 : (long)nh * nq * nk;
        return (dense, sb, sh, sq);
    }
}
