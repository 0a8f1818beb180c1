using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Exporters.Json;
using BenchmarkDotNet.Loggers;

namespace AttentionEngine.Bench.Bdn;

/// <summary>
/// The default columns plus <see cref="RateColumn"/>, and a JSON report beside BenchmarkDotNet's default markdown.
/// Jobs come from the command line (<see cref="BdnCommand"/> adds --inProcess: the suites live in the bench tool
/// itself, so no per-benchmark project needs generating and building).
/// </summary>
internal sealed class BdnConfig : ManualConfig
{
    public BdnConfig()
    {
        AddColumnProvider(DefaultColumnProviders.Instance);
        AddColumn(new RateColumn());
        AddLogger(ConsoleLogger.Default);
        AddExporter(JsonExporter.Brief);
    }
}
