using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine;

/// <summary>
/// Sums per-pair score gradients into a bias gradient that may broadcast (several pairs to one element), in one fixed
/// order, (b, h, i, j), in float: every backend that gathers dBias this way (Cpu, Cuda) gives the same bits every run.
/// </summary>
internal static unsafe class BiasGradientSum
{
    /// <param name="destination">dBias as a [B, Hq, Lq, Lk] view (stride 0 where the bias broadcasts)</param>
    /// <param name="scores">the per-pair gradients, [B, Hq, Lq, Lk]</param>
    public static void Into(RawStrided4<float> destination, RawStrided4<float> scores)
    {
        // Cleared first, as a whole: with broadcasting, an element is reached from many pairs.
        for (int b = 0; b < destination.Length0; b++)
        for (int h = 0; h < destination.Length1; h++)
        for (int i = 0; i < destination.Length2; i++)
        for (int j = 0; j < destination.Length3; j++)
            destination[b, h, i, j] = 0;
        for (int b = 0; b < destination.Length0; b++)
        for (int h = 0; h < destination.Length1; h++)
        for (int i = 0; i < destination.Length2; i++)
        for (int j = 0; j < destination.Length3; j++)
            destination[b, h, i, j] += scores[b, h, i, j];
    }

    /// <summary>The per-pair gradients held dense, [B, Hq, Lq, Lk] row-major at <paramref name="scores"/>.</summary>
    public static void Into(RawStrided4<float> destination, float* scores) =>
        Into(destination, new RawStrided4<float>(scores, destination.Length0, destination.Length1, destination.Length2, destination.Length3,
            (nint)destination.Length1 * destination.Length2 * destination.Length3, (nint)destination.Length2 * destination.Length3, destination.Length3, 1));
}
