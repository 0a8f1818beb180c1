using AttentionEngine.Bench.Performance;
using BenchmarkDotNet.Attributes;

namespace AttentionEngine.Bench.Bdn;

/// <summary>
/// The CPU backend on the goal cases (fp32) and the decode case (fp32 and BFloat16 K/V), all cores.
/// <see cref="RateColumn"/> turns each mean into GFLOP/s or GB/s of K+V.
/// </summary>
[Config(typeof(BdnConfig))]
public class ForwardBenchmarks
{
    private CaseTensors<float>? _f32;
    private CaseTensors<BFloat16>? _bf16;
    private Mask? _mask;

    public static IEnumerable<string> Cases => PerformanceCase.Preset.Select(c => c.Name);

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [Params("f32", "bf16")]
    public string Type { get; set; } = "f32";

    [GlobalSetup]
    public void Setup()
    {
        var c = PerformanceCase.Parse(Case);
        _mask = c.Causal ? Mask.Causal() : null;
        if (Type == "bf16") _bf16 = CaseTensors<BFloat16>.Create(c);
        else _f32 = CaseTensors<float>.Create(c);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _f32?.Dispose();
        _bf16?.Dispose();
    }

    [Benchmark]
    public void Cpu()
    {
        var options = new AttentionOptions { Mask = _mask };
        if (_bf16 is { } b) CpuBackend.Default.Forward<BFloat16>(b.Q, b.K, b.V, b.Output, options);
        else CpuBackend.Default.Forward<float>(_f32!.Q, _f32.K, _f32.V, _f32.Output, options);
    }
}
