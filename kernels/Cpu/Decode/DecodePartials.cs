using AttentionEngine.Kernels.Cpu.Threading;

namespace AttentionEngine.Kernels.Cpu.Decode;

/// <summary>
/// The per-split results of one decode call, before the merge: for every (batch, KV head, split) its rows'
/// unnormalised outputs [rows][DvPad], then their maxima [rows], sums [rows] and accumulator scales [rows] (1, or
/// 2^-32 where the guarded pass scaled a split that met huge values). The buffer belongs to the calling
/// thread (which waits for the whole call), is reused by its next call and grows only when a call needs more.
/// Its size is O(batch · heads · rows · splits · Dv), splits = Lk / 1024: about the size of K and V divided by 500.
/// </summary>
internal sealed unsafe class DecodePartials : GrowingBuffer
{
    private int _rows, _dvPad;

    public float* Base { get; private set; }

    public static DecodePartials For(long slots, int rows, int dvPad)
    {
        var partials = NestedPerThread<DecodePartials>.Current;
        partials.Base = (float*)partials.Ensure(slots * SlotFloats(rows, dvPad) * sizeof(float));
        partials._rows = rows;
        partials._dvPad = dvPad;
        return partials;
    }

    private static long SlotFloats(int rows, int dvPad) => (long)rows * (dvPad + 3);

    public float* Output(long slot) => Base + slot * SlotFloats(_rows, _dvPad);
    public float* Max(long slot) => Output(slot) + (long)_rows * _dvPad;
    public float* Sum(long slot) => Max(slot) + _rows;
    public float* Scale(long slot) => Sum(slot) + _rows;
}
