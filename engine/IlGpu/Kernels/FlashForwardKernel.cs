using ILGPU;
using ILGPU.Algorithms;

namespace AttentionEngine.Kernels.IlGpu;

/// <summary>
/// The ILGPU flash-attention forward: one warp per query row, a group of <c>warps</c> rows sharing each key/value
/// tile in shared memory, the tile's keys along the lanes (lane l scores keys l, l + WarpSize, …, as the CPU decode
/// kernel lays keys out), online softmax in fp32 with warp reductions from ILGPU.Algorithms.
/// <para>
/// Grid: B·Hq·⌈Lq / warps⌉ groups of warps × WarpSize threads. A tile holds WarpSize · keysPerLane keys
/// (keysPerLane from <see cref="KeysPerLane"/>: the larger the tile, the fewer group barriers per key). Shared memory
/// (floats): the tile, rows padded to maxDim + 1 so lanes reading their own key rows hit different banks, holding K and
/// then V; the warps' query rows (warps × D); the warps' probabilities (warps × tile keys). Each lane owns output
/// columns lane, lane + WarpSize, … (at most <see cref="MaxColumnsPerLane"/>).
/// </para>
/// </summary>
internal static class FlashForwardKernel
{
    /// <summary>Output columns one lane accumulates: Dv ≤ 256 with warps of at least 16 lanes.</summary>
    public const int MaxColumnsPerLane = 16;

    /// <summary>2^96: below it, at most 2^31 keys of weight ≤ 1 never overflow a column's unnormalised sum.</summary>
    private const float HugeValue = 79228162514264337593543950336f;

    /// <summary>2^-32: the scale of a column's sum once it has met a huge value.</summary>
    private const float AccumulatorScale = 1f / 4294967296f;

    /// <summary>Most keys a lane scores per tile.</summary>
    public const int MaxKeysPerLane = 4;

    /// <summary>Floats of dynamic shared memory a launch needs.</summary>
    public static int SharedFloats(int warpSize, int warps, int keysPerLane, int headDim, int valueDim) =>
        warpSize * keysPerLane * (Math.Max(headDim, valueDim) + 1) + warps * headDim + warps * warpSize * keysPerLane;

    /// <summary>The most keys per lane (up to <see cref="MaxKeysPerLane"/>) whose tile fits <paramref name="sharedBytes"/>; 0 when none does.</summary>
    public static int KeysPerLane(int warpSize, int warps, int headDim, int valueDim, long sharedBytes)
    {
        for (int m = MaxKeysPerLane; m >= 1; m--)
            if ((long)SharedFloats(warpSize, warps, m, headDim, valueDim) * sizeof(float) <= sharedBytes) return m;
        return 0;
    }

    public static void Run<TStorage, TCodec, TMask, TScore>(IlGpuAttentionParams<TStorage> p, int keysPerLane, TMask mask, TScore scoreMod)
        where TStorage : unmanaged where TCodec : struct, IElementCodec<TStorage>
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        var codec = default(TCodec);
        int lanes = Warp.WarpSize, lane = Warp.LaneIdx, warp = Warp.WarpIdx;
        int warps = Group.DimX / lanes, thread = Group.IdxX, groupThreads = Group.DimX;
        int tileKeys = lanes * keysPerLane;
        // One-dimensional grid (no 65,535 limit on heads): group n covers row group n % rowGroups of head n / rowGroups.
        int rowGroups = (p.QueryLength + warps - 1) / warps;
        int bh = Grid.IdxX / rowGroups, b = bh / p.QueryHeads, h = bh % p.QueryHeads, kvh = h / p.GroupSize;
        int i = Grid.IdxX % rowGroups * warps + warp;
        bool rowValid = i < p.QueryLength;
        int d = p.HeadDim, dv = p.ValueDim, pitch = Math.Max(d, dv) + 1;

        var shared = SharedMemory.GetDynamic<float>();
        var tile = shared.SubView(0, tileKeys * pitch);
        var queries = shared.SubView(tileKeys * pitch, warps * d);
        var probabilities = shared.SubView(tileKeys * pitch + warps * d, warps * tileKeys);

        // This warp's query row, converted to float once.
        long qBase = (((long)b * p.QueryHeads + h) * p.QueryLength + i) * d;
        for (int c = lane; c < d; c += lanes)
            queries[warp * d + c] = rowValid ? codec.Load(p.Q[qBase + c]) : 0f;

        var output = LocalMemory.Allocate<float>(MaxColumnsPerLane);
        // Per output column: 1, or 2^-32 once the column has met a value of magnitude ≥ 2^96 (its unnormalised sum
        // could overflow although the average cannot): powers of two, exact, undone after the division by the sum.
        var columnScale = LocalMemory.Allocate<float>(MaxColumnsPerLane);
        var scores = LocalMemory.Allocate<float>(MaxKeysPerLane);
        for (int c = 0; c < MaxColumnsPerLane; c++) { output[c] = 0f; columnScale[c] = 1f; }
        float rowMax = float.NegativeInfinity, rowSum = 0f;
        long kvBase = ((long)b * p.KvHeads + kvh) * p.KeyLength;

        for (int j0 = 0; j0 < p.KeyLength; j0 += tileKeys)
        {
            bool any = false;
            for (int r = 0; r < keysPerLane; r++)
            {
                int j = j0 + r * lanes + lane;
                any |= rowValid && j < p.KeyLength && PairRules.MaybeVisible(p, b, h, i, j);
            }
            // Tiles the band or the block mask hide for every row of the group are never loaded.
            if (!Group.BarrierOr(any)) continue;

            StageTile(p.K, kvBase, j0, tileKeys, p.KeyLength, d, pitch, tile, thread, groupThreads, codec);
            Group.Barrier();

            float tileMax = float.NegativeInfinity;
            for (int r = 0; r < keysPerLane; r++)
            {
                int key = r * lanes + lane, j = j0 + key;
                float score = float.NegativeInfinity;
                if (rowValid && j < p.KeyLength && PairRules.Visible(p, mask, b, h, i, j))
                {
                    float dot = 0f;
                    for (int c = 0; c < d; c++) dot += queries[warp * d + c] * tile[key * pitch + c];
                    score = PairRules.Score(p, scoreMod, dot, b, h, i, j);
                }
                scores[r] = score;
                tileMax = XMath.Max(tileMax, score);
            }

            // Online softmax: rescale what the row has so far to the new maximum; by exactly 1 when it did not move, so a
            // long row whose maximum came early does not drift by a GPU exponential's last bits once per tile.
            float newMax = XMath.Max(rowMax, WarpExtensions.AllReduce<float, NegInfMax>(tileMax));
            float rescale = rowMax == float.NegativeInfinity ? 0f : rowMax == newMax ? 1f : XMath.Exp(rowMax - newMax);
            float laneSum = 0f;
            for (int r = 0; r < keysPerLane; r++)
            {
                float weight = scores[r] == float.NegativeInfinity ? 0f : XMath.Exp(scores[r] - newMax);
                laneSum += weight;
                // Dropout after the row sum took the weight: a dropped key's weight is 0, so its V is never read below.
                if (weight != 0f && p.HasDropout != 0) weight *= p.DropoutFactor(b, h, i, j0 + r * lanes + lane);
                probabilities[warp * tileKeys + r * lanes + lane] = weight;
            }
            // Under dropout the row sum takes the weights before dropout, summed across the lanes here; else below.
            float tileSum = p.HasDropout != 0 ? WarpExtensions.AllReduce<float, FloatSum>(laneSum) : 0f;
            rowMax = newMax;
            Group.Barrier();

            StageTile(p.V, kvBase, j0, tileKeys, p.KeyLength, dv, pitch, tile, thread, groupThreads, codec);
            Group.Barrier();

            int keys = XMath.Min(tileKeys, p.KeyLength - j0);
            for (int c = 0, column = lane; column < dv; c++, column += lanes)
            {
                float sum = output[c] * rescale, scale = columnScale[c];
                for (int r = 0; r < keys; r++)
                {
                    float w = probabilities[warp * tileKeys + r];
                    // A zero weight contributes nothing, even against an infinite or NaN value of a hidden key.
                    if (w == 0f) continue;
                    float x = tile[r * pitch + column];
                    if (scale == 1f && XMath.Abs(x) >= HugeValue)
                    {
                        scale = AccumulatorScale;
                        sum *= AccumulatorScale;
                    }
                    sum += w * (x * scale); // the value scaled, not the weight: a tiny weight times a huge value still counts
                }
                output[c] = sum;
                columnScale[c] = scale;
            }
            if (p.HasDropout == 0)
            {
                // The row sum takes the weights in the order and with the additions each output column takes them, so
                // numerator and denominator round alike and V = 1 gives exactly 1. Summed across the lanes (a tree)
                // instead, a row of 298 keys with outlier values came out 21 ulps off 1, beyond the tolerance rule.
                float total = rowSum * rescale;
                for (int r = 0; r < keys; r++)
                {
                    float w = probabilities[warp * tileKeys + r];
                    if (w != 0f) total += w;
                }
                rowSum = total;
            }
            else rowSum = rowSum * rescale + tileSum; // the weights before dropout, which the probabilities no longer hold
            Group.Barrier();
        }

        if (!rowValid) return;
        long oBase = (((long)b * p.QueryHeads + h) * p.QueryLength + i) * dv;
        bool empty = rowSum == 0f;
        float inverse = empty ? 0f : 1f / rowSum;
        for (int c = 0, column = lane; column < dv; c++, column += lanes)
            p.Output[oBase + column] = codec.Store(empty ? 0f : output[c] * inverse / columnScale[c]);
        if (lane == 0)
        {
            long row = ((long)b * p.QueryHeads + h) * p.QueryLength + i;
            p.Lse[row] = empty ? float.NegativeInfinity : rowMax + XMath.Log(rowSum);
            p.RowMax[row] = rowMax;
            p.RowSum[row] = rowSum;
        }
    }

    /// <summary>Rows j0 … j0 + tileKeys − 1 of K or V into the shared tile (zeros past the last key), by the whole group.</summary>
    private static void StageTile<TStorage, TCodec>(ArrayView<TStorage> source, long kvBase, int j0, int tileKeys, int keyLength, int width, int pitch,
        ArrayView<float> tile, int thread, int groupThreads, TCodec codec)
        where TStorage : unmanaged where TCodec : struct, IElementCodec<TStorage>
    {
        for (int n = thread; n < tileKeys * width; n += groupThreads)
        {
            int r = n / width, c = n - r * width;
            int key = j0 + r;
            tile[r * pitch + c] = key < keyLength ? codec.Load(source[(kvBase + key) * width + c]) : 0f;
        }
    }
}
