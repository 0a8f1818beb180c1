using System.Text.Json;
using System.Text.Json.Serialization;

namespace AttentionEngine.Bench.Performance;

/// <summary>
/// One timed (case, backend, storage type). Rate is GFLOP/s, or GB/s of K and V for decode cases (Unit says which);
/// FractionOfLimit is of the machine's measured FMA peak or bandwidth. MaxDifference (peers) is against our CPU backend.
/// </summary>
internal sealed record TimedResult(
    string Backend, string Case, string Type, int Batch, int Heads, int KvHeads, int QueryLength, int KeyLength, int HeadDim,
    bool Causal, double Milliseconds, double Rate, string Unit, double FractionOfLimit, double? MaxDifference = null)
{
    public static TimedResult Of(string backend, PerformanceCase c, string type, double seconds, MachineLimits limits, int elementSize)
    {
        if (c.Decode)
        {
            double gbs = c.KvBytes(elementSize) / seconds / 1e9;
            return new(backend, c.Name, type, c.Batch, c.Heads, c.KvHeads, c.QueryLength, c.KeyLength, c.HeadDim, c.Causal,
                seconds * 1e3, gbs, "GB/s K+V", gbs / limits.BandwidthGBs);
        }
        double gflops = c.Flops / seconds / 1e9;
        return new(backend, c.Name, type, c.Batch, c.Heads, c.KvHeads, c.QueryLength, c.KeyLength, c.HeadDim, c.Causal,
            seconds * 1e3, gflops, "GFLOP/s", gflops / limits.PeakGflops);
    }
}

/// <summary>What `run --json` and `peers --json` print and `plot` reads.</summary>
internal sealed record ResultsDocument(
    string Command, string Cpu, string Isa, int Threads, double PeakGflops, double BandwidthGBs, IReadOnlyList<TimedResult> Rows)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Options);

    public static ResultsDocument Read(string path) =>
        JsonSerializer.Deserialize<ResultsDocument>(File.ReadAllText(path), Options)
        ?? throw new InvalidDataException($"{path} holds no results document.");

    /// <summary>The CPU model line of /proc/cpuinfo.</summary>
    public static string CpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? "unknown CPU";
        }
        catch (IOException) { return "unknown CPU"; }
    }
}
