using AttentionEngine.Bindings.Memory;
using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Gemm;

/// <summary>
/// One thread's GEMM buffers, carved from one aligned native block and kept between calls (a steady stream of
/// products allocates nothing): the packed A block, the packed B block of its task, the float tile of C when C is not
/// written in place (16-bit or strided output), one micro-tile for the edges, the task's bias in float, and
/// 16-bit runs widened for the transposing packers.
/// </summary>
internal sealed unsafe class GemmScratch
{
    private AlignedMemoryHandle? _memory;
    private nuint _capacity;

    public float* PackedA;
    public float* PackedB;
    public float* Tile;
    public float* Edge;
    public float* Bias;
    public float* Widened;

    /// <summary>
    /// This thread's scratch (per nesting depth), sized for a task tile of <paramref name="tileRows"/> x
    /// <paramref name="tileColumns"/>; without <paramref name="packsB"/> the tasks read a shared packed B and get no B block.
    /// </summary>
    public static GemmScratch For(int microRows, int microColumns, int tileRows, int tileColumns, bool needsTile, bool packsB = true)
    {
        var scratch = NestedPerThread<GemmScratch>.Current;
        scratch.Ensure(microRows, microColumns, tileRows, tileColumns, needsTile, packsB);
        return scratch;
    }

    private void Ensure(int microRows, int microColumns, int tileRows, int tileColumns, bool needsTile, bool packsB)
    {
        static nuint Round(long floats) => (nuint)((floats + 15) / 16 * 16); // 64-byte aligned regions
        nuint a = Round((long)GemmBlocking.RoundUp(GemmBlocking.MC, microRows) * GemmBlocking.KC + GemmPacking.PanelSlack);
        nuint b = packsB ? Round((long)tileColumns * GemmBlocking.KC) : 0;
        nuint tile = needsTile ? Round((long)tileRows * tileColumns) : 0;
        nuint edge = Round((long)microRows * microColumns);
        nuint bias = Round(tileColumns);
        nuint widening = Round(GemmPacking.WideningFloats);
        nuint total = a + b + tile + edge + bias + widening;
        if (total > _capacity)
        {
            _memory?.Dispose();
            _memory = AlignedMemoryHandle.Allocate(total * sizeof(float));
            _capacity = total;
        }
        float* at = (float*)_memory!.DangerousGetHandle();
        PackedA = at;
        PackedB = at + a;
        Tile = at + a + b;
        Edge = at + a + b + tile;
        Bias = Edge + edge;
        Widened = Bias + bias;
    }
}
