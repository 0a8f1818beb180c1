namespace AttentionEngine.Tests;

public class ReadmeTests
{
    internal static string Between(string text, string begin, string end)
    {
        int start = text.IndexOf(begin, StringComparison.Ordinal);
        Assert.True(start >= 0, $"'{begin}' not found");
        start = text.IndexOf('\n', start) + 1;
        int stop = text.IndexOf(end, start, StringComparison.Ordinal);
        return text[start..stop];
    }

    /// <summary>
    /// The README block that starts with <paramref name="blockStart"/> (after its ```csharp line) equals the code between
    /// the <paramref name="marker"/>-begin and -end comments of tests/<paramref name="sourceFile"/>.
    /// </summary>
    internal static void AssertBlockIsCompiledCode(string blockStart, string sourceFile, string marker, string language = "csharp")
    {
        string readme = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "README.md"));
        string source = File.ReadAllText(FindSource(sourceFile));
        int block = readme.IndexOf($"```{language}\n" + blockStart, StringComparison.Ordinal);
        Assert.True(block >= 0, $"the README's block starting '{blockStart}' is missing");
        // The README block may open with using directives (a reader needs them; the compiled file has them at its top).
        string inReadme = string.Join("\n", Between(readme[block..], $"```{language}", "```").Split('\n')
            .Where(l => !System.Text.RegularExpressions.Regex.IsMatch(l.Trim(), @"^using [A-Za-z.]+;(\s*//.*)?$")));
        Assert.Equal(Dedent(Between(source, $"// {marker}-begin", $"// {marker}-end")), Dedent(inReadme));
    }

    /// <summary>The README's C block is tests/c/readme_example.c's, which the C ABI's CMake build compiles and CI runs.</summary>
    [Fact]
    public void The_readme_c_example_is_the_code_ci_compiles() =>
        AssertBlockIsCompiledCode("// q, k, v, out stored", Path.Combine("c", "readme_example.c"), "README:c", "c");

    internal static string Dedent(string block)
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

    internal static string FindSource(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            // The examples sit beside these tests (tests/Readme); the C example in tests/c.
            foreach (string candidate in new[] { Path.Combine(dir.FullName, "tests", "Readme", name), Path.Combine(dir.FullName, "tests", name) })
                if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"tests/{name} not found above {AppContext.BaseDirectory}");
    }
}

/// <summary>The README's device example (it needs CUDA: a GPU or the emulator), serial with the other CUDA tests.</summary>
[Collection(nameof(CudaTests))]
public class ReadmeDeviceTests
{
    [Fact]
    public void The_readme_device_example_is_the_code_that_compiles_here_and_matches_the_host_call()
    {
        ReadmeTests.AssertBlockIsCompiledCode("using AttentionEngine.Bindings.Cuda;", "ReadmeDeviceExample.cs", "README:device");

        var backend = CudaBackendTests.Gpu();
        using var q = TensorRandom.Create<Half>(1, ValueDistribution.Normal, 1, 8, 128, 64);
        using var k = TensorRandom.Create<Half>(2, ValueDistribution.Normal, 1, 8, 128, 64);
        using var v = TensorRandom.Create<Half>(3, ValueDistribution.Normal, 1, 8, 128, 64);
        using var output = NativeTensor<Half>.Zeros(1, 8, 128, 64);
        using var expected = NativeTensor<Half>.Zeros(1, 8, 128, 64);
        ReadmeDeviceExample.Run(q, k, v, output);
        backend.Forward<Half>(q, k, v, expected, new AttentionOptions { Mask = Mask.Causal() });
        Assert.Equal(expected.ToArray(), output.ToArray());
    }
}
