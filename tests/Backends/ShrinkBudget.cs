using AttentionEngine.Testing;
using FsCheck;
using FsCheck.Fluent;

namespace AttentionEngine.Tests;

/// <summary>
/// A cap on how many shrink candidates a property run tries. The emulated CUDA and ILGPU suites take seconds per case:
/// a CI run once spent 50 minutes shrinking one emulated failure (582 candidates) before reporting it. Capped, the
/// report comes in minutes, with the original case, the replay seed and the smallest failing case found so far.
/// </summary>
internal static class ShrinkBudget
{
    /// <summary>Candidates the emulated suites try in all, per property run (a few minutes at their case sizes).</summary>
    public const int Emulated = 40;

    /// <summary><paramref name="problems"/> with at most <paramref name="candidates"/> shrink candidates tried in all.</summary>
    public static Arbitrary<ProblemSpec> Capped(Arbitrary<ProblemSpec> problems, int candidates = Emulated)
    {
        int tried = 0;
        return Arb.From(problems.Generator, spec => Take(problems.Shrinker(spec)));

        IEnumerable<ProblemSpec> Take(IEnumerable<ProblemSpec> simpler)
        {
            foreach (var spec in simpler)
            {
                if (Interlocked.Increment(ref tried) > candidates) yield break;
                yield return spec;
            }
        }
    }
}
