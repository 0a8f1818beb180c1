using System.Numerics.Tensors;

namespace AttentionEngine.Tests;

/// <summary>Every rejection names the tensor, the dimension and the values seen vs expected.</summary>
public class ValidationTests
{
    private static readonly AttentionBackend Reference = Attention.Using(Backend.Reference);

    private static float[] Data(params int[] lengths) => new float[lengths.Aggregate(1, (a, b) => a * b)];

    private static ArgumentException Reject(
        float[] q, nint[] ql, float[] k, nint[] kl, float[] v, nint[] vl, float[] o, nint[] ol, string expectedParam)
    {
        var error = Assert.ThrowsAny<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(q, ql), new ReadOnlyTensorSpan<float>(k, kl),
            new ReadOnlyTensorSpan<float>(v, vl), new TensorSpan<float>(o, ol)));
        Assert.Equal(expectedParam, error.ParamName);
        return error;
    }

    [Fact]
    public void Wrong_rank_names_the_tensor_and_its_lengths()
    {
        var e = Reject(Data(2, 3, 4), [2, 3, 4], Data(1, 2, 3, 4), [1, 2, 3, 4], Data(1, 2, 3, 4), [1, 2, 3, 4], Data(1, 2, 3, 4), [1, 2, 3, 4], "q");
        Assert.Contains("q has rank 3 with lengths [2, 3, 4]; expected rank 4 [batch, heads, seq, headDim]", e.Message);
    }

    [Fact]
    public void Zero_length_dimension_is_rejected()
    {
        var error = Assert.Throws<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(Data(1, 1, 2, 4), [1, 1, 2, 4]),
            new ReadOnlyTensorSpan<float>(new float[0], [1, 1, 0, 4]),
            new ReadOnlyTensorSpan<float>(new float[0], [1, 1, 0, 4]),
            new TensorSpan<float>(Data(1, 1, 2, 4), [1, 1, 2, 4])));
        Assert.Equal("k", error.ParamName);
        Assert.Contains("k dimension 2 (seq) has length 0; every dimension must be at least 1", error.Message);
    }

    [Fact]
    public void A_default_span_is_rejected_as_rank_0()
    {
        var error = Assert.Throws<ArgumentException>(() => Reference.Forward(
            default, new ReadOnlyTensorSpan<float>(Data(1, 1, 2, 4), [1, 1, 2, 4]),
            new ReadOnlyTensorSpan<float>(Data(1, 1, 2, 4), [1, 1, 2, 4]), new TensorSpan<float>(Data(1, 1, 2, 4), [1, 1, 2, 4])));
        Assert.Equal("q", error.ParamName);
        Assert.Contains("q has rank 0", error.Message);
    }

    [Fact]
    public void Mismatched_batch_head_dim_and_sequence_are_named()
    {
        var batch = Reject(Data(2, 1, 3, 4), [2, 1, 3, 4], Data(3, 1, 5, 4), [3, 1, 5, 4], Data(3, 1, 5, 4), [3, 1, 5, 4], Data(2, 1, 3, 4), [2, 1, 3, 4], "k");
        Assert.Contains("k dimension 0 (batch) is 3; expected 2 to match q", batch.Message);
        var headDim = Reject(Data(1, 1, 3, 4), [1, 1, 3, 4], Data(1, 1, 5, 8), [1, 1, 5, 8], Data(1, 1, 5, 4), [1, 1, 5, 4], Data(1, 1, 3, 4), [1, 1, 3, 4], "k");
        Assert.Contains("k dimension 3 (headDim) is 8; expected 4 to match q", headDim.Message);
        var seq = Reject(Data(1, 1, 3, 4), [1, 1, 3, 4], Data(1, 1, 5, 4), [1, 1, 5, 4], Data(1, 1, 6, 4), [1, 1, 6, 4], Data(1, 1, 3, 4), [1, 1, 3, 4], "v");
        Assert.Contains("v dimension 2 (seq) is 6; expected 5 to match k", seq.Message);
        var heads = Reject(Data(1, 2, 3, 4), [1, 2, 3, 4], Data(1, 2, 5, 4), [1, 2, 5, 4], Data(1, 1, 5, 4), [1, 1, 5, 4], Data(1, 2, 3, 4), [1, 2, 3, 4], "v");
        Assert.Contains("v dimension 1 (heads) is 1; expected 2 to match k", heads.Message);
    }

    [Fact]
    public void Query_heads_not_a_multiple_of_kv_heads_is_rejected()
    {
        var e = Reject(Data(1, 6, 3, 4), [1, 6, 3, 4], Data(1, 4, 5, 4), [1, 4, 5, 4], Data(1, 4, 5, 4), [1, 4, 5, 4], Data(1, 6, 3, 4), [1, 6, 3, 4], "q");
        Assert.Contains("q dimension 1 (heads) is 6, which is not a multiple of k dimension 1 (heads) 4", e.Message);
    }

    [Fact]
    public void Output_shape_must_be_batch_heads_lq_valuedim()
    {
        var e = Reject(Data(1, 2, 3, 4), [1, 2, 3, 4], Data(1, 1, 5, 4), [1, 1, 5, 4], Data(1, 1, 5, 7), [1, 1, 5, 7], Data(1, 2, 3, 4), [1, 2, 3, 4], "output");
        Assert.Contains("output dimension 3 (headDim) is 4; expected 7", e.Message);
        Assert.Contains("[1, 2, 3, 7]", e.Message);
    }

    [Fact]
    public void Output_with_overlapping_elements_is_rejected()
    {
        var q = Data(1, 2, 3, 4);
        var e = Assert.Throws<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(q, [1, 2, 3, 4]), new ReadOnlyTensorSpan<float>(q, [1, 2, 3, 4]),
            new ReadOnlyTensorSpan<float>(q, [1, 2, 3, 4]), new TensorSpan<float>(new float[12], 0, [1, 2, 3, 4], [0, 0, 4, 1])));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("output has overlapping elements (lengths [1, 2, 3, 4], strides [0, 0, 4, 1])", e.Message);
    }

    [Fact]
    public void Output_aliasing_an_input_is_rejected()
    {
        var shared = Data(1, 1, 3, 4);
        var e = Assert.Throws<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(shared, [1, 1, 3, 4]), new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]),
            new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]), new TensorSpan<float>(shared, [1, 1, 3, 4])));
        Assert.Equal("output", e.ParamName);
        Assert.Contains("output overlaps the memory of q", e.Message);

        var v = Data(1, 1, 3, 4);
        var lse = Assert.Throws<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]), new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]),
            new ReadOnlyTensorSpan<float>(v, [1, 1, 3, 4]), new TensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]),
            new AttentionOptions { Lse = new TensorSpan<float>(v, 0, [1, 1, 3], [0, 0, 1]) }));
        Assert.Equal("options.Lse", lse.ParamName);
        Assert.Contains("options.Lse overlaps the memory of v", lse.Message);
    }

    [Fact]
    public void Outputs_may_not_overlap_each_other()
    {
        var o = Data(1, 1, 3, 4);
        var e = Assert.Throws<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]), new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]),
            new ReadOnlyTensorSpan<float>(Data(1, 1, 3, 4), [1, 1, 3, 4]), new TensorSpan<float>(o, [1, 1, 3, 4]),
            new AttentionOptions { Weights = new TensorSpan<float>(o, [1, 1, 3, 3]) }));
        Assert.Equal("options.Weights", e.ParamName);
        Assert.Contains("options.Weights overlaps the memory of output", e.Message);
    }

    private static ArgumentException RejectOptions(AttentionOptionsFactory options, string expectedParam)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<float>(Data(2, 3, 5, 4), [2, 3, 5, 4]), new ReadOnlyTensorSpan<float>(Data(2, 3, 7, 4), [2, 3, 7, 4]),
            new ReadOnlyTensorSpan<float>(Data(2, 3, 7, 4), [2, 3, 7, 4]), new TensorSpan<float>(Data(2, 3, 5, 4), [2, 3, 5, 4]),
            options()));
        Assert.Equal(expectedParam, e.ParamName);
        return e;
    }

    private delegate AttentionOptions AttentionOptionsFactory();

    [Fact]
    public void Bias_that_does_not_broadcast_names_the_dimension()
    {
        var e = RejectOptions(() => new AttentionOptions { Bias = new ReadOnlyTensorSpan<float>(Data(2, 1, 4, 7), [2, 1, 4, 7]) }, "options.Bias");
        Assert.Contains("options.Bias dimension 2 (queries) is 4; expected 1 or 5", e.Message);
        Assert.Contains("[batch, heads, Lq, Lk] = [2, 3, 5, 7]", e.Message);
        var rank = RejectOptions(() => new AttentionOptions { Bias = new ReadOnlyTensorSpan<float>(Data(1, 2, 3, 5, 7), [1, 2, 3, 5, 7]) }, "options.Bias");
        Assert.Contains("options.Bias has rank 5", rank.Message);
    }

    [Fact]
    public void Keep_mask_that_does_not_broadcast_names_the_dimension()
    {
        var e = RejectOptions(() => new AttentionOptions { KeepMask = new ReadOnlyTensorSpan<bool>(new bool[2 * 8], [2, 1, 1, 8]) }, "options.KeepMask");
        Assert.Contains("options.KeepMask dimension 3 (keys) is 8; expected 1 or 7", e.Message);
        // Leading dimensions may be left out: a [Lk] mask is a key mask for every row.
        Reference.Forward(
            new ReadOnlyTensorSpan<float>(Data(2, 3, 5, 4), [2, 3, 5, 4]), new ReadOnlyTensorSpan<float>(Data(2, 3, 7, 4), [2, 3, 7, 4]),
            new ReadOnlyTensorSpan<float>(Data(2, 3, 7, 4), [2, 3, 7, 4]), new TensorSpan<float>(Data(2, 3, 5, 4), [2, 3, 5, 4]),
            new AttentionOptions { KeepMask = new ReadOnlyTensorSpan<bool>(new bool[7], [7]) });
    }

    [Fact]
    public void Lse_and_weights_destinations_must_have_their_exact_shapes()
    {
        var lse = RejectOptions(() => new AttentionOptions { Lse = new TensorSpan<float>(Data(2, 3, 4), [2, 3, 4]) }, "options.Lse");
        Assert.Contains("options.Lse dimension 2 is 4; expected 5", lse.Message);
        var lseRank = RejectOptions(() => new AttentionOptions { Lse = new TensorSpan<float>(Data(2, 15), [2, 15]) }, "options.Lse");
        Assert.Contains("options.Lse has rank 2", lseRank.Message);
        var weights = RejectOptions(() => new AttentionOptions { Weights = new TensorSpan<float>(Data(2, 3, 5, 6), [2, 3, 5, 6]) }, "options.Weights");
        Assert.Contains("options.Weights dimension 3 (keys) is 6; expected 7", weights.Message);
    }

    [Fact]
    public void Non_finite_scale_is_rejected()
    {
        var e = RejectOptions(() => new AttentionOptions { Scale = float.NaN }, "options.Scale");
        Assert.Contains("Scale is NaN; expected a finite number", e.Message);
        RejectOptions(() => new AttentionOptions { Scale = float.PositiveInfinity }, "options.Scale");
    }

    [Fact]
    public void Negative_window_extents_are_rejected_when_the_mask_is_built()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => Mask.SlidingWindow(-1, 0));
        Assert.Equal("left", e.ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => Mask.SlidingWindow(3, -2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Mask.Causal((CausalAlignment)7));
    }

    [Fact]
    public void Unsupported_element_types_are_refused_by_name()
    {
        var d = new double[4];
        var e = Assert.Throws<NotSupportedException>(() => Reference.Forward(
            new ReadOnlyTensorSpan<double>(d, [1, 1, 1, 4]), new ReadOnlyTensorSpan<double>(d, [1, 1, 1, 4]),
            new ReadOnlyTensorSpan<double>(d, [1, 1, 1, 4]), new TensorSpan<double>(new double[4], [1, 1, 1, 4])));
        Assert.Contains("Element type Double is not supported", e.Message);
    }
}
