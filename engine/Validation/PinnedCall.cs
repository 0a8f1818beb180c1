using System.Runtime.CompilerServices;
using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// A validated call as plain (capturable) views over pinned memory, for work spread over threads: its inputs, its
/// destinations (empty where not wanted) and its settings. Only valid inside <see cref="Pin{TWork}"/>'s work. The one
/// place a call's tensors are pinned (the CPU forward and backward, the Reference and the naive formula).
/// </summary>
internal readonly record struct PinnedCall<T>(
    AttentionShape Shape, double Scale, DiagonalBand Band,
    RawStrided4<T> Q, RawStrided4<T> K, RawStrided4<T> V, RawStrided4<float> Bias, RawStrided4<bool> Keep,
    RawStrided4<T> Output, RawStrided4<float> Lse, RawStrided4<float> Weights,
    IPairFunctors? Functors, AttentionDropout Dropout, int MaxDegreeOfParallelism, PinnedInt8KeyValues Int8,
    ScorePrecision ScorePrecision)
    where T : unmanaged
{
    /// <summary>Key element (b, kvHead, j, c) as the call defines it: the stored value, or int8 · scale exactly.</summary>
    public double KeyAt(int b, int kvHead, int j, int c) =>
        Int8.IsActive ? Int8.K[b, kvHead, j, c] * (double)Int8.KScale[b, kvHead, j, 0] : ElementTypes.ToDouble(K[b, kvHead, j, c]);

    /// <summary>Value element (b, kvHead, j, c) as the call defines it.</summary>
    public double ValueAt(int b, int kvHead, int j, int c) =>
        Int8.IsActive ? Int8.V[b, kvHead, j, c] * (double)Int8.VScale[b, kvHead, j, 0] : ElementTypes.ToDouble(V[b, kvHead, j, c]);

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

    /// <summary>
    /// Pins every tensor of <paramref name="call"/> for the duration of <paramref name="work"/>'s run. The work is a
    /// struct passed by reference, so a call allocates nothing here.
    /// </summary>
    public static unsafe void Pin<TWork>(scoped in AttentionCall<T> call, ref TWork work, IPairFunctors? functors = null)
        where TWork : struct, IPinnedCallWork<T>
    {
        fixed (T* q = &Unsafe.AsRef(in call.Q.Base))
        fixed (T* k = &Unsafe.AsRef(in call.K.Base))
        fixed (T* v = &Unsafe.AsRef(in call.V.Base))
        fixed (float* bias = &Unsafe.AsRef(in call.Bias.Base))
        fixed (bool* keep = &Unsafe.AsRef(in call.KeepMask.Base))
        fixed (T* output = &call.Output.Base)
        fixed (float* lse = &call.Lse.Base)
        fixed (float* weights = &call.Weights.Base)
        fixed (sbyte* k8 = &Unsafe.AsRef(in call.Quantized.K.Base))
        fixed (sbyte* v8 = &Unsafe.AsRef(in call.Quantized.V.Base))
        fixed (float* kScale = &Unsafe.AsRef(in call.Quantized.KScale.Base))
        fixed (float* vScale = &Unsafe.AsRef(in call.Quantized.VScale.Base))
        {
            var quantized = call.Quantized;
            var int8 = quantized.IsActive
                ? new PinnedInt8KeyValues(new RawStrided4<sbyte>(k8, quantized.K), new RawStrided4<sbyte>(v8, quantized.V),
                    new RawStrided4<float>(kScale, quantized.KScale), new RawStrided4<float>(vScale, quantized.VScale))
                : default;
            work.Run(new PinnedCall<T>(
                call.Shape, call.Scale, call.Band,
                new RawStrided4<T>(q, call.Q), new RawStrided4<T>(k, call.K), new RawStrided4<T>(v, call.V),
                call.HasBias ? new RawStrided4<float>(bias, call.Bias) : default,
                call.HasKeepMask ? new RawStrided4<bool>(keep, call.KeepMask) : default,
                call.Output.IsEmpty ? default : new RawStrided4<T>(output, call.Output),
                call.ReturnLse ? new RawStrided4<float>(lse, call.Lse) : default,
                call.ReturnWeights ? new RawStrided4<float>(weights, call.Weights) : default,
                functors, call.Dropout, call.MaxDegreeOfParallelism, int8, call.ScorePrecision));
        }
    }

    /// <summary>As <see cref="Pin{TWork}"/>, with a delegate (for the oracles, where an allocation does not matter).</summary>
    public static void Pin(scoped in AttentionCall<T> call, Action<PinnedCall<T>> work, IPairFunctors? functors = null)
    {
        var adapter = new DelegateWork(work);
        Pin(call, ref adapter, functors);
    }

    private readonly struct DelegateWork(Action<PinnedCall<T>> work) : IPinnedCallWork<T>
    {
        public void Run(in PinnedCall<T> call) => work(call);
    }
}

/// <summary>Int8 keys and values of a pinned call with their per-token scales ([B, Hkv, Lk, 1] views); inactive by default.</summary>
internal readonly record struct PinnedInt8KeyValues(RawStrided4<sbyte> K, RawStrided4<sbyte> V, RawStrided4<float> KScale, RawStrided4<float> VScale)
{
    public bool IsActive => !K.IsEmpty;
}

/// <summary>Work run over a pinned call (a struct, so the JIT specialises it and nothing is allocated).</summary>
internal interface IPinnedCallWork<T> where T : unmanaged
{
    void Run(in PinnedCall<T> call);
}
