namespace AttentionEngine.Bench.Verification;

/// <summary>Cases passed and the worst error ratio for one (checked thing, feature) cell of the report.</summary>
internal sealed class VerifyTally
{
    public int Cases { get; private set; }
    public int Passed { get; private set; }
    public double WorstRatio { get; private set; }

    public void Add(bool passed, double ratio)
    {
        Cases++;
        if (passed) Passed++;
        if (double.IsNaN(ratio)) ratio = double.PositiveInfinity;
        WorstRatio = Math.Max(WorstRatio, ratio);
    }
}

/// <summary>One failing case, with what it takes to replay it.</summary>
internal sealed record VerifyFailure(string Checked, int Case, string DType, string Problem, IReadOnlyList<string> Failures, string Replay);
