using System.Text.Json;
using AttentionEngine.Testing;
using Spectre.Console;
using Spectre.Console.Cli;

namespace AttentionEngine.Bench.Verification;

/// <summary>
/// `bench verify`: generated problems through every selected backend, each checked with the tolerance rule and the
/// invariants against the float64 oracle; the oracle itself is checked against the independent float64 formula.
/// Prints a table per checked thing and feature, and the replay command of every failure; exits 1 on any failure.
/// </summary>
internal sealed class VerifyCommand : Command<VerifySettings>
{
    private const string OracleRow = "oracle";

    public override int Execute(CommandContext context, VerifySettings settings, CancellationToken cancellationToken)
    {
        var backends = SelectBackends(settings.Backend);
        var specs = AttentionGen.Sample(settings.Cases, settings.Seed);
        var indices = settings.Case is { } only ? [only] : Enumerable.Range(0, specs.Length).ToArray();
        var tallies = new SortedDictionary<(string Checked, string Feature), VerifyTally>();
        var failures = new List<VerifyFailure>();

        void RunAll(Action advance)
        {
            foreach (int index in indices)
            {
                cancellationToken.ThrowIfCancellationRequested();
                string dtype = DTypeOf(settings.DType, index);
                var spec = specs[index];
                foreach (var (name, verdict) in VerifyCase(spec, dtype, backends, index))
                {
                    foreach (var feature in spec.Features().Prepend("all"))
                    {
                        if (!tallies.TryGetValue((name, feature), out var tally)) tallies[(name, feature)] = tally = new VerifyTally();
                        tally.Add(verdict.Passed, verdict.Ratio);
                    }
                    if (!verdict.Passed)
                        failures.Add(new VerifyFailure(name, index, dtype, spec.ToString(), verdict.Failures,
                            $"dotnet run -c Release --project bench -- verify --backend {(name == OracleRow ? "reference" : name.ToLowerInvariant())} " +
                            $"--cases {settings.Cases} --seed {settings.Seed} --dtype {dtype} --case {index}"));
                }
                advance();
            }
        }

        if (settings.Json) RunAll(() => { });
        else
            AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask($"verifying {indices.Length} problems", maxValue: indices.Length);
                    RunAll(() => task.Increment(1));
                });

        if (settings.Json) PrintJson(settings, backends, tallies, failures);
        else PrintTables(settings, backends, tallies, failures);
        return failures.Count == 0 ? 0 : 1;
    }

    private static IReadOnlyList<AttentionBackend> SelectBackends(string name)
    {
        // "all" leaves out ILGPU's CPU simulator (one OS thread per GPU thread: minutes per case at these sizes); name
        // it with --backend ilgpu to verify it anyway.
        var available = Attention.Backends.Where(b => b.IsAvailable && b is not IlGpuBackend { IsSimulator: true }).ToList();
        if (name.Equals("all", StringComparison.OrdinalIgnoreCase)) return available;
        var chosen = Attention.Backends.FirstOrDefault(b => b.Name.Equals(name, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"--backend '{name}' is not one of: all, {string.Join(", ", Attention.Backends.Select(b => b.Name.ToLowerInvariant()))}.");
        if (!chosen.IsAvailable) throw new InvalidOperationException($"Backend {chosen.Name} is not available: {chosen.UnavailableReason}");
        return [chosen];
    }

    private static string DTypeOf(string setting, int index) =>
        setting != "all" ? setting : (index % 3) switch { 0 => "f32", 1 => "f16", _ => "bf16" };

    private static IEnumerable<(string Name, CaseVerdict Verdict)> VerifyCase(
        ProblemSpec spec, string dtype, IReadOnlyList<AttentionBackend> backends, int index) => dtype switch
    {
        "f32" => VerifyCase<float>(spec, backends, index),
        "f16" => VerifyCase<Half>(spec, backends, index),
        _ => VerifyCase<BFloat16>(spec, backends, index),
    };

    private static List<(string, CaseVerdict)> VerifyCase<T>(ProblemSpec spec, IReadOnlyList<AttentionBackend> backends, int index)
        where T : unmanaged
    {
        using var problem = AttentionProblem<T>.Create(spec);
        var verdicts = new List<(string, CaseVerdict)> { (OracleRow, CaseVerifier.VerifyOracle(problem)) };
        foreach (var backend in backends)
        {
            try
            {
                verdicts.Add((backend.Name, CaseVerifier.VerifyBackend(backend, problem, spec.DataSeed ^ index)));
            }
            catch (NotSupportedException)
            {
                // The backend cannot serve this case (Cuda with float storage, say): nothing to verify for it.
            }
        }
        return verdicts;
    }

    private static void PrintTables(VerifySettings settings, IReadOnlyList<AttentionBackend> backends,
        SortedDictionary<(string Checked, string Feature), VerifyTally> tallies, List<VerifyFailure> failures)
    {
        AnsiConsole.MarkupLine($"[bold]bench verify[/]: seed {settings.Seed}, {settings.Cases} cases, dtype {settings.DType}, " +
            $"backends: {string.Join(", ", backends.Select(b => b.Name))}");
        foreach (var unavailable in Attention.Backends.Where(b => !b.IsAvailable))
            AnsiConsole.MarkupLine($"[grey]skipped {unavailable.Name}: {Markup.Escape(unavailable.UnavailableReason!)}[/]");
        var table = new Table().AddColumns("checked", "feature", "cases", "passed", "worst error / allowed");
        foreach (var ((name, feature), tally) in tallies)
            table.AddRow(Markup.Escape(name), feature, tally.Cases.ToString(),
                tally.Passed == tally.Cases ? $"[green]{tally.Passed}[/]" : $"[red]{tally.Passed}[/]",
                tally.WorstRatio.ToString("F3"));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine("[grey]worst error / allowed: below 1 passes; for the oracle row (checked against the independent float64 formula) the allowance is 1e-9 of the output scale.[/]");
        foreach (var failure in failures)
        {
            AnsiConsole.MarkupLine($"[red]FAIL[/] {Markup.Escape(failure.Checked)} case {failure.Case} ({failure.DType}): {Markup.Escape(failure.Problem)}");
            foreach (var line in failure.Failures) AnsiConsole.MarkupLine($"  {Markup.Escape(line)}");
            AnsiConsole.MarkupLine($"  replay: {Markup.Escape(failure.Replay)}");
        }
        AnsiConsole.MarkupLine(failures.Count == 0 ? "[green]all cases passed[/]" : $"[red]{failures.Count} failures[/]");
    }

    private static void PrintJson(VerifySettings settings, IReadOnlyList<AttentionBackend> backends,
        SortedDictionary<(string Checked, string Feature), VerifyTally> tallies, List<VerifyFailure> failures)
    {
        var document = new
        {
            command = "verify",
            seed = settings.Seed,
            cases = settings.Cases,
            dtype = settings.DType,
            backends = backends.Select(b => b.Name),
            unavailable = Attention.Backends.Where(b => !b.IsAvailable).Select(b => new { name = b.Name, reason = b.UnavailableReason }),
            results = tallies.Select(t => new
            {
                @checked = t.Key.Checked, feature = t.Key.Feature, cases = t.Value.Cases, passed = t.Value.Passed,
                worstRatio = double.IsFinite(t.Value.WorstRatio) ? t.Value.WorstRatio : (double?)null,
            }),
            failures,
            passed = failures.Count == 0,
        };
        Console.WriteLine(JsonSerializer.Serialize(document, new JsonSerializerOptions { WriteIndented = true }));
    }
}
