using AttentionEngine.Kernels.Quantization;

namespace AttentionEngine.Kernels.Cpu.Int8Scores;

/// <summary>
/// A call's keys quantised for int8 scores (<see cref="Int8ScoreQuantizer"/>), made once per call before the row tiles
/// run (<see cref="QuantizeBlock{T}"/>): per (batch, KV head) the keys' int16 lanes [Lk][PaddedDim], their scales [Lk],
/// and per block of 64 keys its mean [D] and whether it is usable. <see cref="IsRequested"/> alone marks a job whose
/// call asked for int8 scores; the memory is bound by <see cref="Bind"/>.
/// </summary>
internal readonly unsafe struct Int8ScoreKeys
{
    public bool IsRequested { get; init; }
    public short* Keys { get; init; }
    public float* Scales { get; init; }
    public float* Means { get; init; }
    public byte* Usable { get; init; }
    public int PaddedDim { get; init; }
    public int Blocks { get; init; }
    private int KeyLength { get; init; }
    private int KvHeads { get; init; }
    private int HeadDim { get; init; }

    /// <summary>Bytes of a job's quantised keys (each region rounded to 64 bytes).</summary>
    public static long Bytes<T>(in CpuAttentionJob<T> job) where T : unmanaged
    {
        long heads = (long)job.Batch * job.KvHeads, blocks = BlockCount(job.KeyLength);
        return Round(heads * job.KeyLength * Int8ScoreQuantizer.PaddedDim(job.HeadDim) * sizeof(short)) + Round(heads * job.KeyLength * sizeof(float))
            + Round(heads * blocks * job.HeadDim * sizeof(float)) + Round(heads * blocks);
    }

    /// <summary>The job's quantised keys laid out from <paramref name="memory"/> (<see cref="Bytes{T}"/> of it).</summary>
    public static Int8ScoreKeys Bind<T>(in CpuAttentionJob<T> job, byte* memory) where T : unmanaged
    {
        long heads = (long)job.Batch * job.KvHeads, blocks = BlockCount(job.KeyLength);
        int paddedDim = Int8ScoreQuantizer.PaddedDim(job.HeadDim);
        byte* at = memory;
        byte* Take(long bytes) { byte* region = at; at += Round(bytes); return region; }
        return new Int8ScoreKeys
        {
            IsRequested = true,
            Keys = (short*)Take(heads * job.KeyLength * paddedDim * sizeof(short)),
            Scales = (float*)Take(heads * job.KeyLength * sizeof(float)),
            Means = (float*)Take(heads * blocks * job.HeadDim * sizeof(float)),
            Usable = Take(heads * blocks),
            PaddedDim = paddedDim, Blocks = (int)blocks, KeyLength = job.KeyLength, KvHeads = job.KvHeads, HeadDim = job.HeadDim,
        };
    }

    /// <summary>Blocks of the call: (Batch · KvHeads) · Blocks quantisation tasks.</summary>
    public static int BlockCount(int keyLength) => (keyLength + Int8ScoreQuantizer.KeyBlock - 1) / Int8ScoreQuantizer.KeyBlock;

    /// <summary>First int16 row of key <paramref name="key"/> of (batch, kvHead); rows are <see cref="PaddedDim"/> apart.</summary>
    public short* KeyRow(int batch, int kvHead, int key) => Keys + (Head(batch, kvHead) * KeyLength + key) * PaddedDim;

    public float* KeyScales(int batch, int kvHead, int key) => Scales + Head(batch, kvHead) * KeyLength + key;

    public float* Mean(int batch, int kvHead, int block) => Means + (Head(batch, kvHead) * Blocks + block) * HeadDim;

    public bool IsUsable(int batch, int kvHead, int block) => Usable[Head(batch, kvHead) * Blocks + block] != 0;

    /// <summary>
    /// Quantises block <paramref name="task"/> % Blocks of head <paramref name="task"/> / Blocks: the keys are read as
    /// floats (any storage type, strides or int8 keys and values) into the thread's key scratch and smoothed there.
    /// </summary>
    public static void QuantizeBlock<T>(in CpuAttentionJob<T> job, int task, CpuTileScratch scratch) where T : unmanaged
    {
        var q = job.Int8Scores;
        int head = task / q.Blocks, block = task % q.Blocks;
        int batch = head / job.KvHeads, kvHead = head % job.KvHeads;
        int firstKey = block * Int8ScoreQuantizer.KeyBlock, count = Math.Min(Int8ScoreQuantizer.KeyBlock, job.KeyLength - firstKey);
        for (int j = 0; j < count; j++) KeyValueRows.Key(job, batch, kvHead, firstKey + j, scratch.Keys + j * job.HeadDim);
        bool usable = Int8ScoreQuantizer.QuantizeKeyBlock(scratch.Keys, job.HeadDim, count, job.HeadDim, q.Mean(batch, kvHead, block),
            q.KeyRow(batch, kvHead, firstKey), q.PaddedDim, q.KeyScales(batch, kvHead, firstKey));
        q.Usable[q.Head(batch, kvHead) * q.Blocks + block] = usable ? (byte)1 : (byte)0;
    }

    private long Head(int batch, int kvHead) => (long)batch * KvHeads + kvHead;

    private static long Round(long bytes) => (bytes + 63) / 64 * 64;
}
