using System.Text;

namespace AttentionEngine;

/// <summary>
/// A positional mask: causal and sliding-window terms, combined with <c>&amp;</c>. Immutable and reusable across calls.
/// Tensor masks (additive bias, boolean keep-mask) are given separately in <see cref="AttentionOptions"/> and
/// intersect with this one.
/// </summary>
public sealed class Mask
{
    private readonly Term[] _terms;

    private Mask(Term[] terms) => _terms = terms;

    /// <summary>One band term: query i sees key j when Lo &lt;= j - i - offset(alignment) &lt;= Hi.</summary>
    private readonly record struct Term(string Description, long Lo, long Hi, CausalAlignment Alignment);

    /// <summary>Hides nothing.</summary>
    public static Mask None { get; } = new([]);

    /// <summary>True when no term hides anything.</summary>
    public bool IsNone => _terms.Length == 0;

    /// <summary>Query i sees keys at or before its own position (see <see cref="CausalAlignment"/>).</summary>
    public static Mask Causal(CausalAlignment alignment = CausalAlignment.TopLeft)
    {
        ValidateAlignment(alignment);
        return new([new Term($"causal({Name(alignment)})", -DiagonalBand.Unbounded, 0, alignment)]);
    }

    /// <summary>
    /// Query i sees keys from <paramref name="left"/> positions before its own to <paramref name="right"/> after it
    /// (FlashAttention's window_size); null leaves that side unbounded. <c>SlidingWindow(w, 0)</c> is causal local attention.
    /// </summary>
    public static Mask SlidingWindow(int? left, int? right, CausalAlignment alignment = CausalAlignment.TopLeft)
    {
        if (left < 0)
            throw new ArgumentOutOfRangeException(nameof(left), left, "The window's left extent must be >= 0 (null for unbounded).");
        if (right < 0)
            throw new ArgumentOutOfRangeException(nameof(right), right, "The window's right extent must be >= 0 (null for unbounded).");
        ValidateAlignment(alignment);
        string l = left?.ToString() ?? "inf", r = right?.ToString() ?? "inf";
        return new([new Term($"window(left={l}, right={r}, {Name(alignment)})",
            left is null ? -DiagonalBand.Unbounded : -(long)left.Value,
            right is null ? DiagonalBand.Unbounded : right.Value, alignment)]);
    }

    /// <summary>Keys visible under both masks.</summary>
    public Mask And(Mask other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return new([.. _terms, .. other._terms]);
    }

    /// <summary>Keys visible under both masks (<see cref="And"/>).</summary>
    public static Mask operator &(Mask left, Mask right) => left.And(right);

    /// <summary>
    /// This mask as a functor for one Lq x Lk problem, to compose with other functors in a <see cref="BlockMask{TMask}"/>
    /// (for example <c>MaskMods.And(Mask.Causal().ToFunctor(lq, lk), documents)</c>) or to ask which pairs it keeps.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">a length is negative.</exception>
    public BandMask ToFunctor(int queryLength, int keyLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(queryLength);
        ArgumentOutOfRangeException.ThrowIfNegative(keyLength);
        return new(Resolve(queryLength, keyLength));
    }

    /// <summary>True when every term is aligned to the end of the keys (BottomRight), as a KV cache's queries are.</summary>
    internal bool IsEndAligned => _terms.All(t => t.Alignment == CausalAlignment.BottomRight);

    /// <summary>The band this mask leaves visible in an Lq x Lk problem.</summary>
    internal DiagonalBand Resolve(int queryLength, int keyLength)
    {
        var band = DiagonalBand.All;
        foreach (var term in _terms)
        {
            long offset = term.Alignment == CausalAlignment.BottomRight ? (long)keyLength - queryLength : 0;
            long lo = term.Lo <= -DiagonalBand.Unbounded ? -DiagonalBand.Unbounded : term.Lo + offset;
            long hi = term.Hi >= DiagonalBand.Unbounded ? DiagonalBand.Unbounded : term.Hi + offset;
            band = band.Intersect(new DiagonalBand(lo, hi));
        }
        return band;
    }

    /// <summary>Draws the visible pattern of a small Lq x Lk problem: '#' visible, '.' hidden.</summary>
    public string Draw(int queryLength, int keyLength)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(queryLength);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(keyLength);
        var band = Resolve(queryLength, keyLength);
        var text = new StringBuilder();
        for (int i = 0; i < queryLength; i++)
        {
            for (int j = 0; j < keyLength; j++) text.Append(band.Contains(i, j) ? '#' : '.');
            text.Append('\n');
        }
        return text.ToString();
    }

    /// <inheritdoc/>
    public override string ToString() => IsNone ? "none" : string.Join(" & ", _terms.Select(t => t.Description));

    private static string Name(CausalAlignment alignment) => alignment == CausalAlignment.TopLeft ? "top-left" : "bottom-right";

    private static void ValidateAlignment(CausalAlignment alignment)
    {
        if (alignment is not (CausalAlignment.TopLeft or CausalAlignment.BottomRight))
            throw new ArgumentOutOfRangeException(nameof(alignment), alignment, "Alignment must be TopLeft or BottomRight.");
    }
}
