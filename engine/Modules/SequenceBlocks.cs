namespace AttentionEngine;

/// <summary>
/// A [batch, length, width] tensor as few token matrices as its strides allow: one [batch·length, width] matrix when
/// sequences follow each other at the token stride (contiguous batches, or batch 1), else one [length, width] matrix
/// per sequence. Projections then run one GEMM per block.
/// </summary>
internal readonly record struct SequenceBlocks(int Count, nint Rows, nint BlockStride, nint RowStride, nint ColumnStride)
{
    public static SequenceBlocks Of(ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides)
    {
        nint batch = lengths[0], length = lengths[1];
        // (A length-1 dimension's stride is meaningless, and spans report it as 0.)
        if (batch <= 1) return new SequenceBlocks(1, length, 0, strides[1], strides[2]);
        if (length == 1) return new SequenceBlocks(1, batch, 0, strides[0], strides[2]);
        return strides[0] == length * strides[1]
            ? new SequenceBlocks(1, batch * length, 0, strides[1], strides[2])
            : new SequenceBlocks((int)batch, length, strides[0], strides[1], strides[2]);
    }
}
