using AttentionEngine.Testing;

namespace AttentionEngine.Tests.Dropout;

/// <summary>What dropout promises beside the mask itself: its arguments, p = 0, the LSE, the weights either side of it, garbage in dropped keys, determinism, and refusals.</summary>
public class DropoutBehaviourTests
{
    [Theory]
    [InlineData(double.NaN)]
    [InlineData(-0.1)]
    [InlineData(1.0)]
    [InlineData(1.5)]
    [InlineData(double.PositiveInfinity)]
    public void A_probability_outside_zero_to_one_is_refused_by_name(double p)
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => new AttentionDropout(p, 1));
        Assert.Equal("probability", error.ParamName);
        Assert.Contains("[0, 1)", error.Message);
    }

    [Fact]
    public void IsKept_refuses_indices_outside_the_call()
    {
        var dropout = new AttentionDropout(0.5, 1);
        Assert.Equal("head", Assert.Throws<ArgumentOutOfRangeException>(() => dropout.IsKept(0, 4, 0, 0, queryHeads: 4)).ParamName);
        Assert.Equal("key", Assert.Throws<ArgumentOutOfRangeException>(() => dropout.IsKept(0, 0, 0, -1, queryHeads: 4)).ParamName);
        Assert.True(default(AttentionDropout).IsKept(3, 1, 2, 9, queryHeads: 2));
    }

    private static (NativeTensor<float> Q, NativeTensor<float> K, NativeTensor<float> V) Inputs(int lq = 50, int lk = 90) =>
        (TensorRandom.Create<float>(11, ValueDistribution.Normal, 2, 4, lq, 32),
         TensorRandom.Create<float>(12, ValueDistribution.Normal, 2, 2, lk, 32),
         TensorRandom.Create<float>(13, ValueDistribution.Normal, 2, 2, lk, 24));

    [Fact]
    public void Probability_zero_is_the_no_dropout_path_bit_for_bit_and_leaves_the_lse_alone_at_any_p()
    {
        var (q, k, v) = Inputs();
        using (q) using (k) using (v)
        using (var plain = NativeTensor<float>.Zeros(2, 4, 50, 24))
        using (var zero = NativeTensor<float>.Zeros(2, 4, 50, 24))
        using (var dropped = NativeTensor<float>.Zeros(2, 4, 50, 24))
        using (var plainLse = NativeTensor<float>.Zeros(2, 4, 50))
        using (var droppedLse = NativeTensor<float>.Zeros(2, 4, 50))
        {
            Attention.Forward<float>(q, k, v, plain, new AttentionOptions { Lse = plainLse, Mask = Mask.Causal() });
            Attention.Forward<float>(q, k, v, zero, new AttentionOptions { Mask = Mask.Causal(), Dropout = new AttentionDropout(0, 77, 5) });
            Attention.Forward<float>(q, k, v, dropped, new AttentionOptions { Lse = droppedLse, Mask = Mask.Causal(), Dropout = new AttentionDropout(0.5, 77, 5) });
            Assert.Equal(plain.ToArray(), zero.ToArray());
            Assert.Equal(plainLse.ToArray(), droppedLse.ToArray());
            Assert.NotEqual(plain.ToArray(), dropped.ToArray());
        }
    }

    [Fact]
    public void Weights_show_the_softmax_by_default_and_the_dropped_matrix_when_asked()
    {
        var (q, k, v) = Inputs(lq: 20, lk: 30);
        using (q) using (k) using (v)
        using (var output = NativeTensor<float>.Zeros(2, 4, 20, 24))
        using (var before = NativeTensor<float>.Zeros(2, 4, 20, 30))
        using (var after = NativeTensor<float>.Zeros(2, 4, 20, 30))
        {
            var dropout = new AttentionDropout(0.25, 3, 1);
            Attention.Forward<float>(q, k, v, output, new AttentionOptions { Weights = before, Dropout = dropout });
            Attention.Forward<float>(q, k, v, output, new AttentionOptions { Weights = after, Dropout = dropout with { InWeights = true } });
            for (int b = 0; b < 2; b++)
            for (int h = 0; h < 4; h++)
            for (int i = 0; i < 20; i++)
            {
                double sum = 0;
                for (int j = 0; j < 30; j++)
                {
                    sum += before[b, h, i, j];
                    float expected = dropout.IsKept(b, h, i, j, 4) ? before[b, h, i, j] * dropout.KeptScale : 0f;
                    Assert.Equal(expected, after[b, h, i, j], 1e-6f);
                }
                Assert.Equal(1.0, sum, 1e-5);
            }
        }
    }

    [Fact]
    public void Garbage_in_a_dropped_keys_value_never_reaches_the_rows_that_drop_it()
    {
        // One key, poisoned with NaN in V: rows that drop it keep every bit; rows that keep it see NaN (garbage in a
        // visible, kept position is not hidden).
        var (q, k, v) = Inputs(lq: 40, lk: 70);
        using (q) using (k) using (v)
        using (var poisoned = NativeTensor<float>.CopyOf(v))
        using (var clean = NativeTensor<float>.Zeros(2, 4, 40, 24))
        using (var dirty = NativeTensor<float>.Zeros(2, 4, 40, 24))
        {
            const int key = 33;
            for (int c = 0; c < 24; c++) poisoned[1, 0, key, c] = float.NaN;
            var dropout = new AttentionDropout(0.5, 99, 2);
            foreach (var backend in new AttentionBackend[] { CpuBackend.Default, Attention.Using(Backend.Reference) })
            {
                backend.Forward<float>(q, k, v, clean, new AttentionOptions { Dropout = dropout });
                backend.Forward<float>(q, k, poisoned, dirty, new AttentionOptions { Dropout = dropout });
                int dropping = 0;
                for (int b = 0; b < 2; b++)
                for (int h = 0; h < 4; h++)
                for (int i = 0; i < 40; i++)
                {
                    bool sees = b == 1 && h / 2 == 0 && dropout.IsKept(b, h, i, key, 4);
                    dropping += b == 1 && h / 2 == 0 && !sees ? 1 : 0;
                    for (int c = 0; c < 24; c++)
                        if (sees) Assert.True(float.IsNaN(dirty[b, h, i, c]), $"{backend.Name}: row ({b}, {h}, {i}) keeps the NaN key but output is {dirty[b, h, i, c]}");
                        else Assert.Equal(clean[b, h, i, c], dirty[b, h, i, c]);
                }
                Assert.InRange(dropping, 20, 60);
            }
        }
    }

    [Fact]
    public void Forward_and_backward_with_dropout_are_bitwise_identical_for_any_thread_count()
    {
        using var sharing = AttentionEngine.Kernels.Cpu.Threading.CpuWorkerPool.ShareEveryCall(); // small problems too run on every thread count
        var (q, k, v) = Inputs(lq: 130, lk: 150);
        using (q) using (k) using (v)
        using (var dOutput = TensorRandom.Create<float>(14, ValueDistribution.Normal, 2, 4, 130, 24))
        {
            float[][] Run(int threads)
            {
                using var output = NativeTensor<float>.Zeros(2, 4, 130, 24);
                using var lse = NativeTensor<float>.Zeros(2, 4, 130);
                using var dq = NativeTensor<float>.Zeros(2, 4, 130, 32);
                using var dk = NativeTensor<float>.Zeros(2, 2, 150, 32);
                using var dv = NativeTensor<float>.Zeros(2, 2, 150, 24);
                var options = new AttentionOptions { Lse = lse, Dropout = new AttentionDropout(0.1, 5, 6), Mask = Mask.Causal(), MaxDegreeOfParallelism = threads };
                CpuBackend.Default.Forward<float>(q, k, v, output, options);
                CpuBackend.Default.Backward<float>(q, k, v, output, lse, dOutput, dq, dk, dv, options);
                return [output.ToArray(), dq.ToArray(), dk.ToArray(), dv.ToArray()];
            }
            var one = Run(1);
            var two = Run(2);
            for (int n = 0; n < one.Length; n++) Assert.Equal(one[n], two[n]);
        }
    }

    /// <summary>A backend that knows nothing of dropout: it must never be handed a call with it.</summary>
    private sealed class PlainBackend : AttentionBackend
    {
        public override string Name => "PlainDropoutTest";
        protected internal override void Execute<T, TMask, TScore>(scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod) =>
            throw new InvalidOperationException("must not run");
    }

    [Fact]
    public void Backends_and_entry_points_without_dropout_refuse_it_instead_of_ignoring_it()
    {
        var (q, k, v) = Inputs(lq: 4, lk: 6);
        using (q) using (k) using (v)
        using (var output = NativeTensor<float>.Zeros(2, 4, 4, 24))
        {
            var dropout = new AttentionDropout(0.2, 1);
            var refused = Assert.Throws<NotSupportedException>(() => new PlainBackend().Forward<float>(q, k, v, output, new AttentionOptions { Dropout = dropout }));
            Assert.Contains("options.Dropout", refused.Message);

            using var packedQ = NativeTensor<float>.Zeros(4, 2, 8);
            using var packedK = NativeTensor<float>.Zeros(6, 2, 8);
            using var packedOut = NativeTensor<float>.Zeros(4, 2, 8);
            var packed = Assert.Throws<NotSupportedException>(() =>
                PackedAttention.Forward<float>(packedQ, packedK, packedK, packedOut, [0, 4], [0, 6], new AttentionOptions { Dropout = dropout }));
            Assert.Contains("options.Dropout", packed.Message);
        }
    }
}
