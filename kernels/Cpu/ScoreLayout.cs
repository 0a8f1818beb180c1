namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Where score (row r, key j) of a block lives in the score scratch: r · RowStride + j · KeyStride. The tile kernel
/// keeps scores transposed (rows along the lanes), the decode kernel row-major (keys along the lanes); masking and
/// the weights output are written once for both.
/// </summary>
internal readonly record struct ScoreLayout(int RowStride, int KeyStride)
{
    /// <summary>Sᵀ[j][r], rows along the vector lanes.</summary>
    public static ScoreLayout Transposed(int tileRows) => new(1, tileRows);

    /// <summary>S[r][j], keys along the vector lanes.</summary>
    public static ScoreLayout RowMajor(int keyBlock) => new(keyBlock, 1);

    public int this[int row, int key] => row * RowStride + key * KeyStride;
}
