using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The hostile-input suite: generated problems that are hostile on purpose (huge logits and outliers, values at the
/// float range's edge, scales that saturate, finite padding biases near float.MinValue, every mask kind) run on the
/// CPU (tile and decode kernels, backward), the Reference and CUDA (ILGPU's CPU accelerator, whose simulated threads
/// are the suite's slowest path, gets the same generators and poisoning through its property suites), with NaN, ±infinity and ±1e30 written into every hidden
/// position. Each case must pass the tolerance rule against the float64 Reference and leave every row that sees no
/// poisoned key bitwise unchanged. Counts are written to the test output and, when ATTENTION_ENGINE_HOSTILE_REPORT
/// names a file, appended there (CI prints the total).
/// </summary>
public class HostileInputSuite
{
    private static readonly ProblemLimits Prefill = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 96, MaxHeadDim = 80, MaxCost = 4e5 };
    private static readonly ProblemLimits Decode = ProblemLimits.Decode with { MaxBatch = 2, MaxQueryHeads = 4, MaxKeyLength = 1500, MaxHeadDim = 64, MaxCost = 6e5 };
    internal static readonly ProblemLimits Gradients = new() { MaxBatch = 2, MaxQueryHeads = 4, MaxLength = 80, MaxHeadDim = 64, MaxCost = 3e5, RangeEdge = false };

    /// <summary>A drawn spec made hostile: hostile values and at least one mask that hides keys.</summary>
    internal static ProblemSpec Hostile(ProblemSpec spec, int n)
    {
        var values = new[] { ValueDistribution.Large, ValueDistribution.Outliers, ValueDistribution.NearRangeEdge, spec.Values };
        var hostile = spec with { Values = values[n % values.Length] };
        if (hostile.Bias == BiasKind.None && hostile.KeepMask == KeepMaskKind.None && hostile.Causal is null && hostile.Window is null)
            hostile = (n % 3) switch
            {
                0 => hostile with { KeepMask = KeepMaskKind.KeyPadding },
                1 => hostile with { Bias = BiasKind.HugePadding },
                _ => hostile with { Causal = CausalAlignment.BottomRight },
            };
        if (n % 7 == 0) hostile = hostile with { Scale = float.MaxValue };
        return hostile;
    }

    /// <summary>Gradients of saturated scores or of values at the range's edge exceed the float range themselves: not drawn.</summary>
    internal static ProblemSpec ForGradients(ProblemSpec hostile, ProblemSpec drawn) =>
        hostile with { Scale = drawn.Scale, Values = hostile.Values == ValueDistribution.NearRangeEdge ? ValueDistribution.Outliers : hostile.Values };

    private static void Report(string suite, int cases)
    {
        string line = $"hostile {suite}: {cases} cases, 0 defects";
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        if (Environment.GetEnvironmentVariable("ATTENTION_ENGINE_HOSTILE_REPORT") is { Length: > 0 } path)
            lock (typeof(HostileInputSuite)) File.AppendAllText(path, line + Environment.NewLine);
    }

    /// <summary>Forward cases on one backend: the tolerance rule on the hostile problem, then the poisoning invariant.</summary>
    internal static void Forward<T>(AttentionBackend backend, string name, int cases, ProblemLimits limits, ulong seed, bool rangeEdge = true)
        where T : unmanaged
    {
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        int n = 0;
        foreach (var drawn in AttentionGen.Sample(cases, seed, limits))
        {
            var spec = Hostile(drawn, n++);
            if (!rangeEdge && spec.Values == ValueDistribution.NearRangeEdge) spec = spec with { Values = ValueDistribution.Outliers };
            using var problem = AttentionProblem<T>.Create(spec);
            var baseline = AttentionInvariants.Baseline.Of(problem);
            var verdict = baseline.Check<T>("tolerance rule", problem.Run(backend));
            Assert.True(verdict.Passed, $"{backend.Name} {ElementTypes.ShortName<T>()} {spec}: {verdict}");
            var poisoned = AttentionInvariants.HiddenKeysDoNotMatter(backend, problem, spec.DataSeed);
            Assert.True(poisoned.Passed, $"{backend.Name} {ElementTypes.ShortName<T>()} {spec}: {poisoned}");
        }
        Report($"{name} {ElementTypes.ShortName<T>()}", cases);
    }

    private static CpuBackend Cpu(CpuIsa isa)
    {
        var backend = new CpuBackend(isa);
        if (!backend.IsAvailable) Assert.Skip($"{backend.Name}: {backend.UnavailableReason}");
        return backend;
    }

    // CPU forward, tile kernel, on every vector path that runs here (AVX-512 where present, AVX2, 128-bit).
    [Fact] public void Cpu_avx512_prefill() { var cpu = Cpu(CpuIsa.Avx512); Forward<float>(cpu, "Cpu-Avx512 prefill", 60, Prefill, 101); Forward<BFloat16>(cpu, "Cpu-Avx512 prefill", 30, Prefill, 102); }
    [Fact] public void Cpu_avx2_prefill() { var cpu = Cpu(CpuIsa.Avx2); Forward<float>(cpu, "Cpu-Avx2 prefill", 200, Prefill, 103); Forward<Half>(cpu, "Cpu-Avx2 prefill", 100, Prefill, 104); Forward<BFloat16>(cpu, "Cpu-Avx2 prefill", 100, Prefill, 105); }
    [Fact] public void Cpu_vector128_prefill() { var cpu = Cpu(CpuIsa.Vector128); Forward<float>(cpu, "Cpu-Vector128 prefill", 140, Prefill, 106); Forward<Half>(cpu, "Cpu-Vector128 prefill", 60, Prefill, 107); }

    // CPU forward, decode kernel (key splits and their merge).
    [Fact] public void Cpu_decode() { var cpu = CpuBackend.Default; Forward<float>(cpu, "Cpu decode", 150, Decode, 111); Forward<BFloat16>(cpu, "Cpu decode", 90, Decode, 112); Forward<Half>(cpu, "Cpu decode", 60, Decode, 113); }

    // The Reference itself obeys the contract it defines.
    [Fact] public void Reference() => Forward<float>(ReferenceBackend.Instance, "Reference", 60, Prefill with { MaxCost = 1e5 }, 121);

    // CUDA on the emulator (or a GPU): fp16, bf16 and fp32 as 3xTF32.
    [Fact]
    public void Cuda()
    {
        var backend = CudaBackendTests.Gpu();
        var small = new ProblemLimits { MaxBatch = 2, MaxQueryHeads = 2, MaxLength = 80, MaxHeadDim = 64, MaxCost = 4e5 };
        Forward<Half>(backend, "Cuda", 36, small, 141);
        Forward<BFloat16>(backend, "Cuda", 36, small, 142);
        Forward<float>(backend, "Cuda", 24, small, 143);
    }

    // CPU backward: the gradient rule against the float64 backward, and poisoned keys hidden from every row.
    [Fact]
    public void Cpu_backward()
    {
        int n = 0;
        foreach (var drawn in AttentionGen.Sample(200, seed: 151, Gradients))
        {
            CpuBackwardProperties.CheckHostileBackward<float>(ForGradients(Hostile(drawn, n++), drawn));
        }
        Report("Cpu backward f32", n);
        n = 0;
        foreach (var drawn in AttentionGen.Sample(100, seed: 152, Gradients))
        {
            CpuBackwardProperties.CheckHostileBackward<BFloat16>(ForGradients(Hostile(drawn, n++), drawn));
        }
        Report("Cpu backward bf16", n);
    }
}
