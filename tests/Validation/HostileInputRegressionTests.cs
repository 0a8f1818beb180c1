using AttentionEngine.Kernels.Cpu;

namespace AttentionEngine.Tests;

/// <summary>
/// The defects of the hidden-key and hostile-input review (issue 15), each as the smallest case that showed it, on the
/// Reference and every CPU vector path (forward: tile and decode kernels; backward). Hidden keys hold NaN or infinity
/// and must change nothing; the fp32 range behaves as <see cref="ScoreSaturation"/> defines.
/// </summary>
public class HostileInputRegressionTests
{
    internal static IEnumerable<AttentionBackend> HostBackends()
    {
        yield return ReferenceBackend.Instance;
        foreach (var isa in new[] { CpuIsa.Avx512, CpuIsa.Avx2, CpuIsa.Vector128 })
        {
            var cpu = new CpuBackend(isa);
            if (cpu.IsAvailable) yield return cpu;
        }
    }

    /// <summary>[1, 1, rows, cols] tensor of <paramref name="values"/> in storage type T.</summary>
    internal static NativeTensor<T> Tensor<T>(int rows, int cols, params float[] values) where T : unmanaged
    {
        var tensor = NativeTensor<T>.Zeros(1, 1, rows, cols);
        for (int n = 0; n < values.Length; n++) tensor[0, 0, n / cols, n % cols] = ElementTypes.FromSingle<T>(values[n]);
        return tensor;
    }

    internal static float[] Forward<T>(AttentionBackend backend, NativeTensor<T> q, NativeTensor<T> k, NativeTensor<T> v, AttentionOptions options,
        float[]? lse = null) where T : unmanaged
    {
        int lq = (int)q.Lengths[2], dv = (int)v.Lengths[3];
        using var output = NativeTensor<T>.Zeros(1, (int)q.Lengths[1], lq, dv);
        using var lseTensor = NativeTensor<float>.Zeros(1, (int)q.Lengths[1], lq);
        backend.Forward<T>(q, k, v, output, options with { Lse = lseTensor });
        lseTensor.ToArray().CopyTo(lse ?? new float[lseTensor.FlattenedLength], 0);
        return Array.ConvertAll(output.ToArray(), x => ElementTypes.ToSingle(x));
    }

    [Fact]
    public void A_causally_hidden_nan_value_leaves_the_rows_that_cannot_see_it_alone()
    {
        // q = [1, 1], k = [1, 1], v = [5, NaN], causal: row 0 sees key 0 only (5); row 1 sees the NaN (NaN).
        foreach (var backend in HostBackends())
        {
            Check<float>(backend); Check<Half>(backend); Check<BFloat16>(backend);
            static void Check<T>(AttentionBackend b) where T : unmanaged
            {
                using var q = Tensor<T>(2, 1, 1, 1);
                using var k = Tensor<T>(2, 1, 1, 1);
                using var v = Tensor<T>(2, 1, 5, float.NaN);
                var output = Forward(b, q, k, v, new AttentionOptions { Mask = Mask.Causal() });
                Assert.Equal(5f, output[0]);
                Assert.True(float.IsNaN(output[1]), $"{b.Name}: garbage the row sees must stay visible, got {output[1]}");
            }
        }
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(float.NegativeInfinity)]
    public void Hidden_non_finite_values_change_nothing_under_every_mask_kind(float poison)
    {
        // Lk = 70 keys, the last 6 hidden from every row (key padding) and a band cut: tile (Lq 20) and decode (Lq 1).
        foreach (var backend in HostBackends())
        foreach (int lq in new[] { 1, 3, 20 })
        {
            CheckAllMaskKinds<float>(backend, lq, poison); CheckAllMaskKinds<Half>(backend, lq, poison); CheckAllMaskKinds<BFloat16>(backend, lq, poison);
        }

        static void CheckAllMaskKinds<T>(AttentionBackend b, int lq, float poison) where T : unmanaged
        {
            const int lk = 70, d = 8;
            using var q = TensorRandom.Create<T>(1, ValueDistribution.Normal, 1, 2, lq, d);
            using var k = TensorRandom.Create<T>(2, ValueDistribution.Normal, 1, 2, lk, d);
            using var v = TensorRandom.Create<T>(3, ValueDistribution.Normal, 1, 2, lk, d);
            using var keep = NativeTensor<bool>.Zeros(1, 1, 1, lk);
            using var bias = NativeTensor<float>.Zeros(1, 1, 1, lk);
            for (int j = 0; j < lk; j++)
            {
                keep[0, 0, 0, j] = j < lk - 6;
                bias[0, 0, 0, j] = j < lk - 6 ? 0.25f * (j % 3) : float.NegativeInfinity;
            }
            var cases = new (string Name, Func<int, int, bool> Hidden)[]
            {
                ("keep-mask padding", (i, j) => j >= lk - 6),
                ("-inf bias padding", (i, j) => j >= lk - 6),
                ("causal bottom-right", (i, j) => j > i + lk - lq),
                ("window", (i, j) => j > i + lk - lq || j < i + lk - lq - 5),
            };
            for (int m = 0; m < cases.Length; m++)
            {
                var (name, hidden) = cases[m];
                var options = m switch
                {
                    0 => new AttentionOptions { KeepMask = keep.AsReadOnlyTensorSpan() },
                    1 => new AttentionOptions { Bias = bias.AsReadOnlyTensorSpan() },
                    2 => new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight) },
                    _ => new AttentionOptions { Mask = Mask.SlidingWindow(5, 0, CausalAlignment.BottomRight) },
                };
                var clean = Forward(b, q, k, v, options);
                using var pk = NativeTensor<T>.CopyOf(k);
                using var pv = NativeTensor<T>.CopyOf(v);
                // Poison every key hidden from row 0 in K and V; compare the rows that see none of them.
                var poisoned = Enumerable.Range(0, lk).Where(j => hidden(0, j)).ToArray();
                foreach (int j in poisoned)
                for (int h = 0; h < 2; h++)
                for (int c = 0; c < d; c++)
                {
                    pk[0, h, j, c] = ElementTypes.FromSingle<T>(poison);
                    pv[0, h, j, c] = ElementTypes.FromSingle<T>(poison);
                }
                var dirty = Forward(b, q, pk, pv, options);
                for (int h = 0; h < 2; h++)
                for (int i = 0; i < lq; i++)
                {
                    if (!poisoned.All(j => hidden(i, j))) continue;
                    for (int c = 0; c < d; c++)
                    {
                        int n = (h * lq + i) * d + c;
                        Assert.True(clean[n].Equals(dirty[n]),
                            $"{b.Name} {ElementTypes.ShortName<T>()} {name} Lq {lq}: row (h {h}, i {i}) col {c} {clean[n]} -> {dirty[n]} after poisoning hidden keys with {poison}");
                    }
                }
            }
        }
    }

    [Fact]
    public void A_minus_infinity_bias_hides_a_key_whose_k_is_nan()
    {
        foreach (var backend in HostBackends())
        {
            Check<float>(backend); Check<Half>(backend); Check<BFloat16>(backend);
        }

        static void Check<T>(AttentionBackend b) where T : unmanaged
        {
            foreach (int lq in new[] { 1, 20 })
            {
                using var q = TensorRandom.Create<T>(4, ValueDistribution.Normal, 1, 1, lq, 4);
                using var k = Tensor<T>(3, 4, 1, 0, 0, 1, float.NaN, float.NaN, float.NaN, float.NaN, 0, 1, 1, 0);
                using var v = Tensor<T>(3, 2, 1, 2, float.NaN, float.PositiveInfinity, 3, 4);
                using var bias = NativeTensor<float>.Zeros(1, 3);
                bias[0, 1] = float.NegativeInfinity;
                var lse = new float[lq];
                var output = Forward(b, q, k, v, new AttentionOptions { Bias = bias.AsReadOnlyTensorSpan() }, lse);
                Assert.All(output, x => Assert.True(float.IsFinite(x), $"{b.Name} {ElementTypes.ShortName<T>()}: {x}"));
                Assert.All(lse, x => Assert.True(float.IsFinite(x), $"{b.Name} {ElementTypes.ShortName<T>()}: LSE {x}"));
            }
        }
    }

    [Fact]
    public void A_nan_or_infinite_bias_at_a_pair_a_mask_hides_is_ignored()
    {
        foreach (var backend in HostBackends())
        {
            Check<float>(backend); Check<Half>(backend); Check<BFloat16>(backend);
        }

        static void Check<T>(AttentionBackend b) where T : unmanaged
        {
            foreach (int lq in new[] { 2, 20 })
            {
                using var q = TensorRandom.Create<T>(4, ValueDistribution.Normal, 1, 1, lq, 4);
                using var k = TensorRandom.Create<T>(5, ValueDistribution.Normal, 1, 1, lq, 4);
                using var v = TensorRandom.Create<T>(6, ValueDistribution.Normal, 1, 1, lq, 4);
                using var bias = NativeTensor<float>.Zeros(lq, lq);
                using var keep = NativeTensor<bool>.Zeros(lq, lq);
                for (int i = 0; i < lq; i++)
                for (int j = 0; j < lq; j++)
                {
                    // Above the diagonal (causally hidden) and at keep-mask false: NaN and +inf.
                    keep[i, j] = (i + j) % 3 != 1 || j == 0;
                    bias[i, j] = j > i ? float.NaN : !keep[i, j] ? float.PositiveInfinity : 0.5f;
                }
                var output = Forward(b, q, k, v, new AttentionOptions { Mask = Mask.Causal(), Bias = bias.AsReadOnlyTensorSpan(), KeepMask = keep.AsReadOnlyTensorSpan() });
                Assert.All(output, x => Assert.True(float.IsFinite(x), $"{b.Name} {ElementTypes.ShortName<T>()}: {x}"));
            }
        }
    }

    [Fact]
    public void A_scale_of_float_max_saturates_scores_instead_of_giving_nan()
    {
        // Scores 1·MaxValue and 2·MaxValue both saturate to MaxValue: the two keys share the weight equally.
        foreach (var backend in HostBackends())
        foreach (int lq in new[] { 1, 20 })
        {
            using var q = NativeTensor<float>.Zeros(1, 1, lq, 1);
            q.Fill(1);
            using var k = Tensor<float>(3, 1, 1, 2, -1);
            using var v = Tensor<float>(3, 1, 4, 6, 100);
            var lse = new float[lq];
            var output = Forward(backend, q, k, v, new AttentionOptions { Scale = float.MaxValue }, lse);
            Assert.All(output, x => Assert.Equal(5f, x));
            Assert.All(lse, x => Assert.Equal(float.MaxValue, x));
        }
    }

    [Fact]
    public void Values_near_the_float_range_average_without_overflow()
    {
        // The exact outputs are averages of values ≤ 3e38: finite, although Σ p·v overflows fp32.
        foreach (var backend in HostBackends())
        foreach (int lq in new[] { 1, 20 })
        foreach (int lk in new[] { 4, 300, 2500 })
        {
            // Column 0: 3e38 everywhere; column 1: -3e38 and 1 alternating; column 2: -3e38 everywhere (a negative
            // magnitude alone must be recognised as huge too).
            using var q = NativeTensor<float>.Zeros(1, 1, lq, 3);
            using var k = NativeTensor<float>.Zeros(1, 1, lk, 3);
            using var v = NativeTensor<float>.Zeros(1, 1, lk, 3);
            for (int j = 0; j < lk; j++) { v[0, 0, j, 0] = 3e38f; v[0, 0, j, 1] = j % 2 == 0 ? -3e38f : 1f; v[0, 0, j, 2] = -3e38f; }
            var output = Forward(backend, q, k, v, new AttentionOptions());
            for (int i = 0; i < lq; i++)
            {
                Assert.True(Math.Abs(output[3 * i] - 3e38f) <= 3e38f * 2e-4f, $"{backend.Name} Lq {lq} Lk {lk}: {output[3 * i]}");
                double expected = (lk + 1) / 2 * -3e38 / lk + lk / 2 * 1.0 / lk;
                Assert.True(Math.Abs(output[3 * i + 1] - expected) <= 3e38 * 2e-4, $"{backend.Name} Lq {lq} Lk {lk}: {output[3 * i + 1]} vs {expected}");
                Assert.True(Math.Abs(output[3 * i + 2] + 3e38f) <= 3e38f * 2e-4f, $"{backend.Name} Lq {lq} Lk {lk}: {output[3 * i + 2]}");
            }
        }
    }

    /// <summary>dQ, dK, dV (and dBias when a bias is given) of one call, after its forward on the same backend.</summary>
    internal static (float[] DQ, float[] DK, float[] DV, float[] DBias) Backward(AttentionBackend backend, NativeTensor<float> q, NativeTensor<float> k,
        NativeTensor<float> v, NativeTensor<float> dOutput, AttentionOptions options, int? threads = null)
    {
        var s = new[] { (int)q.Lengths[0], (int)q.Lengths[1], (int)q.Lengths[2] };
        using var output = NativeTensor<float>.Zeros(s[0], s[1], s[2], (int)v.Lengths[3]);
        using var lse = NativeTensor<float>.Zeros(s[0], s[1], s[2]);
        backend.Forward<float>(q, k, v, output, options with { Lse = lse });
        using var dq = NativeTensor<float>.Zeros(q.Lengths);
        using var dk = NativeTensor<float>.Zeros(k.Lengths);
        using var dv = NativeTensor<float>.Zeros(v.Lengths);
        using var dBias = options.Bias.IsEmpty ? null : NativeTensor<float>.Zeros(options.Bias.Lengths);
        backend.Backward<float>(q, k, v, output, lse, dOutput, dq, dk, dv, options with { MaxDegreeOfParallelism = threads },
            dBias is null ? default : dBias.AsTensorSpan());
        return (dq.ToArray(), dk.ToArray(), dv.ToArray(), dBias?.ToArray() ?? []);
    }

    [Fact]
    public void A_finite_padding_bias_on_every_key_gives_the_uniform_gradients()
    {
        // Lq 1, Lk 2, D 1, scale 1, q = [0], k = [1, 2], v = [3, 5], dO = [1], bias [MinValue, MinValue]: P = [½, ½].
        foreach (var backend in HostBackends())
        foreach (float padding in new[] { float.MinValue, -1e30f })
        {
            using var q = Tensor<float>(1, 1, 0);
            using var k = Tensor<float>(2, 1, 1, 2);
            using var v = Tensor<float>(2, 1, 3, 5);
            using var dO = Tensor<float>(1, 1, 1);
            using var bias = NativeTensor<float>.Zeros(1, 1, 1, 2);
            bias.Fill(padding);
            var (dq, dk, dv, dBias) = Backward(backend, q, k, v, dO, new AttentionOptions { Scale = 1, Bias = bias.AsReadOnlyTensorSpan() });
            Assert.Equal(0.5f, dq[0], 1e-6f);
            Assert.Equal([0.5f, 0.5f], dv);
            Assert.Equal(-0.5f, dBias[0], 1e-6f);
            Assert.Equal(0.5f, dBias[1], 1e-6f);
            Assert.All(dk, x => Assert.Equal(0f, x));
        }
    }

    [Fact]
    public void Padding_rows_with_a_huge_finite_bias_match_the_reference_gradients()
    {
        // [1, 2, 40, 60]: rows 30.. fully padded with -1e30 (Hugging Face style), the rest with a key-padding -1e30.
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, 40, 60);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 2, 60, 60);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 2, 60, 60);
        using var dO = TensorRandom.Create<float>(4, ValueDistribution.Normal, 1, 2, 40, 60);
        using var bias = NativeTensor<float>.Zeros(1, 1, 40, 60);
        for (int i = 0; i < 40; i++)
        for (int j = 0; j < 60; j++)
            bias[0, 0, i, j] = i >= 30 || j >= 50 ? -1e30f : 0;
        var options = new AttentionOptions { Bias = bias.AsReadOnlyTensorSpan() };
        var expected = Backward(ReferenceBackend.Instance, q, k, v, dO, options);
        foreach (var backend in HostBackends().Skip(1))
        {
            var actual = Backward(backend, q, k, v, dO, options);
            AssertClose(expected.DQ, actual.DQ, $"{backend.Name} dQ");
            AssertClose(expected.DK, actual.DK, $"{backend.Name} dK");
            AssertClose(expected.DV, actual.DV, $"{backend.Name} dV");
            AssertClose(expected.DBias, actual.DBias, $"{backend.Name} dBias");
        }
    }

    [Theory]
    [InlineData(float.NaN)]
    [InlineData(float.PositiveInfinity)]
    [InlineData(3e38f)]
    public void Hidden_non_finite_keys_and_values_leave_the_gradients_alone(float poison)
    {
        // Keys 50.. hidden from every row by a keep-mask (padded KV-cache slots): poisoned K and V change no gradient
        // of the other keys or of any query, on the single-pass (many heads) and two-phase (one head) schedules.
        foreach (var backend in HostBackends())
        foreach (int heads in new[] { 1, 8 })
        foreach (bool causal in new[] { false, true })
        {
            using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, heads, 70, 16);
            using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, heads, 70, 16);
            using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, heads, 70, 16);
            using var dO = TensorRandom.Create<float>(4, ValueDistribution.Normal, 1, heads, 70, 16);
            using var keep = NativeTensor<bool>.Zeros(1, 1, 1, 70);
            for (int j = 0; j < 50; j++) keep[0, 0, 0, j] = true;
            var options = new AttentionOptions { KeepMask = keep.AsReadOnlyTensorSpan(), Mask = causal ? Mask.Causal() : null };
            var clean = Backward(backend, q, k, v, dO, options, threads: 2);
            for (int h = 0; h < heads; h++)
            for (int j = 50; j < 70; j++)
            for (int c = 0; c < 16; c++)
            {
                k[0, h, j, c] = poison;
                v[0, h, j, c] = poison;
            }
            var dirty = Backward(backend, q, k, v, dO, options, threads: 2);
            string name = $"{backend.Name} heads {heads} causal {causal} poison {poison}";
            Assert.True(clean.DQ.SequenceEqual(dirty.DQ), $"{name}: dQ changed");
            Assert.True(clean.DV.SequenceEqual(dirty.DV), $"{name}: dV changed");
            Assert.True(clean.DK.SequenceEqual(dirty.DK), $"{name}: dK changed");
            Assert.All(dirty.DK, x => Assert.True(float.IsFinite(x), name));
        }
    }

    [Fact]
    public void A_nan_key_hidden_from_every_query_gives_the_reference_gradients()
    {
        // Lq 1, Lk 3, D 1, q = [1], keep [T, T, F], k = [1, 2, NaN]: dQ = 0.393224 and zeros for the hidden key.
        foreach (var backend in HostBackends())
        {
            using var q = Tensor<float>(1, 1, 1);
            using var k = Tensor<float>(3, 1, 1, 2, float.NaN);
            using var v = Tensor<float>(3, 1, 1, -1, 4);
            using var dO = Tensor<float>(1, 1, 1);
            using var keep = NativeTensor<bool>.Zeros(3);
            keep[0] = true; keep[1] = true;
            var (dq, dk, dv, _) = Backward(backend, q, k, v, dO, new AttentionOptions { Scale = 1, KeepMask = keep.AsReadOnlyTensorSpan() });
            var expected = Backward(ReferenceBackend.Instance, q, k, v, dO, new AttentionOptions { Scale = 1, KeepMask = keep.AsReadOnlyTensorSpan() });
            Assert.True(float.IsFinite(dq[0]), backend.Name);
            Assert.Equal(expected.DQ[0], dq[0], 1e-5f);
            Assert.True(dk[2] == 0 && dv[2] == 0, $"{backend.Name}: dK {dk[2]}, dV {dv[2]} of the hidden key");
        }
    }

    private static void AssertClose(float[] expected, float[] actual, string name)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = expected.Select(Math.Abs).DefaultIfEmpty(0).Max();
        for (int n = 0; n < expected.Length; n++)
            Assert.True(Math.Abs(expected[n] - actual[n]) <= 1e-4 * Math.Max(1, scale), $"{name}[{n}]: {actual[n]} vs reference {expected[n]}");
    }

    /// <summary>A score functor that runs a whole attention call of its own every time it is asked for a score.</summary>
    private readonly struct ReentrantScore(NativeTensor<float> q, NativeTensor<float> output, float[] expected, bool nested) : IScoreMod
    {
        public float Apply(float score, int batch, int head, int query, int key)
        {
            if (!nested) return score;
            CpuBackend.Default.Forward<float>(q, q, q, output, new AttentionOptions { Mask = Mask.Causal() });
            if (!output.ToArray().SequenceEqual(expected)) throw new InvalidOperationException("the nested call computed something else");
            return score;
        }

        public float Derivative(float score, int batch, int head, int query, int key) => 1;
    }

    [Fact]
    public void A_score_functor_that_calls_attention_on_the_same_thread_leaves_the_outer_call_intact()
    {
        using var inner = TensorRandom.Create<float>(7, ValueDistribution.Normal, 1, 2, 70, 8);
        using var innerOutput = NativeTensor<float>.Zeros(1, 2, 70, 8);
        CpuBackend.Default.Forward<float>(inner, inner, inner, innerOutput, new AttentionOptions { Mask = Mask.Causal() });
        var expected = innerOutput.ToArray();
        foreach (int lq in new[] { 2, 40 })
        foreach (int threads in new[] { 1, 2 })
        {
            using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, 1, 2, lq, 16);
            using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, 1, 2, 90, 16);
            using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 2, 90, 16);
            float[] Run(bool nested)
            {
                using var output = NativeTensor<float>.Zeros(1, 2, lq, 16);
                FlexAttention.WithScore(new ReentrantScore(inner, innerOutput, expected, nested), CpuBackend.Default)
                    .Forward<float>(q, k, v, output, new AttentionOptions { MaxDegreeOfParallelism = threads });
                return output.ToArray();
            }
            Assert.Equal(Run(nested: false), Run(nested: true));
        }
    }
    /// <summary>
    /// A huge value one row sees must not rescale another row's terms: the guarded pass once switched the whole tile
    /// to accumulation at 2^-32, which pushed a neighbouring row's tiny terms (values near 1e-30) into the subnormal
    /// range, so poisoning a key that row cannot see changed its last bits. Row 0 sees key 0 (V = 1e37 or NaN), rows
    /// 1..11 do not; their outputs must keep every bit. Tile kernel (12 rows) and decode kernel (2 rows).
    /// </summary>
    [Theory]
    [InlineData(12)]
    [InlineData(2)]
    public void A_huge_value_one_row_sees_leaves_the_tiny_outputs_of_other_rows_bitwise_alone(int rows)
    {
        foreach (var backend in HostBackends()) CheckTinyRowsBesideHugeValues(backend, rows);
    }

    /// <summary>The check of the test above on one backend (the CUDA tests run it on theirs, in their own collection).</summary>
    internal static void CheckTinyRowsBesideHugeValues(AttentionBackend backend, int rows)
    {
        const int keys = 40, d = 4, dv = 8;
        using var q = NativeTensor<float>.Zeros(1, 1, rows, d);
        using var k = NativeTensor<float>.Zeros(1, 1, keys, d);
        using var keep = NativeTensor<bool>.Zeros(1, 1, rows, keys);
        using var calm = NativeTensor<float>.Zeros(1, 1, keys, dv);
        var random = new Random(3);
        for (int i = 0; i < rows; i++)
        for (int c = 0; c < d; c++) q[0, 0, i, c] = (float)random.NextDouble();
        for (int j = 0; j < keys; j++)
        for (int c = 0; c < d; c++) k[0, 0, j, c] = (float)random.NextDouble();
        for (int j = 0; j < keys; j++)
        for (int c = 0; c < dv; c++) calm[0, 0, j, c] = (float)(random.NextDouble() * 3e-30);
        for (int i = 0; i < rows; i++)
        for (int j = 0; j < keys; j++) keep[0, 0, i, j] = j != 0 || i == 0;
        foreach (float poison in new[] { 1e37f, float.NaN, float.PositiveInfinity })
        {
            using var hostile = NativeTensor<float>.CopyOf(calm);
            for (int c = 0; c < dv; c++) hostile[0, 0, 0, c] = poison;
            var options = new AttentionOptions { KeepMask = keep };
            var before = Forward(backend, q, k, calm, options);
            var after = Forward(backend, q, k, hostile, options);
            for (int n = dv; n < rows * dv; n++)
                Assert.True(before[n].Equals(after[n]), $"{backend.Name} V[0] = {poison}: row {n / dv} output[{n % dv}] {before[n]:R} became {after[n]:R}");
        }
    }

    [Fact]
    public void Visible_fp16_infinities_and_nans_in_decode_blocks_read_in_place_reach_the_output_as_the_reference_says()
    {
        // Decode reads contiguous fp16 rows of whole vectors in place, and blocks with no infinity or NaN take a widening
        // without the special-value select: a block holding one must not. Key 5's K holds a NaN (every row sees it: NaN
        // rows), key 70's V an infinity (second block), for one row per KV head (MHA) and four (GQA), widths of 1-4 vectors.
        foreach (var backend in HostBackends())
        foreach (int d in new[] { 16, 32, 64 })
        foreach (int heads in new[] { 2, 8 })
        foreach (bool nanKey in new[] { false, true })
        {
            const int lk = 90;
            using var q = TensorRandom.Create<Half>(1, ValueDistribution.Normal, 1, heads, 1, d);
            using var k = TensorRandom.Create<Half>(2, ValueDistribution.Normal, 1, 2, lk, d);
            using var v = TensorRandom.Create<Half>(3, ValueDistribution.Normal, 1, 2, lk, d);
            if (nanKey) k[0, 1, 5, d / 2] = Half.NaN;
            v[0, 0, 70, d - 1] = Half.PositiveInfinity;
            var expected = Forward(ReferenceBackend.Instance, q, k, v, default);
            var actual = Forward(backend, q, k, v, default);
            for (int n = 0; n < expected.Length; n++)
            {
                string where = $"{backend.Name} D{d} H{heads}: output[{n}]";
                if (!float.IsFinite(expected[n])) Assert.True(expected[n].Equals(actual[n]), $"{where} is {actual[n]:R}, the Reference's {expected[n]:R}");
                else Assert.True(float.IsFinite(actual[n]) && Math.Abs(actual[n] - expected[n]) <= 1e-2f * (1 + Math.Abs(expected[n])),
                    $"{where} is {actual[n]:R}, the Reference's {expected[n]:R}");
            }
            Assert.Contains(expected, x => float.IsPositiveInfinity(x));
            if (nanKey) Assert.Contains(expected, float.IsNaN);
        }
    }
}
