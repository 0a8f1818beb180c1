using BenchmarkDotNet.Running;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Bdn;

/// <summary>
/// `bench bdn [BenchmarkDotNet arguments]`: the BenchmarkDotNet suites. Arguments go to BenchmarkDotNet untouched
/// (--filter, --job short, --list flat, ...); with no --filter every suite runs, and runs are in-process unless
/// --runtimes asks for others. --json adds BenchmarkDotNet's JSON report (in BenchmarkDotNet.Artifacts/results).
/// </summary>
internal sealed class BdnCommand : Command<BdnCommand.Settings>
{
    public sealed class Settings : CommandSettings;

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken) =>
        Run(context.Remaining.Raw.ToArray());

    public static int Run(string[] args)
    {
        // --json as in every bench command: BenchmarkDotNet's full JSON report beside its markdown.
        args = args.SelectMany(a => a == "--json" ? new[] { "--exporters", "json" } : [a]).ToArray();
        if (!args.Any(a => a is "--filter" or "-f" || a.StartsWith("--filter=", StringComparison.Ordinal) || a is "--list"))
            args = [.. args, "--filter", "*"];
        if (!args.Any(a => a is "--inProcess" or "-i" or "--runtimes" or "-r"))
            args = [.. args, "--inProcess"];
        var summaries = BenchmarkSwitcher.FromTypes([typeof(ForwardBenchmarks)]).Run(args);
        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }
}
