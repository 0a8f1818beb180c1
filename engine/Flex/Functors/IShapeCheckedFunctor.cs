namespace AttentionEngine;

/// <summary>
/// A mask or score functor that holds data sized for some calls (per-head slopes, per-token document ids, a table),
/// or parameters with a valid range, and can say before any kernel runs whether it fits a call. Every call and
/// <see cref="BlockMask.Create{TMask}"/> asks it, so a misfit is an <see cref="ArgumentException"/> naming the
/// functor, never an IndexOutOfRangeException from inside a kernel. Implement it on your own functors when they
/// index arrays.
/// </summary>
public interface IShapeCheckedFunctor
{
    /// <summary>
    /// Null when the functor can be evaluated at every batch &lt; <paramref name="batch"/>, head &lt;
    /// <paramref name="heads"/>, query &lt; <paramref name="queryLength"/> and key &lt; <paramref name="keyLength"/>;
    /// otherwise the reason, naming what it holds and what the call needs.
    /// </summary>
    string? IncompatibilityWith(int batch, int heads, int queryLength, int keyLength);
}

/// <summary>The one place functors are asked whether they fit a call.</summary>
internal static class FunctorShape
{
    /// <summary>Throws an <see cref="ArgumentException"/> naming <paramref name="name"/> when the functor does not fit.</summary>
    public static void ThrowIfIncompatible<TFunctor>(TFunctor functor, int batch, int heads, int queryLength, int keyLength, string name)
    {
        if (Incompatibility(functor, batch, heads, queryLength, keyLength) is { } reason)
            throw new ArgumentException($"{name} ({typeof(TFunctor).Name}) does not fit this call (batch {batch}, heads {heads}, Lq {queryLength}, Lk {keyLength}): {reason}", name);
    }

    /// <summary>The functor's own answer, or null when it does not check itself.</summary>
    public static string? Incompatibility<TFunctor>(TFunctor functor, int batch, int heads, int queryLength, int keyLength) =>
        functor is IShapeCheckedFunctor checkedFunctor ? checkedFunctor.IncompatibilityWith(batch, heads, queryLength, keyLength) : null;
}
