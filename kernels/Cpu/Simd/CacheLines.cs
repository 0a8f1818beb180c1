using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace AttentionEngine.Kernels.Cpu.Simd;

/// <summary>Software requests for cache lines a kernel will read soon (into L1); no effect on any value.</summary>
internal static unsafe class CacheLines
{
    /// <summary>Requests every line of [start, start + bytes): one per 64 bytes, and the last when the span does not start on a line.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Request(void* start, long bytes)
    {
        if (!Sse.IsSupported || bytes <= 0) return;
        byte* first = (byte*)start;
        for (long line = 0; line < bytes; line += 64) Sse.Prefetch0(first + line);
        Sse.Prefetch0(first + bytes - 1);
    }
}
