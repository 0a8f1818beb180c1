namespace AttentionEngine.Tests;

public class ReadmeTests
{
    private static string Between(string text, string begin, string end)
    {
        int start = text.IndexOf(begin, StringComparison.Ordinal);
        Assert.True(start >= 0, $"'{begin}' not found");
        start = text.IndexOf('\n', start) + 1;
        int stop = text.IndexOf(end, start, StringComparison.Ordinal);
        return text[start..stop];
    }

    private static string Dedent(string block)
    {
        var lines = block.Split('\n').Where(l => l.Trim().Length > 0 && !l.TrimStart().StartsWith("// README:", StringComparison.Ordinal)).ToArray();
        int indent = lines.Min(l => l.Length - l.TrimStart().Length);
        return string.Join("\n", lines.Select(l => l[indent..].TrimEnd()));
    }

    [Fact]
    public void The_readme_example_is_the_code_that_compiles_here()
    {
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        string source = File.ReadAllText(FindSource("ReadmeExample.cs"));
        string inReadme = Dedent(Between(readme, "```csharp", "```"));
        string compiled = Dedent(Between(source, "// README:begin", "// README:end"));
        Assert.Equal(compiled, inReadme.Replace("using AttentionEngine;\n", ""));
    }

    [Fact]
    public void The_readme_example_runs_and_produces_finite_attention()
    {
        var (output, lse) = ReadmeExample.Run();
        Assert.Equal(8 * 128 * 64, output.Length);
        Assert.All(output, x => Assert.True(float.IsFinite(x)));
        Assert.All(lse, x => Assert.True(float.IsFinite(x))); // bottom-right causal with Lk > Lq: no empty row
        Assert.Contains(output, x => x != 0);
    }

    private static string FindSource(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"tests/{name} not found above {AppContext.BaseDirectory}");
    }
}
