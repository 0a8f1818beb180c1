using AttentionEngine.Kernels.Cpu.Threading;
using AttentionEngine.Bindings.Memory;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// One worker thread's scratch for one tile: Qᵀ, the score block, the output accumulators, staged K and V blocks and
/// the per-row softmax state, carved from one aligned native block. Kept per thread and reused across calls, so a
/// steady stream of calls allocates nothing; it grows only when a call needs a larger tile.
/// </summary>
internal sealed unsafe class CpuTileScratch
{
    private static long _liveBytes;

    /// <summary>Native scratch held by all threads together: O(threads x tile), whatever the sequence lengths.</summary>
    public static long LiveBytes => Interlocked.Read(ref _liveBytes);

    private AlignedMemoryHandle? _memory;
    private nuint _capacity;

    public float* QueryT;       // [D][Br]   queries of the tile, transposed (the decode kernel: [Br][D], row-major)
    public float* Scores;       // [Bc][Br]  scores of one key block, transposed; then probabilities
    public float* Output;       // [Br][DvPad] output accumulators
    public float* Keys;         // [Bc][D]   staged key block (when keys cannot be read in place)
    public float* Values;       // [Bc][DvPad] staged value block (when values cannot be read in place)
    public float* RowMax;       // [Br]  running maximum of the scores
    public float* RowSum;       // [Br]  running sum of probabilities
    public float* RowRescale;   // [Br]  rescale factor of the output accumulators for the current block
    public float* RowBuffer;    // [max(D, DvPad)] one row in float, for conversions
    public int* RowQuery;       // [Br]  query position of each row (padding rows repeat the first row's): dropout counters
    public uint* RowStream;     // [Br]  dropout row stream (batch · H + head) of each row
    public float* Dropout;      // [Bc][Br] dropout multipliers of one key block, in the score layout
    public float* ScaledValues; // [Bc][DvPad] the guarded pass's value block at the accumulator scale 2^-32
    public float* ScaledScores; // [Bc][Br] the guarded pass's probabilities of the rows accumulating at scale 2^-32
    public float* Ones;         // [Br]  1 per row: the rescale of a GEMM that adds to accumulators already rescaled
    public float* RowScale;     // [Br]  scale of each row's output accumulators: 1, or 2^-32 once the row saw a huge value (guarded pass)
    public int* KeyFlags;       // [Bc]  per key of the block: huge or non-finite values (guarded pass)
    public bool OutputUnset;    // the fast pass has not written Output yet: its first key block starts the accumulators at zero
    public int* QueryPairs;     // [D/2][Br] int8 scores: the tile's quantised queries, two int16 lanes per int32
    public float* RowFactor;    // [Br]  int8 scores: each row's quantisation scale times the softmax scale
    public float* RowInverse;   // [Br]  int8 scores: 127 / max |q| per row (0 for a zero row)
    public float* RowUnusable;  // [Br]  int8 scores: all-ones bits where the row is out of the quantiser's range
    public float* RowShift;     // [Br]  int8 scores: scale · (q · key block mean) per row
    public float* RowExact;     // [Br]  int8 scores: all-ones bits where the row takes the block's float scores
    public float* ExactScores;  // [Bc][Br] int8 scores: the block's float scores, for the rows that need them

    /// <summary>This thread's scratch, sized for the tile.</summary>
    public static CpuTileScratch For(int br, int bc, int d, int dvPad)
    {
        var scratch = NestedPerThread<CpuTileScratch>.Current;
        scratch.Ensure(br, bc, d, dvPad);
        return scratch;
    }

    /// <summary>
    /// This thread's scratch for a task of <paramref name="count"/> row tiles (one each; the first is <see cref="For"/>'s,
    /// so a task of one tile uses exactly the memory it always did), kept between calls like it.
    /// </summary>
    public static CpuTileScratch[] Group(int count, int br, int bc, int d, int dvPad)
    {
        var slots = NestedPerThread<GroupSlots>.Current;
        if (slots.Tiles.Length < count)
        {
            var tiles = new CpuTileScratch[count];
            slots.Tiles.CopyTo(tiles, 0);
            tiles[0] = NestedPerThread<CpuTileScratch>.Current;
            for (int i = 1; i < count; i++) tiles[i] ??= new CpuTileScratch();
            slots.Tiles = tiles;
        }
        for (int i = 0; i < count; i++) slots.Tiles[i].Ensure(br, bc, d, dvPad);
        return slots.Tiles;
    }

    private sealed class GroupSlots
    {
        public CpuTileScratch[] Tiles = [];
    }

    private void Ensure(int br, int bc, int d, int dvPad)
    {
        // Every region starts on a 64-byte boundary: sizes are rounded up to 16 floats.
        static nuint Round(long floats) => (nuint)((floats + 15) / 16 * 16);
        Span<nuint> sizes =
        [
            Round((long)d * br), Round((long)bc * br), Round((long)br * dvPad), Round((long)bc * d), Round((long)bc * dvPad),
            Round(br), Round(br), Round(br), Round(Math.Max(d, dvPad)), Round(br), Round(br), Round(br), Round(bc), Round((long)bc * br), Round((long)bc * dvPad), Round((long)bc * br), Round(br),
            Round((long)(d + 1) / 2 * br), Round(br), Round(br), Round(br), Round(br), Round(br), Round((long)bc * br),
        ];
        nuint total = 0;
        foreach (var size in sizes) total += size;
        if (total > _capacity)
        {
            if (_memory is not null) Interlocked.Add(ref _liveBytes, -(long)_memory.ByteCount);
            _memory?.Dispose();
            _memory = AlignedMemoryHandle.Allocate(total * sizeof(float));
            Interlocked.Add(ref _liveBytes, (long)_memory.ByteCount);
            _capacity = total;
        }
        float* at = (float*)_memory!.DangerousGetHandle();
        float* Take(nuint size) { float* region = at; at += size; return region; }
        QueryT = Take(sizes[0]);
        Scores = Take(sizes[1]);
        Output = Take(sizes[2]);
        Keys = Take(sizes[3]);
        Values = Take(sizes[4]);
        RowMax = Take(sizes[5]);
        RowSum = Take(sizes[6]);
        RowRescale = Take(sizes[7]);
        RowBuffer = Take(sizes[8]);
        RowQuery = (int*)Take(sizes[9]);
        RowStream = (uint*)Take(sizes[10]);
        RowScale = Take(sizes[11]);
        KeyFlags = (int*)Take(sizes[12]);
        Dropout = Take(sizes[13]);
        ScaledValues = Take(sizes[14]);
        ScaledScores = Take(sizes[15]);
        Ones = Take(sizes[16]);
        QueryPairs = (int*)Take(sizes[17]);
        RowFactor = Take(sizes[18]);
        RowInverse = Take(sizes[19]);
        RowUnusable = Take(sizes[20]);
        RowShift = Take(sizes[21]);
        RowExact = Take(sizes[22]);
        ExactScores = Take(sizes[23]);
        new Span<float>(Ones, br).Fill(1f);
    }
}
