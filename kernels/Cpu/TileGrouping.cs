namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// How many row tiles one forward task runs, walking the key blocks once for all of them. Every row tile reads its
/// head's whole K and V; past a core's L2 each tile streamed them again from L3 or memory (B1 H8 N8192 D128: 8 MB per
/// head, 0.57x ONNX Runtime's speed), while a group reads each block once, from L2, for all of its tiles. Each tile
/// computes exactly what it computes alone (the same blocks in the same order), so the grouping changes no bit.
/// </summary>
internal static class TileGrouping
{
    /// <summary>K and V bytes of one head (as floats) beyond which tiles are grouped.</summary>
    public const long Bytes = 1L << 20;

    /// <summary>Row tiles per task when grouped.</summary>
    public const int Tiles = 4;

    /// <summary>Fewest tasks a grouped call keeps, so the threads still share the work evenly.</summary>
    public const int MinTasks = 16;

    /// <summary>
    /// For calls planned on this thread: 1 never groups, 2 always does, 0 decides by size. Read once when a call is
    /// planned and kept in its job (<see cref="CpuAttentionJob{T}.TileGrouping"/>), so every thread of the call agrees.
    /// Tests use it; results do not depend on it.
    /// </summary>
    [ThreadStatic] internal static int Override;

    /// <summary>Tiles per task for a job of <paramref name="heads"/> (batch x KV heads) heads of <paramref name="tilesPerHead"/> tiles.</summary>
    public static int TilesPerTask(int setting, int tilesPerHead, long heads, int keyLength, int headDim, int valueDim)
    {
        if (tilesPerHead < 2 || setting == 1) return 1;
        if (setting == 2) return Math.Min(Tiles, tilesPerHead);
        long bytes = (long)keyLength * (headDim + valueDim) * sizeof(float);
        long tasks = heads * ((tilesPerHead + Tiles - 1) / Tiles);
        return bytes > Bytes && tasks >= MinTasks ? Tiles : 1;
    }
}
