using AttentionEngine.Kernels.Cpu.Threading;
using AttentionEngine.Bindings.Memory;

namespace AttentionEngine.Kernels.Cpu.Backward;

/// <summary>
/// One worker's backward buffers beside its <see cref="CpuTileScratch"/> (which holds Qᵀ, the score block and the
/// staged K/V blocks): dOᵀ, row-major Q and dO, dP (then dS), the gradient accumulators and per-row
/// LSE and D. Per thread, reused, grown on demand; O(threads × tile), never O(Lq × Lk).
/// </summary>
internal sealed unsafe class BackwardScratch
{
    private AlignedMemoryHandle? _memory;
    private nuint _capacity;

    public float* OutputGradT; // [DvPad][Br]  dO of the row tile, transposed
    public float* QueryRows;   // [Br][DPad]   Q rows
    public float* OutputGrad;  // [Br][DvPad]  dO rows
    public float* ProbGrad;    // [Bc][Br]     dP = dO·Vᵀ, then dS
    public float* ScoreRaw;    // [Bc][Br]     scaled scores before the score functor (for its derivative)
    public float* QueryGrad;   // [Br][DPad]   dQ accumulators
    public float* KeyGrad;     // [Bc][DPad]   dK accumulators
    public float* ValueGrad;   // [Bc][DvPad]  dV accumulators
    public float* RowLse;      // [Br]         LSE (+inf on padding and empty rows: P = 0 there), or the recomputed max where the LSE is coarse
    public float* RowNorm;     // [Br]         1, or 1 / (recomputed sum) where the LSE is coarse: P = e^(s − RowLse) · RowNorm
    public float* RowD;        // [Br]         D = rowsum(dO ∘ O)
    public float* Ones;        // [max(Br, Bc)]

    private AlignedMemoryHandle? _headKeyValueGradient;

    /// <summary>This thread's dK and dV buffer for the single-pass backward of one (batch, KV head): O(Lk · (D + Dv)).</summary>
    public float* HeadKeyValueGradient(long floats)
    {
        long bytes = Math.Max(floats, 16) * sizeof(float);
        if (_headKeyValueGradient is null || (long)_headKeyValueGradient.ByteCount < bytes)
        {
            _headKeyValueGradient?.Dispose();
            _headKeyValueGradient = AlignedMemoryHandle.Allocate((nuint)bytes);
        }
        return (float*)_headKeyValueGradient.DangerousGetHandle();
    }

    public static BackwardScratch For(int br, int bc, int dPad, int dvPad)
    {
        var scratch = NestedPerThread<BackwardScratch>.Current;
        scratch.Ensure(br, bc, dPad, dvPad);
        return scratch;
    }

    private void Ensure(int br, int bc, int dPad, int dvPad)
    {
        static nuint Round(long floats) => (nuint)((floats + 15) / 16 * 16);
        Span<nuint> sizes =
        [
            Round((long)dvPad * br), Round((long)br * dPad), Round((long)br * dvPad), Round((long)bc * br),
            Round((long)br * dPad), Round((long)bc * dPad), Round((long)bc * dvPad), Round(br), Round(br), Round(Math.Max(br, bc)),
            Round((long)bc * br), Round(br),
        ];
        nuint total = 0;
        foreach (var size in sizes) total += size;
        if (total > _capacity)
        {
            _memory?.Dispose();
            _memory = AlignedMemoryHandle.Allocate(total * sizeof(float));
            _capacity = total;
        }
        float* at = (float*)_memory!.DangerousGetHandle();
        float* Take(nuint size) { float* region = at; at += size; return region; }
        OutputGradT = Take(sizes[0]); QueryRows = Take(sizes[1]); OutputGrad = Take(sizes[2]); ProbGrad = Take(sizes[3]);
        QueryGrad = Take(sizes[4]); KeyGrad = Take(sizes[5]); ValueGrad = Take(sizes[6]); RowLse = Take(sizes[7]); RowD = Take(sizes[8]);
        Ones = Take(sizes[9]); ScoreRaw = Take(sizes[10]); RowNorm = Take(sizes[11]);
        new Span<float>(Ones, Math.Max(br, bc)).Fill(1f);
    }
}
