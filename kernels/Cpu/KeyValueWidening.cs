using AttentionEngine.Kernels.Tensors;

namespace AttentionEngine.Kernels.Cpu;

/// <summary>
/// Float copies of K and V, made once per call for the tile kernel. Without them every row tile widens (Half,
/// BFloat16) or gathers (strided rows) the same key and value blocks again: at N = 1024 with 24-row tiles, each key
/// of a head is converted 43 times, and a Half widening costs about ten vector operations. With them each element is
/// converted once, and tiles read contiguous float rows in place. The copies hold exactly what staging would have
/// produced (the conversion is exact), so no result changes by a bit.
/// </summary>
internal static unsafe class KeyValueWidening
{
    /// <summary>Largest copy made (K and V together); longer calls keep staging per tile.</summary>
    public const long MaxBytes = 256L << 20;

    /// <summary>For tests: compare results with and without the copies.</summary>
    internal static bool Enabled { get; set; } = true;

    /// <summary>Bytes of the copies the job needs: K rows of D floats, V rows of DvPad floats (zero padded).</summary>
    public static long Bytes<T>(in CpuAttentionJob<T> job, int dvPad, bool keys, bool values) where T : unmanaged =>
        (long)job.Batch * job.KvHeads * job.KeyLength * ((keys ? job.HeadDim : 0) + (values ? dvPad : 0)) * sizeof(float);

    /// <summary>Smallest row pitch, in bytes, at which float rows read in place count as scattered.</summary>
    public const int ScatteredPitch = 2048;

    /// <summary>Tile reads per key, on average, from which copies of scattered float rows pay.</summary>
    public const int ScatteredReads = 8;

    /// <summary>
    /// Whether copies pay: the tile kernel would stage keys or values (or read float rows scattered at least
    /// <see cref="ScatteredPitch"/> bytes apart), no block mask skips blocks (a copy would convert keys no tile reads),
    /// the copy fits <see cref="MaxBytes"/>, and the tiles would read each key at least twice on average (the band decides
    /// how many keys each tile reads), or <see cref="ScatteredReads"/> times where the copy only gathers.
    /// </summary>
    /// <remarks>
    /// Why scattered rows: with Q, K and V in PyTorch's [B, S, H, D] layout (or a fused projection's [B, S, 3·H·D]),
    /// consecutive keys of a head lie H·D floats apart, each on its own 4 KB page and, at power-of-two pitches, in the same
    /// few L1 sets; the hardware prefetchers do not cross pages. At B1 H16 N2048 D64 the tiles took 1.1-1.3x the time
    /// they take on [B, H, S, D] rows. A gathered copy costs one read and one write of K and V, which pays only when the
    /// tiles read each key many times (on a Zen 5: about 1.1x the time at N256, 0.9x at N2048).
    /// </remarks>
    public static bool Pays<T>(in CpuAttentionJob<T> job, int tileRows, int keyBlock, int dvPad, int vectorCount, bool hasBlockMask,
        out bool keys, out bool values) where T : unmanaged
    {
        // With int8 scores tiles read the quantised keys; only the rare float fallback stages a key block.
        bool convertKeys = !TileStaging.KeysInPlace(job, job.HeadDim) && !job.Int8Scores.IsRequested;
        bool convertValues = !TileStaging.ValuesInPlace(job, vectorCount);
        bool scatteredKeys = !convertKeys && !job.Int8Scores.IsRequested && Scattered(job.K.Stride2, job.HeadDim);
        bool scatteredValues = !convertValues && Scattered(job.V.Stride2, job.ValueDim);
        keys = values = false;
        if (!Enabled || hasBlockMask || !(convertKeys || convertValues || scatteredKeys || scatteredValues)) return false;
        long staged = 0;
        for (int firstRow = 0; firstRow < job.RowsPerKvHead; firstRow += tileRows)
        {
            var rows = new TileRows(firstRow, Math.Min(tileRows, job.RowsPerKvHead - firstRow), job.GroupSize, 0);
            var (firstBlock, keyEnd) = rows.VisibleKeys(job.Band, job.KeyLength, keyBlock);
            staged += Math.Max(0, keyEnd - firstBlock);
        }
        bool gatherPays = staged >= (long)ScatteredReads * job.KeyLength;
        keys = convertKeys || scatteredKeys && gatherPays;
        values = convertValues || scatteredValues && gatherPays;
        return (keys || values) && staged >= 2L * job.KeyLength && Bytes(job, dvPad, keys, values) <= MaxBytes;
    }

    /// <summary>Float rows of <paramref name="width"/> read in place <paramref name="rowStride"/> floats apart: not packed, and at least <see cref="ScatteredPitch"/> bytes apart.</summary>
    private static bool Scattered(nint rowStride, int width) => rowStride != width && Math.Abs(rowStride) * sizeof(float) >= ScatteredPitch;

    /// <summary>The job reading its keys and/or values from copies laid out in <paramref name="memory"/>.</summary>
    public static CpuAttentionJob<T> WithCopies<T>(in CpuAttentionJob<T> job, float* memory, int dvPad, bool keys, bool values) where T : unmanaged
    {
        int b = job.Batch, h = job.KvHeads, n = job.KeyLength, d = job.HeadDim;
        var wideK = keys ? new RawStrided4<float>(memory, b, h, n, d, (nint)h * n * d, (nint)n * d, d, 1) : default;
        float* valueBase = memory + (keys ? (long)b * h * n * d : 0);
        var wideV = values ? new RawStrided4<float>(valueBase, b, h, n, dvPad, (nint)h * n * dvPad, (nint)n * dvPad, dvPad, 1) : default;
        return job with { WideK = wideK, WideV = wideV };
    }

    /// <summary>Fills the copies of one (batch, KV head): task <paramref name="head"/> = batch · KvHeads + kvHead.</summary>
    public static void WidenHead<T>(in CpuAttentionJob<T> job, int head) where T : unmanaged
    {
        int batch = head / job.KvHeads, kvHead = head % job.KvHeads;
        if (!job.WideK.IsEmpty)
        {
            for (int j = 0; j < job.KeyLength; j++)
                KeyValueRows.Key(job, batch, kvHead, j, &job.WideK.Base[job.WideK.Offset(batch, kvHead, j, 0)]);
        }
        if (!job.WideV.IsEmpty)
        {
            int dvPad = job.WideV.Length3;
            for (int j = 0; j < job.KeyLength; j++)
            {
                float* row = &job.WideV.Base[job.WideV.Offset(batch, kvHead, j, 0)];
                KeyValueRows.Value(job, batch, kvHead, j, row);
                for (int x = job.ValueDim; x < dvPad; x++) row[x] = 0;
            }
        }
    }
}
