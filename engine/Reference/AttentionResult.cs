namespace AttentionEngine;

/// <summary>
/// An attention result held in float64, contiguous and row-major: what the oracle computes, what the naive formula
/// computes, and what a candidate's output is widened to before the tolerance rule compares them.
/// </summary>
/// <param name="Shape">the problem's sizes</param>
/// <param name="Output">[B, Hq, Lq, Dv]; zeros on rows with no visible key</param>
/// <param name="Lse">[B, Hq, Lq] natural-log logsumexp; -infinity on rows with no visible key</param>
/// <param name="Weights">[B, Hq, Lq, Lk] probabilities, or null when not computed</param>
public sealed record AttentionResult(AttentionShape Shape, double[] Output, double[] Lse, double[]? Weights);
