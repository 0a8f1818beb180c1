using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// The two moves the guarded passes (<see cref="GuardedValues{TOps, TVec}"/>, <see cref="Backward.GuardedGradients"/>)
/// share: a copy of a K or V block a GEMM may safely read (NaN and ±infinity replaced by 0), and a raw element read
/// back from the caller's tensor for the rows that do see a non-finite value.
/// </summary>
internal static unsafe class NonFiniteRows
{
    /// <summary>
    /// Rows of <paramref name="width"/> floats, <paramref name="fromPitch"/> apart, into rows <paramref name="toPitch"/>
    /// apart: non-finite elements become 0, the rest are multiplied by <paramref name="scale"/> (a power of two, exact),
    /// and each row is zero-padded to <paramref name="toPitch"/>. In place when the two coincide.
    /// </summary>
    public static void CopyFinite(float* from, nint fromPitch, int rows, int width, float* to, int toPitch, float scale = 1)
    {
        for (int j = 0; j < rows; j++)
        {
            float* source = from + j * fromPitch, destination = to + j * toPitch;
            for (int c = 0; c < width; c++) destination[c] = float.IsFinite(source[c]) ? source[c] * scale : 0f;
            for (int c = width; c < toPitch; c++) destination[c] = 0f;
        }
    }

    /// <summary>Element (batch, head, position, column) of a K or V view, as float.</summary>
    public static float Element<T>(in RawStrided4<T> view, int batch, int head, int position, int column) where T : unmanaged
    {
        float value;
        ElementConversion.ToSingle(&view.Base[view.Offset(batch, head, position, column)], 1, 1, &value);
        return value;
    }
}
