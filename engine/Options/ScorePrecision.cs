namespace AttentionEngine;

/// <summary>How a backend computes the scores Q·Kᵀ (<see cref="AttentionOptions.ScorePrecision"/>).</summary>
public enum ScorePrecision
{
    /// <summary>In float arithmetic from the inputs as stored, whatever their type: the default, and the exact semantics.</summary>
    Float = 0,

    /// <summary>
    /// In int8 (SageAttention's recipe), for inference: keys are smoothed by subtracting their mean over each block of 64
    /// keys, each query row and each smoothed key row is quantised to int8 with its own symmetric scale (max |x| / 127),
    /// the products are summed in integers, and each score is rebuilt as
    /// <c>scale · (s_q · s_k · Σ q8 · k8 + q · mean)</c> before the softmax and P·V run in float as usual. Adding
    /// q · mean back keeps the scores (not only the softmax) right, so LSE, bias and score functors see true scores.
    /// <para>
    /// A row takes a block's int8 scores only when it sees every key of the block (no key of the block is hidden from it
    /// by any mask, bias or functor) and the row and block are within the quantiser's range (finite, magnitudes up to
    /// 2^40); otherwise that row's scores over that block are computed in float. So a hidden key never influences a row,
    /// whatever its K holds, and hostile values take the exact path. The error is bounded by the scales
    /// (<c>AttentionEngine.Testing.Int8ErrorModel.ScoreOutputBound</c>). Forward only: the backward pass refuses it.
    /// </para>
    /// </summary>
    Int8 = 1,
}
