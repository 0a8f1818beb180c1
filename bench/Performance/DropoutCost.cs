using Spectre.Console;

namespace AttentionEngine.Bench.Performance;

/// <summary>The cost of dropout as the timing commands report it: each case's row with dropout against the plain row before it.</summary>
internal static class DropoutCost
{
    public static string Label(double p) => $"dropout {p:0.###}";

    public static void Print(IReadOnlyList<TimedResult> rows)
    {
        for (int n = 1; n < rows.Count; n++)
        {
            if (!rows[n].Case.Contains(" dropout ") || rows[n - 1].Case.Contains(" dropout ")) continue;
            double cost = rows[n].Milliseconds / rows[n - 1].Milliseconds - 1;
            AnsiConsole.MarkupLine(Markup.Escape($"{rows[n].Case} ({rows[n].Type}): {cost:+0.0%;-0.0%} time over the same call without dropout"));
        }
    }
}
