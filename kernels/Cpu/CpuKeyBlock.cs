namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Keys per block of every CPU kernel (forward tiles, decode splits, backward key tiles), in one place: a multiple of
/// every vector width and of the micro-kernels' 4, and the granularity at which masks skip keys. BlockMask's default
/// block size is the same number, so a default block mask lines up with the kernels' blocks.
/// </summary>
internal static class CpuKeyBlock
{
    public const int Keys = 64;
}
