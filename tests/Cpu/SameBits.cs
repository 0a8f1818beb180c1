using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>The check of the tests whose two calls take different paths to what must be the same result, bit for bit.</summary>
internal static class SameBits
{
    public static void Equal(AttentionResult expected, AttentionResult actual, string what)
    {
        Assert.True(expected.Output.AsSpan().SequenceEqual(actual.Output), $"output differs: {what}");
        Assert.True(expected.Lse.AsSpan().SequenceEqual(actual.Lse), $"LSE differs: {what}");
    }
}
