using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

public unsafe class NativeTensorTests
{
    [Fact]
    public void Memory_is_64_byte_aligned_and_zeroed()
    {
        using var tensor = NativeTensor<float>.Zeros(3, 5, 7);
        Assert.Equal(0, (long)tensor.Pointer % 64);
        Assert.All(tensor.ToArray(), x => Assert.Equal(0f, x));
        Assert.Equal(105, tensor.FlattenedLength);
        Assert.Equal([35, 7, 1], tensor.Strides.ToArray());
    }

    [Fact]
    public void Strided_views_read_the_same_logical_elements()
    {
        var data = Enumerable.Range(0, 2 * 3 * 4 * 5).Select(x => (float)x).ToArray();
        using var contiguous = NativeTensor<float>.FromArray(data, 2, 3, 4, 5);
        nint[] lengths = [2, 3, 4, 5];
        using var bshd = NativeTensor<float>.Allocate(lengths, TensorLayout.Permuted(lengths, [0, 2, 1, 3]));
        using var padded = NativeTensor<float>.Allocate(lengths, TensorLayout.Padded(lengths, 3));
        bshd.CopyFrom(contiguous);
        padded.CopyFrom(contiguous);
        Assert.Equal(data, bshd.ToArray());
        Assert.Equal(data, padded.ToArray());
        Assert.Equal([60, 5, 15, 1], bshd.Strides.ToArray()); // [B, S, H, D] memory
        Assert.Equal(data[1 * 60 + 2 * 20 + 3 * 5 + 4], bshd[1, 2, 3, 4]);
        Assert.Equal(bshd[1, 2, 3, 4], bshd.AsReadOnlyTensorSpan()[1, 2, 3, 4]);
        Assert.True(padded.StorageLength > padded.FlattenedLength);
    }

    [Fact]
    public void Random_tensors_are_reproducible_from_their_seed()
    {
        using var a = TensorRandom.Create<Half>(42, ValueDistribution.Outliers, 4, 100);
        using var b = TensorRandom.Create<Half>(42, ValueDistribution.Outliers, 4, 100);
        using var c = TensorRandom.Create<Half>(43, ValueDistribution.Outliers, 4, 100);
        Assert.Equal(a.ToArray(), b.ToArray());
        Assert.NotEqual(a.ToArray(), c.ToArray());
    }

    [Fact]
    public void Use_after_dispose_throws_instead_of_touching_freed_memory()
    {
        var tensor = NativeTensor<float>.Zeros(4);
        tensor.Dispose();
        tensor.Dispose(); // idempotent
        Assert.True(tensor.IsDisposed);
        Assert.Throws<ObjectDisposedException>(() => tensor.AsTensorSpan());
        Assert.Throws<ObjectDisposedException>(() => tensor.ToArray());
    }

    [Fact]
    public void Bad_shapes_and_indices_are_rejected_with_the_dimension_named()
    {
        var zero = Assert.Throws<ArgumentOutOfRangeException>(() => NativeTensor<float>.Zeros(3, 0));
        Assert.Contains("Dimension 1 has length 0", zero.Message);
        var strides = Assert.Throws<ArgumentException>(() => NativeTensor<float>.Allocate([2, 2], [1]));
        Assert.Contains("strides has 1 entries; expected 2", strides.Message);
        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => NativeTensor<float>.Allocate([2, 2], [2, -1]));
        Assert.Contains("stride -1", negative.Message);
        using var tensor = NativeTensor<float>.Zeros(2, 3);
        var index = Assert.Throws<IndexOutOfRangeException>(() => tensor[1, 3]);
        Assert.Contains("Index 3 is outside dimension 1 of length 3", index.Message);
        var data = Assert.Throws<ArgumentException>(() => NativeTensor<float>.FromArray(new float[5], 2, 3));
        Assert.Contains("data has 5 elements", data.Message);
        Assert.Throws<ArgumentException>(() => TensorLayout.Permuted([2, 3], [0, 0]));
    }

    [Fact]
    public void Overlap_detection_accepts_every_permutation_and_padding_and_rejects_broadcast()
    {
        nint[] lengths = [2, 3, 4, 5];
        foreach (var order in new[] { new[] { 0, 1, 2, 3 }, [0, 2, 1, 3], [3, 2, 1, 0], [1, 3, 0, 2] })
            Assert.True(TensorLayout.IsNonOverlapping(lengths, TensorLayout.Permuted(lengths, order)));
        Assert.True(TensorLayout.IsNonOverlapping(lengths, TensorLayout.Padded(lengths, 2)));
        Assert.False(TensorLayout.IsNonOverlapping(lengths, [0, 20, 5, 1]));
        Assert.False(TensorLayout.IsNonOverlapping(lengths, [60, 20, 5, 2]));
        Assert.True(TensorLayout.IsNonOverlapping([1, 3], [0, 1])); // a length-1 dimension may have any stride
    }

    [Fact]
    public void Problem_layouts_place_the_same_values_in_different_memory()
    {
        var spec = new ProblemSpec { Batch = 2, QueryHeads = 2, QueryLength = 3, KeyLength = 4, HeadDim = 5, ValueDim = 5, DataSeed = 9 };
        using var contiguous = AttentionProblem<float>.Create(spec);
        using var bshd = AttentionProblem<float>.Create(spec with { Layout = MemoryLayout.Bshd });
        Assert.Equal(contiguous.Q.ToArray(), bshd.Q.ToArray());
        Assert.NotEqual(contiguous.Q.Strides.ToArray(), bshd.Q.Strides.ToArray());
    }

    [Fact]
    public void Length_one_dimensions_produce_valid_tensor_spans()
    {
        // System.Numerics.Tensors 10.0.x rejects nonzero strides on length-1 dimensions; views must still work.
        using var tensor = TensorRandom.Create<float>(5, ValueDistribution.Normal, 1, 2, 1, 3);
        var span = tensor.AsReadOnlyTensorSpan();
        Assert.Equal(tensor[0, 1, 0, 2], span[0, 1, 0, 2]);
        Assert.Equal([6, 3, 3, 1], tensor.Strides.ToArray());
    }
}
