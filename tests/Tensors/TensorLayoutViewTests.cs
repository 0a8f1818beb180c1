namespace AttentionEngine.Tests;

/// <summary><see cref="TensorLayout.View{T}(Span{T}, ReadOnlySpan{nint}, ReadOnlySpan{nint})"/>: views over a user's own
/// memory in the layouts attention meets, which System.Numerics.Tensors alone refuses or explains badly.</summary>
public class TensorLayoutViewTests
{
    [Fact]
    public void A_batch_one_BSHD_buffer_is_a_BHSD_view_that_attention_reads_in_place()
    {
        const int s = 37, h = 4, d = 16;
        var random = new Random(5);
        float[] qkv = [.. Enumerable.Range(0, 3 * s * h * d).Select(_ => (float)random.NextDouble() - 0.5f)];
        nint[] logical = [1, h, s, d];
        var strides = TensorLayout.Permuted(logical, [0, 2, 1, 3]); // batch 1 with a nonzero stride: refused by TensorSpan itself
        var q = TensorLayout.ReadOnlyView<float>(qkv.AsSpan(0, s * h * d), logical, strides);
        var k = TensorLayout.ReadOnlyView<float>(qkv.AsSpan(s * h * d, s * h * d), logical, strides);
        var v = TensorLayout.ReadOnlyView<float>(qkv.AsSpan(2 * s * h * d, s * h * d), logical, strides);
        var outputMemory = new float[s * h * d];
        Attention.Forward(q, k, v, TensorLayout.View<float>(outputMemory, logical, strides), new AttentionOptions { Mask = Mask.Causal() });

        // The same problem copied to contiguous [B, H, S, D] gives the same bits, read back through the view.
        using var cq = NativeTensor<float>.Zeros(logical); using var ck = NativeTensor<float>.Zeros(logical);
        using var cv = NativeTensor<float>.Zeros(logical); using var co = NativeTensor<float>.Zeros(logical);
        q.CopyTo(cq); k.CopyTo(ck); v.CopyTo(cv);
        Attention.Forward<float>(cq, ck, cv, co, new AttentionOptions { Mask = Mask.Causal() });
        var fromView = new float[s * h * d];
        TensorLayout.ReadOnlyView<float>(outputMemory, logical, strides).FlattenTo(fromView);
        Assert.Equal(co.ToArray(), fromView);
    }

    [Fact]
    public void A_KV_cache_with_spare_capacity_is_a_view_of_its_filled_part()
    {
        float[] cache = new float[2 * 128 * 8]; // [heads 2, capacity 128, D 8]
        for (int i = 0; i < cache.Length; i++) cache[i] = i;
        var filled = TensorLayout.ReadOnlyView<float>(cache, [1, 2, 40, 8], [2 * 128 * 8, 128 * 8, 8, 1]);
        Assert.Equal(128 * 8 + 39 * 8 + 7, filled[0, 1, 39, 7]);
    }

    [Fact]
    public void Bad_views_are_refused_with_what_is_wrong()
    {
        float[] memory = new float[100];
        Assert.Contains("reach 101 elements; the memory holds 100",
            Assert.Throws<ArgumentException>(() => TensorLayout.View<float>(memory, [101], [1])).Message);
        Assert.Contains("share memory",
            Assert.Throws<ArgumentException>(() => TensorLayout.View<float>(memory, [10, 10], [1, 1])).Message);
        Assert.Contains("stride -1",
            Assert.Throws<ArgumentOutOfRangeException>(() => TensorLayout.View<float>(memory, [10], [-1])).Message);
        Assert.Contains("expected 2",
            Assert.Throws<ArgumentException>(() => TensorLayout.View<float>(memory, [10, 10], [10])).Message);
        // Stride 0 on a longer dimension broadcasts it.
        var row = TensorLayout.ReadOnlyView<float>(memory, [5, 10], [0, 1]);
        Assert.Equal(memory[3], row[4, 3]);
    }
}
