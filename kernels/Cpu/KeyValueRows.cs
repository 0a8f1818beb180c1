using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// The one place the CPU kernels read rows of K and V as floats: widened from float, Half or BFloat16 storage, or
/// dequantised from int8 with the token's scale (<see cref="Int8KeyValues"/>). Int8 rows never sit in place: every
/// kernel stages them (or reads the call's float copies), so the int8 bytes are all that streams from memory.
/// </summary>
internal static unsafe class KeyValueRows
{
    /// <summary>Key row (batch, kvHead, j) as <c>job.HeadDim</c> floats.</summary>
    public static void Key<T>(in CpuAttentionJob<T> job, int batch, int kvHead, int j, float* destination) where T : unmanaged
    {
        if (job.Int8.IsActive)
        {
            var k = job.Int8.K;
            Dequantize(&k.Base[k.Offset(batch, kvHead, j, 0)], k.Stride3, job.HeadDim, job.Int8.KScale[batch, kvHead, j, 0], destination);
            return;
        }
        var keys = job.K;
        ElementConversion.ToSingle(&keys.Base[keys.Offset(batch, kvHead, j, 0)], keys.Stride3, job.HeadDim, destination);
    }

    /// <summary>Value row (batch, kvHead, j) as <c>job.ValueDim</c> floats.</summary>
    public static void Value<T>(in CpuAttentionJob<T> job, int batch, int kvHead, int j, float* destination) where T : unmanaged
    {
        if (job.Int8.IsActive)
        {
            var v = job.Int8.V;
            Dequantize(&v.Base[v.Offset(batch, kvHead, j, 0)], v.Stride3, job.ValueDim, job.Int8.VScale[batch, kvHead, j, 0], destination);
            return;
        }
        var values = job.V;
        ElementConversion.ToSingle(&values.Base[values.Offset(batch, kvHead, j, 0)], values.Stride3, job.ValueDim, destination);
    }

    /// <summary>One value element as float (the guarded pass reads the raw values of non-finite rows).</summary>
    public static float ValueElement<T>(in CpuAttentionJob<T> job, int batch, int kvHead, int j, int c) where T : unmanaged
    {
        if (job.Int8.IsActive) return job.Int8.V[batch, kvHead, j, c] * job.Int8.VScale[batch, kvHead, j, 0];
        return NonFiniteRows.Element(job.V, batch, kvHead, j, c);
    }

    /// <summary>
    /// <paramref name="count"/> int8 elements times <paramref name="scale"/>, into floats: each is the correctly rounded
    /// float product (the int8 converts exactly), on every path.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Dequantize(sbyte* source, nint stride, int count, float scale, float* destination)
    {
        int n = 0;
        if (stride == 1 && Avx2.IsSupported)
        {
            var s = Vector256.Create(scale);
            for (; n + 8 <= count; n += 8)
                Avx.Store(destination + n, Avx.Multiply(Avx.ConvertToVector256Single(Avx2.ConvertToVector256Int32(source + n)), s));
        }
        for (; n < count; n++) destination[n] = source[n * stride] * scale;
    }
}
