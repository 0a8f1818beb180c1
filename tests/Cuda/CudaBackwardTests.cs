using AttentionEngine.Kernels.Cuda;
using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// The CUDA backward (kernels/Cuda/flash_backward.cu) against the float64 backward oracle under the gradient tolerance
/// rule, over generated problems (every mask kind, block masks, GQA, Lq ≠ Lk, Dv ≠ D, strides, bias gradients of
/// every broadcast shape, dropout), with hostile values and poisoned hidden keys, and run to run bit for bit. On a GPU
/// the problems are the CPU backward suite's; on the emulator smaller ones; without either the tests skip.
/// </summary>
[Collection(nameof(CudaTests))]
public class CudaBackwardTests
{
    // The emulator runs the three kernels thread by thread (see CudaBackendTests.Emulated): small problems only.
    // Head dimensions up to 128 (four variants per element type); Every_head_dimension_runs_its_variant covers D = 256.
    private static readonly ProblemLimits Emulated = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 150, MaxHeadDim = 128, MaxCost = 1.5e6, RangeEdge = false };

    private static ProblemLimits Limits(bool dropout) =>
        (CudaEmulation.Active ? Emulated : CpuBackwardProperties.Limits) with { Dropout = dropout };

    private static void Verify<T>(int gpuCases, int emulatedCases, bool dropout = false) where T : unmanaged
    {
        var backend = CudaBackendTests.Gpu();
        Prop.ForAll(ShrinkBudget.Capped(AttentionGen.Arbitrary(Limits(dropout))), (ProblemSpec spec) =>
        {
            using var c = new CpuBackwardProperties.BackwardCase<T>(spec, backend);
            CpuBackwardProperties.CheckAgainstOracle(backend, c, spec);
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(CudaEmulation.Active ? emulatedCases : gpuCases));
    }

    [Fact] public void F16_gradients_match_the_oracle() => Verify<Half>(120, 10);
    [Fact] public void Bf16_gradients_match_the_oracle() => Verify<BFloat16>(120, 10);
    [Fact] public void F32_as_3xtf32_gradients_match_the_oracle() => Verify<float>(120, 10);
    [Fact] public void Dropout_gradients_match_the_oracle_with_the_forwards_mask() => Verify<Half>(60, 6, dropout: true);

    [Fact]
    public void Every_head_dimension_runs_its_variant()
    {
        var backend = CudaBackendTests.Gpu();
        foreach (int d in new[] { 1, 64, 80, 128, 160, 256 }) // every native variant, exact and zero-padded, with Dv != D
        {
            var spec = new ProblemSpec
            {
                QueryHeads = 2, KvHeads = 1, QueryLength = 21, KeyLength = 70, HeadDim = d, ValueDim = Math.Max(1, d - 17),
                Bias = BiasKind.PerHead, Causal = CausalAlignment.BottomRight, DataSeed = d,
            };
            CheckOne<Half>(backend, spec, $"D = {d}");
            CheckOne<BFloat16>(backend, spec, $"D = {d}");
            CheckOne<float>(backend, spec, $"D = {d}");
        }
    }

    /// <summary>
    /// Hostile values (Large, Outliers) with masks that hide keys, then every key hidden from every row of its KV head
    /// poisoned with NaN, ±infinity or ±1e30 and every masked bias entry with NaN or +infinity: dQ keeps every bit, dK
    /// and dV of the other keys too, and the poisoned keys' gradients are 0 (the Cpu backward's hostile check).
    /// </summary>
    [Fact]
    public void Poisoned_hidden_keys_and_hostile_values_change_no_gradient_bit()
    {
        var backend = CudaBackendTests.Gpu();
        var limits = CudaEmulation.Active ? Emulated with { MaxLength = 90, MaxHeadDim = 64, MaxCost = 4e5 } : HostileInputSuite.Gradients;
        int n = 0, cases = CudaEmulation.Active ? 6 : 60;
        foreach (var drawn in AttentionGen.Sample(cases, seed: 221, limits))
            CpuBackwardProperties.CheckHostileBackward<Half>(HostileInputSuite.ForGradients(HostileInputSuite.Hostile(drawn, n++), drawn), backend);
        foreach (var drawn in AttentionGen.Sample(cases / 2, seed: 222, limits))
            CpuBackwardProperties.CheckHostileBackward<float>(HostileInputSuite.ForGradients(HostileInputSuite.Hostile(drawn, n++), drawn), backend);
    }

    /// <summary>
    /// A row whose query or incoming gradient holds NaN or infinity makes its own gradients and those of the keys it sees
    /// non-finite, and nothing else; likewise a key whose K holds NaN reaches only the rows that see it. The keys (rows)
    /// they do not reach share 16-row fragments with ones they do, and keep the bits of a clean run. Tensor cores compute
    /// 0 · NaN = NaN, so the kernels zero such values in the operands and add them back only where the weight is not 0.
    /// </summary>
    [Theory]
    [InlineData("f16")]
    [InlineData("f32")]
    public void A_non_finite_row_or_key_reaches_only_what_sees_it(string element)
    {
        var backend = CudaBackendTests.Gpu();
        if (element == "f16") CheckNonFiniteRows<Half>(backend);
        else CheckNonFiniteRows<float>(backend);
    }

    private static void CheckNonFiniteRows<T>(AttentionBackend backend) where T : unmanaged
    {
        // Causal from the top left: row i sees keys 0 … i. Head 0's query row 50 and head 1's dO row 50 are poisoned:
        // keys 51 … 69 (13 of them in the 16-key fragments of keys 48 … 63, beside keys row 50 sees) must not move, nor
        // any other row's dQ. Then key 60's K: rows 48 … 59, in the fragment of rows 48 … 63 with rows that see it, keep their dQ.
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 2, KvHeads = 1, QueryLength = 70, KeyLength = 70, HeadDim = 40, ValueDim = 24,
            Causal = CausalAlignment.TopLeft, DataSeed = 4242,
        };
        using var clean = new CpuBackwardProperties.BackwardCase<T>(spec, backend);
        var s = clean.Problem.Shape;
        var (cleanQ, cleanK, cleanV) = Gradients(backend, clean, (q, k, dO) => { });
        var (dq, dk, dv) = Gradients(backend, clean, (q, k, dO) =>
        {
            for (int c = 0; c < s.HeadDim; c++) q[0, 0, 50, c] = ElementTypes.FromSingle<T>(c % 2 == 0 ? float.NaN : 1f);
            dO[0, 1, 50, 3] = ElementTypes.FromSingle<T>(float.PositiveInfinity);
        });
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        for (int c = 0; c < s.HeadDim; c++)
        {
            double got = dq[0, h, i, c], expected = cleanQ[0, h, i, c];
            if (i == 50) Assert.False(double.IsFinite(got), $"dQ[{h}, {i}, {c}] = {got}: the poisoned row's own gradient");
            else Assert.True(expected.Equals(got), $"dQ[{h}, {i}, {c}]: {got} vs {expected}");
        }
        for (int j = 0; j < s.KeyLength; j++)
        {
            for (int c = 0; c < s.HeadDim; c++)
            {
                double got = dk[0, 0, j, c], expected = cleanK[0, 0, j, c];
                if (j > 50) Assert.True(expected.Equals(got), $"dK[{j}, {c}]: {got} vs {expected}");
                else Assert.False(double.IsFinite(got), $"dK[{j}, {c}] = {got}: a key the poisoned rows see");
            }
            for (int c = 0; c < s.ValueDim; c++)
                if (j > 50) Assert.True(cleanV[0, 0, j, c].Equals(dv[0, 0, j, c]), $"dV[{j}, {c}]: {dv[0, 0, j, c]} vs {cleanV[0, 0, j, c]}");
        }

        var (keyQ, _, _) = Gradients(backend, clean, (q, k, dO) => k[0, 0, 60, 7] = ElementTypes.FromSingle<T>(float.NaN));
        for (int h = 0; h < s.QueryHeads; h++)
        for (int i = 0; i < s.QueryLength; i++)
        for (int c = 0; c < s.HeadDim; c++)
        {
            double got = keyQ[0, h, i, c], expected = cleanQ[0, h, i, c];
            if (i >= 60) Assert.False(double.IsFinite(got), $"dQ[{h}, {i}, {c}] = {got}: a row that sees the poisoned key");
            else Assert.True(expected.Equals(got), $"dQ[{h}, {i}, {c}]: {got} vs {expected}");
        }
    }

    /// <summary>The backend's forward and backward on copies of the case's Q, K and dO after <paramref name="poison"/>: dQ, dK, dV.</summary>
    private static (double[,,,] DQ, double[,,,] DK, double[,,,] DV) Gradients<T>(AttentionBackend backend, CpuBackwardProperties.BackwardCase<T> c,
        Action<NativeTensor<T>, NativeTensor<T>, NativeTensor<T>> poison) where T : unmanaged
    {
        var problem = c.Problem;
        var s = problem.Shape;
        using var q = NativeTensor<T>.CopyOf(problem.Q);
        using var k = NativeTensor<T>.CopyOf(problem.K);
        using var dO = NativeTensor<T>.CopyOf(c.DOutput);
        poison(q, k, dO);
        using var output = problem.AllocateOutput();
        using var lse = NativeTensor<float>.Zeros(s.Batch, s.QueryHeads, s.QueryLength);
        backend.Forward<T>(q, k, problem.V, output, problem.Options(lse.AsTensorSpan()));
        var (dq, dk, dv) = c.Destinations();
        using (dq) using (dk) using (dv)
        {
            backend.Backward<T>(q, k, problem.V, output, lse, dO, dq, dk, dv, problem.Options());
            return (ToDouble(dq), ToDouble(dk), ToDouble(dv));
        }
    }

    private static double[,,,] ToDouble<T>(NativeTensor<T> tensor) where T : unmanaged
    {
        var l = tensor.Lengths;
        var result = new double[l[0], l[1], l[2], l[3]];
        for (int a = 0; a < l[0]; a++)
        for (int b = 0; b < l[1]; b++)
        for (int i = 0; i < l[2]; i++)
        for (int j = 0; j < l[3]; j++)
            result[a, b, i, j] = ElementTypes.ToDouble(tensor[a, b, i, j]);
        return result;
    }

    [Fact]
    public void Gradients_are_the_same_bits_run_to_run()
    {
        var backend = CudaBackendTests.Gpu();
        foreach (var spec in AttentionGen.Sample(3, seed: 223, Emulated))
        {
            using var c = new CpuBackwardProperties.BackwardCase<BFloat16>(spec, backend);
            c.Baseline(); // fixes the bias-gradient order
            var (first, firstBias) = c.Run(backend);
            var (second, secondBias) = c.Run(backend);
            Assert.Equal(first.DQ, second.DQ);
            Assert.Equal(first.DK, second.DK);
            Assert.Equal(first.DV, second.DV);
            Assert.Equal(firstBias, secondBias);
        }
    }

    /// <summary>
    /// Under the emulator's harder modes: cp.async landing at issue with the threads' order changed between barriers
    /// (a missing barrier before a tile buffer's refill shows), and mma sums truncated as tensor cores may (fp32's
    /// 3xTF32 must still meet the rule).
    /// </summary>
    [Fact]
    public void The_backward_holds_under_eager_copies_other_thread_orders_and_truncated_sums()
    {
        if (!CudaEmulation.Active) Assert.Skip("emulator modes: this process runs a GPU");
        var backend = CudaBackendTests.Gpu();
        uint seed = (uint)Random.Shared.Next(1, int.MaxValue);
        var limits = Emulated with { MaxCost = 6e5 };
        try
        {
            CudaEmulation.SetModes(eagerCopies: true, seed);
            // A buffer is refilled from the third tile on: many query tiles for the dK/dV kernel, many key tiles for dQ.
            var refills = new[]
            {
                new ProblemSpec { QueryLength = 150, KeyLength = 17, HeadDim = 128, ValueDim = 128, DataSeed = (int)(seed % 1000) },
                new ProblemSpec { QueryLength = 9, KeyLength = 230, HeadDim = 64, ValueDim = 48, DataSeed = (int)(seed % 1000) + 1 },
            };
            foreach (var spec in refills.Concat(AttentionGen.Sample(3, seed: seed, limits))) CheckOne<Half>(backend, spec, $"schedule seed {seed}, eager copies");
            CudaEmulation.SetModes(eagerCopies: false, scheduleSeed: 0, truncatedAccumulation: true);
            foreach (var spec in AttentionGen.Sample(3, seed: 224, limits)) CheckOne<float>(backend, spec, "truncated sums");
        }
        finally
        {
            CudaEmulation.SetModes(false, 0);
        }
    }

    /// <summary>
    /// Whether the case's saved LSE has a row the CUDA backward refuses on device tensors
    /// (<see cref="CudaBackend.CoarseLseMagnitude"/>): a finite padding bias (HugePadding) on every key of a row.
    /// </summary>
    internal static bool RefusesRows<T>(CpuBackwardProperties.BackwardCase<T> c) where T : unmanaged =>
        c.Lse.Storage.ToArray().Any(CudaBackend.IsCoarseLse);

    /// <summary>The call stops with the reason before any kernel runs, naming the row.</summary>
    internal static void ExpectRefusal(Action call)
    {
        var e = Assert.Throws<NotSupportedException>(call);
        Assert.Contains("saved LSE", e.Message);
        Assert.Contains("lse[", e.Message);
    }

    /// <summary>
    /// Rows whose every key carries a finite padding bias of -1e9 or more have an LSE that is the padding value itself.
    /// The kernels took every P of such a row as 1 (this file's random-seed test drew such a case: a Half dK of -15525
    /// came back -infinity). On host spans the rows' max and sum are now recomputed on the CPU and the kernels scale P
    /// by 1 / sum; the case that failed, and a fully padded one, meet the rule in Half, BFloat16 and float.
    /// </summary>
    [Fact]
    public void Rows_with_a_coarse_saved_lse_are_recomputed_on_host_spans()
    {
        var backend = CudaBackendTests.Gpu();
        var padded = new ProblemSpec
        {
            QueryHeads = 2, KvHeads = 1, QueryLength = 40, KeyLength = 39, HeadDim = 32, ValueDim = 32,
            Bias = BiasKind.HugePadding, DataSeed = 11,
        };
        var drawn = AttentionGen.Sample(3, seed: 738378844, Emulated with { MaxCost = 6e5 }).First(spec => spec.Bias == BiasKind.HugePadding);
        using (var c = new CpuBackwardProperties.BackwardCase<Half>(padded, backend))
            Assert.True(RefusesRows(c), "the drawn padding left no row fully padded");
        CheckOne<Half>(backend, padded, "padded");
        CheckOne<BFloat16>(backend, padded, "padded");
        CheckOne<float>(backend, padded, "padded");
        CheckOne<Half>(backend, drawn, "the drawn case");

        // The rule's yardstick, the textbook formula in storage precision, is itself off on these rows, so the rule
        // alone would let a P off by a factor of Lk pass. Against the CPU backward, which recomputes them too: float
        // (3xTF32 on the GPU) to a thousandth of each gradient's largest element.
        using var f32 = new CpuBackwardProperties.BackwardCase<float>(padded, backend);
        var (gpu, _) = f32.Run(backend);
        var (cpu, _) = f32.Run(CpuBackend.Default);
        foreach (var (name, got, expected) in new[] { ("dQ", gpu.DQ, cpu.DQ), ("dK", gpu.DK, cpu.DK), ("dV", gpu.DV, cpu.DV) })
        {
            double scale = expected.Max(Math.Abs), worst = got.Zip(expected, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(worst <= 1e-3 * scale, $"{name}: max |CUDA - CPU| {worst:G3} against a largest element of {scale:G3}");
        }
    }

    private static void CheckOne<T>(AttentionBackend backend, ProblemSpec spec, string mode) where T : unmanaged
    {
        try
        {
            using var c = new CpuBackwardProperties.BackwardCase<T>(spec, backend);
            CpuBackwardProperties.CheckAgainstOracle(backend, c, spec);
        }
        catch (Exception e)
        {
            throw new InvalidOperationException($"{mode}: {e.Message}", e);
        }
    }

    [Fact]
    public void The_host_parameter_block_matches_the_kernel_layout()
    {
        Assert.Equal(496, System.Runtime.InteropServices.Marshal.SizeOf<BackwardParams>());
        Assert.Equal(344, (int)System.Runtime.InteropServices.Marshal.OffsetOf<BackwardParams>(nameof(BackwardParams.DOutput)));
    }

    /// <summary>
    /// Every device family gets a backward variant that fits its shared memory, or a clear refusal (fp32 at D = 256 on
    /// 99 KiB devices); the emulator's list (tests/CudaEmulator/build.sh) and CMake's are <see cref="CudaBackwardVariant.All"/>.
    /// </summary>
    [Fact]
    public void Backward_variants_fit_every_device_family_and_the_build_lists_agree()
    {
        foreach (var (devices, limit) in CudaFlashVariant.KnownSharedLimits)
        for (int d = 1; d <= 256; d++)
        foreach (var element in Enum.GetValues<CudaElement>())
        {
            if (element == CudaElement.F32 && d > 128 && limit < 163 * 1024)
            {
                var error = Assert.Throws<NotSupportedException>(() => CudaBackwardVariant.For(d, element, limit));
                Assert.Contains("D = 256 (F32)", error.Message);
                continue;
            }
            var variant = CudaBackwardVariant.For(d, element, limit);
            Assert.True(variant.HeadDim >= d && variant.SharedBytes <= limit, $"{variant}: {variant.SharedBytes} bytes on {devices} ({limit})");
            Assert.Contains(variant, CudaBackwardVariant.All);
        }
        var expected = CudaBackwardVariant.All.Select(v => $"{v.HeadDim}:{CudaElements.Suffix(v.Element)}:{v.KeysPerTile}").Order().ToArray();
        string lists = Path.Combine(AppContext.BaseDirectory, "cuda-variant-lists");
        var script = File.ReadAllText(Path.Combine(lists, "build.sh"));
        var emulated = System.Text.RegularExpressions.Regex.Match(script, @"backward_variants=\(([^)]*)\)").Groups[1].Value
            .Split((char[])[' ', '\n'], StringSplitOptions.RemoveEmptyEntries).Order().ToArray();
        Assert.Equal(expected, emulated);
        var cmake = File.ReadAllText(Path.Combine(lists, "CMakeLists.txt"));
        var built = System.Text.RegularExpressions.Regex.Match(cmake, @"set\(ATTENTION_BACKWARD_VARIANTS([^)]*)\)").Groups[1].Value
            .Split((char[])[' ', '\n', '"'], StringSplitOptions.RemoveEmptyEntries).Order().ToArray();
        Assert.Equal(expected, built);
    }
}
