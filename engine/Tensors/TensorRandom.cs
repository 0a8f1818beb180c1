namespace AttentionEngine;

/// <summary>Seeded random tensors: the same seed gives the same values on every machine and run.</summary>
public static class TensorRandom
{
    /// <summary>A contiguous tensor of values from <paramref name="distribution"/>, rounded to T.</summary>
    public static NativeTensor<T> Create<T>(int seed, ValueDistribution distribution, params ReadOnlySpan<nint> lengths)
        where T : unmanaged
    {
        var tensor = NativeTensor<T>.Zeros(lengths);
        Fill(tensor, seed, distribution);
        return tensor;
    }

    /// <summary>Overwrites every logical element of <paramref name="tensor"/> with seeded values.</summary>
    public static void Fill<T>(NativeTensor<T> tensor, int seed, ValueDistribution distribution) where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        var rng = new Random(seed);
        var values = new T[tensor.FlattenedLength];
        double edge = ElementTypes.MaxFinite<T>();
        for (int i = 0; i < values.Length; i++)
            values[i] = ElementTypes.FromDouble<T>(distribution == ValueDistribution.NearRangeEdge ? NearEdge(rng, edge) : Sample(rng, distribution));
        using var contiguous = NativeTensor<T>.FromArray(values, tensor.Lengths);
        tensor.CopyFrom(contiguous.AsReadOnlyTensorSpan());
    }

    /// <summary>One draw from <paramref name="distribution"/>.</summary>
    public static double Sample(Random rng, ValueDistribution distribution) => distribution switch
    {
        ValueDistribution.Normal => Gaussian(rng),
        ValueDistribution.Uniform => rng.NextDouble() * 2 - 1,
        ValueDistribution.Large => 30 * Gaussian(rng),
        ValueDistribution.Outliers => Gaussian(rng) + (rng.NextDouble() < 0.001 ? 100 * Gaussian(rng) : 0),
        ValueDistribution.NearRangeEdge => NearEdge(rng, float.MaxValue),
        _ => throw new ArgumentOutOfRangeException(nameof(distribution), distribution, "Unknown value distribution."),
    };

    /// <summary>One draw of <see cref="ValueDistribution.NearRangeEdge"/> for a type whose largest finite value is <paramref name="edge"/>.</summary>
    public static double NearEdge(Random rng, double edge) =>
        rng.NextDouble() < 0.2 ? (rng.Next(2) == 0 ? -1 : 1) * edge * (0.5 + 0.49 * rng.NextDouble()) : Gaussian(rng);

    /// <summary>Standard normal by Box-Muller (portable: no platform-specific generator).</summary>
    public static double Gaussian(Random rng)
    {
        double u1 = 1.0 - rng.NextDouble(); // in (0, 1], so the log is finite
        double u2 = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
