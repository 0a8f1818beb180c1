namespace AttentionEngine.Testing;

/// <summary>Seeded bias and keep-mask tensors for each <see cref="BiasKind"/> and <see cref="KeepMaskKind"/>.</summary>
internal static class MaskGeneration
{
    private const double HiddenEntryRate = 0.05;
    private const double HiddenRowRate = 0.08;

    public static NativeTensor<float>? Bias(ProblemSpec spec, Random rng)
    {
        int b = spec.Batch, h = spec.QueryHeads, lq = spec.QueryLength, lk = spec.KeyLength;
        switch (spec.Bias)
        {
            case BiasKind.None:
                return null;
            case BiasKind.Full:
                return Fill(NativeTensor<float>.Zeros(b, h, lq, lk), (_, _, _, _) => NoisyEntry(rng));
            case BiasKind.Shared2D:
                return Fill(NativeTensor<float>.Zeros(lq, lk), (_, _, _, _) => NoisyEntry(rng));
            case BiasKind.PerHead:
                return Fill(NativeTensor<float>.Zeros(1, h, lq, lk),
                    (_, head, i, j) => (float)(-Math.Pow(2, -8.0 * (head + 1) / h) * Math.Abs(i - j) + 0.1 * TensorRandom.Gaussian(rng)));
            case BiasKind.KeyPadding:
                var valid = ValidLengths(b, lk, rng);
                return Fill(NativeTensor<float>.Zeros(b, 1, 1, lk), (batch, _, _, j) => j < valid[batch] ? 0f : float.NegativeInfinity);
            case BiasKind.HugePadding:
            {
                float padding = new[] { float.MinValue, -1e30f, -1e9f }[rng.Next(3)];
                var validKeys = ValidLengths(b, lk, rng);
                var validQueries = ValidLengths(b, lq, rng);
                return Fill(NativeTensor<float>.Zeros(b, 1, lq, lk),
                    (batch, _, i, j) => j < validKeys[batch] && i < validQueries[batch] ? 0f : padding);
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(spec), spec.Bias, "Unknown bias kind.");
        }
    }

    public static NativeTensor<bool>? KeepMask(ProblemSpec spec, Random rng)
    {
        int b = spec.Batch, h = spec.QueryHeads, lq = spec.QueryLength, lk = spec.KeyLength;
        switch (spec.KeepMask)
        {
            case KeepMaskKind.None:
                return null;
            case KeepMaskKind.Random:
            {
                double density = rng.NextDouble() < 0.5 ? 0.85 : 0.35;
                var hiddenRows = Flags(b * h * lq, HiddenRowRate, rng);
                var hiddenColumns = Flags(b * h * lk, HiddenRowRate, rng);
                return Fill(NativeTensor<bool>.Zeros(b, h, lq, lk), (batch, head, i, j) =>
                    !hiddenRows[(batch * h + head) * lq + i] && !hiddenColumns[(batch * h + head) * lk + j] && rng.NextDouble() < density);
            }
            case KeepMaskKind.Shared2D:
            {
                var hiddenRows = Flags(lq, HiddenRowRate, rng);
                return Fill(NativeTensor<bool>.Zeros(lq, lk), (_, _, i, j) => !hiddenRows[i] && rng.NextDouble() < 0.6);
            }
            case KeepMaskKind.KeyPadding:
                var valid = ValidLengths(b, lk, rng);
                return Fill(NativeTensor<bool>.Zeros(b, 1, 1, lk), (batch, _, _, j) => j < valid[batch]);
            default:
                throw new ArgumentOutOfRangeException(nameof(spec), spec.KeepMask, "Unknown keep-mask kind.");
        }
    }

    private static float NoisyEntry(Random rng) =>
        rng.NextDouble() < HiddenEntryRate ? float.NegativeInfinity : (float)(2 * TensorRandom.Gaussian(rng));

    /// <summary>Valid key count per batch; sometimes 0, so whole batches have no visible key.</summary>
    private static int[] ValidLengths(int batch, int keyLength, Random rng)
    {
        var valid = new int[batch];
        for (int i = 0; i < batch; i++) valid[i] = rng.NextDouble() < 0.15 ? 0 : rng.Next(1, keyLength + 1);
        return valid;
    }

    private static bool[] Flags(int count, double rate, Random rng)
    {
        var flags = new bool[count];
        for (int i = 0; i < count; i++) flags[i] = rng.NextDouble() < rate;
        return flags;
    }

    /// <summary>Fills a rank-2 or rank-4 tensor from a function of the (right-aligned) [b, h, i, j] index.</summary>
    private static NativeTensor<TElement> Fill<TElement>(NativeTensor<TElement> tensor, Func<int, int, int, int, TElement> value)
        where TElement : unmanaged
    {
        var l = tensor.Lengths;
        if (tensor.Rank == 2)
        {
            for (int i = 0; i < l[0]; i++)
            for (int j = 0; j < l[1]; j++)
                tensor[i, j] = value(0, 0, i, j);
            return tensor;
        }
        for (int b = 0; b < l[0]; b++)
        for (int h = 0; h < l[1]; h++)
        for (int i = 0; i < l[2]; i++)
        for (int j = 0; j < l[3]; j++)
            tensor[b, h, i, j] = value(b, h, i, j);
        return tensor;
    }
}
