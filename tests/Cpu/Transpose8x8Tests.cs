using AttentionEngine.Kernels.Cpu.Simd;

namespace AttentionEngine.Tests;

/// <summary>The AVX 8 x 8 transposes that lay out a tile's queries: every element lands where the scalar scatter put it.</summary>
public unsafe class Transpose8x8Tests
{
    [Theory]
    [InlineData(8, 8)]
    [InlineData(64, 24)]
    [InlineData(128, 64)]
    public void Rows_become_columns(int columns, int pitch)
    {
        Assert.SkipUnless(Transpose8x8.IsSupported, "this machine has no AVX");
        var source = new float[8 * (columns + 3)]; // rows 3 floats longer than needed: the row pointers, not a stride, are used
        for (int n = 0; n < source.Length; n++) source[n] = n * 1.5f - 7;
        var destination = new float[columns * pitch];
        Array.Fill(destination, float.NaN);
        fixed (float* s = source)
        fixed (float* d = destination)
        {
            float** rows = stackalloc float*[8];
            for (int i = 0; i < 8; i++) rows[i] = s + (7 - i) * (columns + 3); // rows in any order, anywhere
            Transpose8x8.Rows(rows, columns, d, pitch);
            for (int x = 0; x < columns; x++)
            for (int i = 0; i < 8; i++)
                Assert.Equal(rows[i][x], d[x * pitch + i]);
        }
        for (int x = 0; x < columns; x++)
        for (int c = 8; c < pitch; c++)
            Assert.True(float.IsNaN(destination[x * pitch + c]), "wrote outside the 8 lanes");
    }
}
