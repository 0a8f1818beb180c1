using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Kernels.Cpu.Gemm;

namespace AttentionEngine;

/// <summary>
/// Matrix products on the CPU, for the projections around attention: our packed SIMD GEMM (BLIS-style panels, a 6 x 2-vector
/// register tile), fp32 accumulation for float, <see cref="Half"/> and <see cref="BFloat16"/> operands in any mix,
/// any strides, multi-threaded on the attention kernels' worker pool.
/// </summary>
/// <remarks>
/// Results are bitwise identical for every thread count, and an element's bits depend only on its row of a and column
/// of b, never on which other rows share the call. Products of many rows sum each element in K order, in fixed slices
/// of 256, one fused multiply-add chain per slice; products of a few rows (up to 16, or 8 with 16-bit b) against a
/// weight whose columns run along K (<see cref="Linear"/>'s layout) take dot products in vector lanes instead, which
/// reads the weight once at memory speed (a decode step's projections): the two orders agree to rounding, not to the
/// bit. Steady calls allocate no managed memory. Transposed operands are views with swapped strides
/// (<see cref="TensorLayout.ReadOnlyView{T}(ReadOnlySpan{T}, ReadOnlySpan{nint}, ReadOnlySpan{nint})"/>), never
/// copies; 16-bit operands are widened in registers or while they are packed, so a bf16 weight costs no extra pass.
/// </remarks>
public static class MatMul
{
    /// <summary>c = a · b, plus <paramref name="bias"/> (one value per column of c) when it is not empty.</summary>
    /// <param name="a">[M, K], any strides.</param>
    /// <param name="b">[K, N], any strides.</param>
    /// <param name="c">[M, N] output, any strides that give each element its own memory; it must not overlap a or b.</param>
    /// <param name="bias">Empty, or N values added to every row.</param>
    /// <param name="maxDegreeOfParallelism">Most threads to use; null for all cores. Results do not depend on it.</param>
    /// <exception cref="ArgumentException">a shape, stride, overlap or bias length that does not fit; the message names the tensor.</exception>
    /// <exception cref="NotSupportedException">an element type other than float, Half and BFloat16.</exception>
    public static void Multiply<TA, TB, TC>(
        ReadOnlyTensorSpan<TA> a, ReadOnlyTensorSpan<TB> b, TensorSpan<TC> c, ReadOnlySpan<TB> bias = default, int? maxDegreeOfParallelism = null)
        where TA : unmanaged where TB : unmanaged where TC : unmanaged
    {
        var av = MatrixView<TA>.Of(a, nameof(a));
        var bv = MatrixView<TB>.Of(b, nameof(b));
        var cv = MatrixView<TC>.Of(c, nameof(c));
        MatMulValidation.Check(av, bv, cv, bias.Length, maxDegreeOfParallelism, nameof(a), nameof(b), nameof(c), nameof(bias));
        Run(av, bv, cv, bias, maxDegreeOfParallelism, CpuIsa.Auto);
    }

    /// <summary>
    /// PyTorch's <c>nn.Linear</c>: output = input · weightᵀ + bias, with the weight in its [out, in] layout (read in
    /// place through a transposed view, not copied).
    /// </summary>
    /// <param name="input">[tokens, in], any strides.</param>
    /// <param name="weight">[out, in], any strides.</param>
    /// <param name="output">[tokens, out].</param>
    /// <param name="bias">Empty, or out values.</param>
    /// <param name="maxDegreeOfParallelism">Most threads to use; null for all cores. Results do not depend on it.</param>
    /// <exception cref="ArgumentException">a shape, stride, overlap or bias length that does not fit; the message names the tensor.</exception>
    /// <exception cref="NotSupportedException">an element type other than float, Half and BFloat16.</exception>
    public static void Linear<TX, TW, TY>(
        ReadOnlyTensorSpan<TX> input, ReadOnlyTensorSpan<TW> weight, TensorSpan<TY> output, ReadOnlySpan<TW> bias = default, int? maxDegreeOfParallelism = null)
        where TX : unmanaged where TW : unmanaged where TY : unmanaged
    {
        var x = MatrixView<TX>.Of(input, nameof(input));
        var w = MatrixView<TW>.Of(weight, nameof(weight));
        var y = MatrixView<TY>.Of(output, nameof(output));
        if (w.Columns != x.Columns)
            throw new ArgumentException($"weight is {w.Shape}; expected [out, {x.Columns}] to match the columns of input {x.Shape} (in).", nameof(weight));
        MatMulValidation.Check(x, w.Transposed(), y, bias.Length, maxDegreeOfParallelism, nameof(input), nameof(weight) + "ᵀ", nameof(output), nameof(bias));
        Run(x, w.Transposed(), y, bias, maxDegreeOfParallelism, CpuIsa.Auto);
    }

    /// <summary>The validated product on a chosen vector width (the tests run every width).</summary>
    internal static unsafe void Run<TA, TB, TC>(
        scoped in MatrixView<TA> a, scoped in MatrixView<TB> b, scoped in MatrixView<TC> c, ReadOnlySpan<TB> bias, int? maxDegreeOfParallelism, CpuIsa isa)
        where TA : unmanaged where TB : unmanaged where TC : unmanaged
    {
        fixed (TA* pa = &a.Origin)
        fixed (TB* pb = &b.Origin)
        fixed (TC* pc = &c.Origin)
        fixed (TB* pbias = bias)
        {
            var job = new GemmJob<TA, TB, TC>
            {
                A = new RawMatrix<TA>(pa, (int)a.Rows, (int)a.Columns, a.RowStride, a.ColumnStride),
                B = new RawMatrix<TB>(pb, (int)b.Rows, (int)b.Columns, b.RowStride, b.ColumnStride),
                C = new RawMatrix<TC>(pc, (int)c.Rows, (int)c.Columns, c.RowStride, c.ColumnStride),
                Bias = bias.IsEmpty ? null : pbias,
            };
            CpuGemm.Run(job, isa, maxDegreeOfParallelism ?? Environment.ProcessorCount);
        }
    }
}
