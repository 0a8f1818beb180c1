namespace AttentionEngine.Tests;

public class ReadmeFlexTests
{
    [Fact]
    public void The_readme_flex_example_is_the_code_that_compiles_here() =>
        ReadmeTests.AssertBlockIsCompiledCode("// Two documents packed", "ReadmeFlexExample.cs", "README:flex");

    [Fact]
    public void The_readme_flex_example_runs_and_keeps_documents_apart()
    {
        var output = ReadmeFlexExample.Run();
        Assert.All(output, x => Assert.True(float.IsFinite(x)));
        // Query 40 opens document 1: it sees only key 40, so its output row is v's row 40 (seed 3) for each head.
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, 1, 4, 96, 64);
        var values = v.ToArray();
        for (int h = 0; h < 4; h++)
            for (int e = 0; e < 64; e++)
                Assert.Equal(values[(h * 96 + 40) * 64 + e], output[(h * 96 + 40) * 64 + e], 5);
    }
}
