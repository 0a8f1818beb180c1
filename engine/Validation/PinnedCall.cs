using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// The inputs of a validated call as plain (capturable) views over pinned memory, for work spread over threads.
/// Only valid inside <see cref="Pin"/>'s callback.
/// </summary>
internal readonly record struct PinnedCall<T>(
    AttentionShape Shape, double Scale, DiagonalBand Band,
    RawStrided4<T> Q, RawStrided4<T> K, RawStrided4<T> V, RawStrided4<float> Bias, RawStrided4<bool> Keep,
    IPairFunctors? Functors, AttentionDropout Dropout)
    where T : unmanaged
{
    /// <summary>What P(i, j) is multiplied by before P·V: 1 without dropout, else 1 / (1 − p) (exactly) where kept and 0 where dropped.</summary>
    public double DropoutFactor(int b, int h, int i, int j) => Dropout.Factor(b, Shape.QueryHeads, h, i, j);

    /// <summary>Positional mask, keep-mask and block mask (the bias's -infinity entries are the caller's to check).</summary>
    public bool IsAllowed(int b, int h, int i, int j) =>
        Band.Contains(i, j) && (Keep.IsEmpty || Keep[b, h, i, j]) && (Functors is null || Functors.Keep(b, h, i, j));

    public double BiasAt(int b, int h, int i, int j) => Bias.IsEmpty ? 0.0 : Bias[b, h, i, j];

    /// <summary>
    /// scale · dot saturated to the float range, then the score functor if the call has one (applied in float, as the
    /// functor is written; its +infinity saturates, its -infinity hides the key).
    /// </summary>
    public double ScaledScore(double dot, int b, int h, int i, int j)
    {
        double scaled = ScoreSaturation.Saturate(dot * Scale);
        return Functors is { HasScore: true } f ? ScoreSaturation.SaturateFunctor(f.Score((float)scaled, b, h, i, j)) : scaled;
    }

    /// <summary>∂(score functor)/∂(scale · dot) at this pair: 1 without a functor.</summary>
    public double ScoreDerivative(double dot, int b, int h, int i, int j) =>
        Functors is { HasScore: true } f ? f.Derivative((float)ScoreSaturation.Saturate(dot * Scale), b, h, i, j) : 1.0;

    /// <summary>Pins the inputs of <paramref name="call"/> for the duration of <paramref name="work"/>.</summary>
    public static unsafe void Pin(scoped in AttentionCall<T> call, Action<PinnedCall<T>> work, IPairFunctors? functors = null)
    {
        fixed (T* q = &Unsafe.AsRef(in call.Q.Base))
        fixed (T* k = &Unsafe.AsRef(in call.K.Base))
        fixed (T* v = &Unsafe.AsRef(in call.V.Base))
        fixed (float* bias = &Unsafe.AsRef(in call.Bias.Base))
        fixed (bool* keep = &Unsafe.AsRef(in call.KeepMask.Base))
        {
            work(new PinnedCall<T>(
                call.Shape, call.Scale, call.Band,
                new RawStrided4<T>(q, call.Q), new RawStrided4<T>(k, call.K), new RawStrided4<T>(v, call.V),
                call.HasBias ? new RawStrided4<float>(bias, call.Bias) : default,
                call.HasKeepMask ? new RawStrided4<bool>(keep, call.KeepMask) : default, functors, call.Dropout));
        }
    }
}
