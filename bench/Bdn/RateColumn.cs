using AttentionEngine.Bench.Performance;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace AttentionEngine.Bench.Bdn;

/// <summary>GFLOP/s (4·B·H·visible pairs·D) or, for decode cases, GB/s of K and V, from a benchmark's mean time.</summary>
internal sealed class RateColumn : IColumn
{
    public string Id => nameof(RateColumn);
    public string ColumnName => "Rate";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "GFLOP/s (4·B·H·visible pairs·D / mean), or GB/s of K+V for decode cases";

    public bool IsAvailable(Summary summary) => true;
    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
        if (mean is not { } nanoseconds) return "-";
        if (benchmarkCase.Parameters["Case"] is not string name) return "-";
        var c = PerformanceCase.Parse(name);
        string type = benchmarkCase.Parameters["Type"] as string ?? "f32";
        return c.Decode
            ? $"{c.KvBytes(type == "f32" ? 4 : 2) / nanoseconds:F1} GB/s"
            : $"{c.Flops / nanoseconds:F1} GFLOP/s";
    }
}
