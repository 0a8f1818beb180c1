using System.Numerics.Tensors;

namespace AttentionEngine.Tests;

/// <summary>
/// Regression tests of the hostile-input review (issue 15) for sizes, functors, optional tensors and aliasing: every
/// size the validator accepts runs, everything else is an <see cref="ArgumentException"/> naming the parameter.
/// </summary>
public unsafe class HostileValidationTests
{
    [Theory]
    [InlineData(9)]  // tile kernel: key blocks counted up to Lk = 2^31 − 1
    [InlineData(1)]  // decode kernel: key splits up to Lk
    public void The_longest_key_sequence_the_validator_accepts_runs(int lq)
    {
        // K and V broadcast along the sequence (stride 0): 2^31 − 1 keys over one element each. A bottom-right window
        // of 3 keys puts the work at the very end, where a 32-bit key counter used to wrap.
        const int lk = int.MaxValue;
        float* kv = stackalloc float[] { 0.5f, 7f };
        var k = new ReadOnlyTensorSpan<float>(kv, 1, [1, 1, lk, 1], [0, 0, 0, 0]);
        var v = new ReadOnlyTensorSpan<float>(kv + 1, 1, [1, 1, lk, 1], [0, 0, 0, 0]);
        using var q = NativeTensor<float>.Zeros(1, 1, lq, 1);
        using var output = NativeTensor<float>.Zeros(1, 1, lq, 1);
        using var lse = NativeTensor<float>.Zeros(1, 1, lq);
        var options = new AttentionOptions { Mask = Mask.SlidingWindow(2, 0, CausalAlignment.BottomRight), Lse = lse };
        CpuBackend.Default.Forward<float>(q, k, v, output, options);
        Assert.All(output.ToArray(), x => Assert.Equal(7f, x));
        Assert.All(lse.ToArray(), x => Assert.Equal(MathF.Log(3), x, 1e-6f));
    }

    [Fact]
    public void More_rows_than_the_kernels_count_are_refused_by_name()
    {
        float* one = stackalloc float[1];
        using var q = NativeTensor<float>.Zeros(2, 1, 4, 1);
        using var output = NativeTensor<float>.Zeros(2, 1, 4, 1);
        var error = Assert.Throws<ArgumentException>(() =>
        {
            var broadcast = new ReadOnlyTensorSpan<float>(one, 1, [2, 1, int.MaxValue, 1], [0, 0, 0, 0]);
            CpuBackend.Default.Forward<float>(q, broadcast, broadcast, output);
        });
        Assert.Equal("k", error.ParamName);
        Assert.Contains("key rows", error.Message);
    }

    [Fact]
    public void Block_masks_with_blocks_near_int_max_classify_correctly()
    {
        // One block per dimension: the mask must still apply (it used to compute 0 blocks and be ignored).
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 1, 30, 8);
        using var expected = NativeTensor<float>.Zeros(1, 1, 30, 8);
        using var actual = NativeTensor<float>.Zeros(1, 1, 30, 8);
        CpuBackend.Default.Forward<float>(q, q, q, expected, new AttentionOptions { Mask = Mask.Causal() });
        var blocks = BlockMask.Create(Mask.Causal().ToFunctor(30, 30), 1, 1, 30, 30, int.MaxValue - 1, int.MaxValue);
        Assert.Equal(1, blocks.QueryBlocks);
        Assert.Equal(1, blocks.KeyBlocks);
        FlexAttention.Create(blocks, CpuBackend.Default).Forward<float>(q, q, q, actual);
        Assert.Equal(expected.ToArray(), actual.ToArray());
    }

    [Fact]
    public void A_block_mask_too_large_for_one_array_is_refused_by_name()
    {
        var error = Assert.Throws<ArgumentException>(() => BlockMask.Create(new KeepAll(), 1, 1, int.MaxValue - 5, int.MaxValue - 5, 1, 1));
        Assert.Contains("blocks", error.Message);
        Assert.Contains(error.ParamName, new[] { "queryBlock", "keyBlock" });
    }

    [Fact]
    public void Functors_that_do_not_fit_the_call_are_refused_before_any_kernel_runs()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 4, 12, 8);
        using var output = NativeTensor<float>.Zeros(1, 4, 12, 8);
        foreach (var backend in HostileInputRegressionTests.HostBackends())
        {
            var few = Assert.Throws<ArgumentException>(() => FlexAttention.WithScore(AlibiScore.Standard(2), backend).Forward<float>(q, q, q, output));
            Assert.Equal("scoreMod", few.ParamName);
            Assert.Contains("2 slopes", few.Message);
            var none = Assert.Throws<ArgumentException>(() => FlexAttention.WithScore(default(AlibiScore), backend).Forward<float>(q, q, q, output));
            Assert.Contains("no slopes", none.Message);
            var cap = Assert.Throws<ArgumentException>(() => FlexAttention.WithScore(new TanhSoftcapScore(0), backend).Forward<float>(q, q, q, output));
            Assert.Contains("Cap is 0", cap.Message);
            var chained = Assert.Throws<ArgumentException>(() =>
                FlexAttention.WithScore(new ChainedScore<TanhSoftcapScore, AlibiScore>(new(30), AlibiScore.Standard(3)), backend).Forward<float>(q, q, q, output));
            Assert.Contains("Second: it holds 3 slopes", chained.Message);
        }
        var documents = Assert.Throws<ArgumentException>(() => BlockMask.Create(new DocumentMask([0, 0, 1], [0, 0, 1], causal: true), 1, 1, 12, 12));
        Assert.Equal("mask", documents.ParamName);
        Assert.Contains("3 query document ids", documents.Message);
        Assert.Throws<ArgumentException>(() => BlockMask.Create(default(DocumentMask), 1, 1, 12, 12));
        Assert.Throws<ArgumentException>(() => BlockMask.Create(new DilatedMask(0, 4), 1, 1, 12, 12));
        var layout = Assert.Throws<ArgumentException>(() => BlockMask.FromLayout(new DocumentMask([0, 1], [0, 1], false), [BlockKind.Partial], 1, 1, 12, 12, 64, 64));
        Assert.Equal("mask", layout.ParamName);
    }

    [Fact]
    public void Zero_length_optional_tensors_are_validated_not_ignored()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, 5, 4);
        using var output = NativeTensor<float>.Zeros(1, 2, 5, 4);
        var noKeys = new bool[0];
        var noBias = new float[0];
        foreach (var backend in HostileInputRegressionTests.HostBackends())
        {
            Assert.Equal("options.KeepMask", Assert.Throws<ArgumentException>(() =>
                backend.Forward<float>(q, q, q, output, new AttentionOptions { KeepMask = new ReadOnlyTensorSpan<bool>(noKeys, [1, 2, 5, 0], default) })).ParamName);
            Assert.Equal("options.Bias", Assert.Throws<ArgumentException>(() =>
                backend.Forward<float>(q, q, q, output, new AttentionOptions { Bias = new ReadOnlyTensorSpan<float>(noBias, [1, 2, 5, 0], default) })).ParamName);
            Assert.Equal("options.Lse", Assert.Throws<ArgumentException>(() =>
                backend.Forward<float>(q, q, q, output, new AttentionOptions { Lse = new TensorSpan<float>(noBias, [1, 2, 0], default) })).ParamName);
            Assert.Equal("options.Weights", Assert.Throws<ArgumentException>(() =>
                backend.Forward<float>(q, q, q, output, new AttentionOptions { Weights = new TensorSpan<float>(noBias, [1, 2, 5, 0], default) })).ParamName);
        }
    }

    /// <summary>[B, H, S, D] views of slot <paramref name="slot"/> of a packed [B, S, 3, H, D] buffer.</summary>
    private static TensorSpan<float> Packed(NativeTensor<float> packed, int slot)
    {
        var l = packed.Lengths; // B, S, 3, H, D
        nint b = l[0], s = l[1], h = l[3], d = l[4];
        return new TensorSpan<float>(packed.Pointer + slot * h * d, packed.FlattenedLength - slot * h * d, [b, h, s, d], [s * 3 * h * d, d, 3 * h * d, 1]);
    }

    [Fact]
    public void Gradients_may_be_interleaved_views_of_one_packed_buffer()
    {
        const int b = 2, s = 33, h = 3, d = 8;
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, b, h, s, d);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, b, h, s, d);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, b, h, s, d);
        using var dO = TensorRandom.Create<float>(4, ValueDistribution.Normal, b, h, s, d);
        using var output = NativeTensor<float>.Zeros(b, h, s, d);
        using var lse = NativeTensor<float>.Zeros(b, h, s);
        AttentionOptions Options() => new() { Mask = Mask.Causal(), Lse = lse };
        var options = Options();
        CpuBackend.Default.Forward<float>(q, k, v, output, options);

        using var dq = NativeTensor<float>.Zeros(b, h, s, d);
        using var dk = NativeTensor<float>.Zeros(b, h, s, d);
        using var dv = NativeTensor<float>.Zeros(b, h, s, d);
        // The forward's own options, Lse included, are accepted by the backward.
        CpuBackend.Default.Backward<float>(q, k, v, output, lse, dO, dq, dk, dv, options);

        using var packed = NativeTensor<float>.Zeros(b, s, 3, h, d);
        CpuBackend.Default.Backward<float>(q, k, v, output, lse, dO, Packed(packed, 0), Packed(packed, 1), Packed(packed, 2), options);
        Assert.Equal(dq.ToArray(), NativeTensor<float>.CopyOf(Packed(packed, 0)).ToArray());
        Assert.Equal(dk.ToArray(), NativeTensor<float>.CopyOf(Packed(packed, 1)).ToArray());
        Assert.Equal(dv.ToArray(), NativeTensor<float>.CopyOf(Packed(packed, 2)).ToArray());

        // Views that do share elements are still refused, by name.
        var error = Assert.Throws<ArgumentException>(() =>
        {
            var shifted = new TensorSpan<float>(packed.Pointer + 4, packed.FlattenedLength - 4, [b, h, s, d], [s * 3 * h * d, d, 3 * h * d, 1]);
            CpuBackend.Default.Backward<float>(q, k, v, output, lse, dO, Packed(packed, 0), shifted, Packed(packed, 2), Options());
        });
        Assert.Equal("dK", error.ParamName);
        // The forward's output may be a packed view beside inputs packed the same way.
        using var qkv = NativeTensor<float>.Zeros(b, s, 3, h, d);
        Assert.Throws<ArgumentException>(() => CpuBackend.Default.Forward<float>(Packed(qkv, 0), Packed(qkv, 1), Packed(qkv, 2), Packed(qkv, 1)));
    }

    [Fact]
    public void A_bias_gradient_may_take_any_shape_that_broadcasts_like_the_bias()
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 2, 2, 6, 4);
        using var dO = TensorRandom.Create<float>(2, ValueDistribution.Normal, 2, 2, 6, 4);
        using var bias = TensorRandom.Create<float>(3, ValueDistribution.Normal, 6, 6);
        using var output = NativeTensor<float>.Zeros(2, 2, 6, 4);
        using var lse = NativeTensor<float>.Zeros(2, 2, 6);
        AttentionOptions Options() => new() { Bias = bias.AsReadOnlyTensorSpan() };
        CpuBackend.Default.Forward<float>(q, q, q, output, Options() with { Lse = lse });
        float[] Gradient(params nint[] lengths)
        {
            using var dq = NativeTensor<float>.Zeros(2, 2, 6, 4);
            using var dk = NativeTensor<float>.Zeros(2, 2, 6, 4);
            using var dv = NativeTensor<float>.Zeros(2, 2, 6, 4);
            using var dBias = NativeTensor<float>.Zeros(lengths);
            CpuBackend.Default.Backward<float>(q, q, q, output, lse, dO, dq, dk, dv, Options(), dBias);
            return dBias.ToArray();
        }
        Assert.Equal(Gradient(6, 6), Gradient(1, 1, 6, 6));
        Assert.Equal(Gradient(6, 6), Gradient(1, 6, 6));
        var error = Assert.Throws<ArgumentException>(() => Gradient(2, 1, 6, 6));
        Assert.Equal("dBias", error.ParamName);
        Assert.Contains("[1, 1, 6, 6]", error.Message);
    }
}
