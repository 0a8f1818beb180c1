using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// The tile kernel's once-per-call float copies of K and V (<see cref="KeyValueWidening"/>) change no bit of any result
/// against staging every block per tile, over generated problems (Half, BFloat16, and float in strided layouts), hostile
/// values included. The property suites check the results themselves against the oracle with the copies on.
/// </summary>
public class KeyValueWideningTests
{
    private static readonly ProblemLimits Limits = new() { MaxLength = 300, MaxCost = 3e7 };

    [Fact] public void Copies_change_no_bit_f16() => Check<Half>(40, 21);
    [Fact] public void Copies_change_no_bit_bf16() => Check<BFloat16>(40, 22);
    [Fact] public void Copies_change_no_bit_f32() => Check<float>(40, 23);

    private static void Check<T>(int count, ulong seed) where T : unmanaged
    {
        int widened = 0;
        foreach (var spec in AttentionGen.Sample(count, seed, Limits))
        {
            using var problem = AttentionProblem<T>.Create(spec);
            CopiesChangeNoBit(problem, spec);
            if (problem.Shape.QueryLength > 8) widened++;
        }
        Assert.True(widened >= count / 4, $"only {widened} of {count} problems took the tile kernel");
    }

    /// <summary>
    /// Float rows read in place but scattered (PyTorch's [B, S, H, D]: keys of a head H·D floats apart) are gathered
    /// into copies when many tiles read each key. The generator's problems are too short for that, so these are made
    /// long: 19 row tiles per KV head, GQA, every mask kind the spec offers, hostile values where the spec draws them.
    /// </summary>
    [Theory]
    [InlineData(ValueDistribution.Outliers, false, BiasKind.None, KeepMaskKind.None)]
    [InlineData(ValueDistribution.Large, true, BiasKind.PerHead, KeepMaskKind.None)]
    [InlineData(ValueDistribution.Normal, false, BiasKind.None, KeepMaskKind.Random)]
    [InlineData(ValueDistribution.NearRangeEdge, true, BiasKind.KeyPadding, KeepMaskKind.None)]
    public void Scattered_float_rows_are_copied_and_change_no_bit(ValueDistribution values, bool causal, BiasKind bias, KeepMaskKind keep)
    {
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 16, KvHeads = 8, QueryLength = 600, KeyLength = 600, HeadDim = 64, ValueDim = 64,
            Layout = MemoryLayout.Bshd, Causal = causal ? CausalAlignment.TopLeft : null, Bias = bias, KeepMask = keep,
            Values = values, DataSeed = 7,
        };
        using var problem = AttentionProblem<float>.Create(spec);
        CopiesChangeNoBit(problem, spec);
    }

    /// <summary>The gathered copies' results against the oracle: the smallest problem that still gathers (8 KV heads of 64: rows 2 KB apart; 9 tiles per head).</summary>
    [Fact]
    public void Scattered_float_rows_copied_meet_the_rule()
    {
        var spec = new ProblemSpec
        {
            Batch = 1, QueryHeads = 8, KvHeads = 8, QueryLength = 520, KeyLength = 300, HeadDim = 64, ValueDim = 64,
            Layout = MemoryLayout.Bshd, Bias = BiasKind.PerHead, Values = ValueDistribution.Outliers, DataSeed = 8,
        };
        Assert.True(Pays(Job<float>(queries: 520, keys: 300, pitch: 8 * 64) with { QueryHeads = 8 }, 64, 64, 16, out _, out _));
        using var problem = AttentionProblem<float>.Create(spec);
        var verdict = CaseVerifier.VerifyBackend(Attention.Using(Backend.Cpu), problem, 7);
        Assert.True(verdict.Passed, string.Join("; ", verdict.Failures));
    }

    [Fact]
    public void Scattered_float_rows_are_copied_only_where_many_tiles_read_each_key()
    {
        const int tileRows = 64, block = 64, vector = 16;
        // [B, S, H, D] with 8 KV heads of 64: rows 2 KB apart; 600 query rows per KV head: 10 tiles read every key.
        Assert.True(Pays(Job<float>(queries: 300, keys: 520, pitch: 8 * 64), tileRows, block, vector, out bool keys, out bool values));
        Assert.True(keys && values);
        // Rows 1 KB apart stay in place, as do contiguous rows.
        Assert.False(Pays(Job<float>(queries: 300, keys: 520, pitch: 4 * 64), tileRows, block, vector, out _, out _));
        Assert.False(Pays(Job<float>(queries: 300, keys: 520, pitch: 64), tileRows, block, vector, out _, out _));
        // Four tiles per key: a gather does not pay, a conversion does.
        Assert.False(Pays(Job<float>(queries: 128, keys: 520, pitch: 8 * 64), tileRows, block, vector, out _, out _));
        Assert.True(Pays(Job<BFloat16>(queries: 128, keys: 520, pitch: 8 * 64), tileRows, block, vector, out keys, out values));
        Assert.True(keys && values);
    }

    private static bool Pays<T>(CpuAttentionJob<T> job, int tileRows, int block, int vector, out bool keys, out bool values) where T : unmanaged =>
        KeyValueWidening.Pays(job, tileRows, block, dvPad: 64, vector, hasBlockMask: false, out keys, out values);

    private static unsafe CpuAttentionJob<T> Job<T>(int queries, int keys, int pitch) where T : unmanaged
    {
        // Pays reads lengths and strides only; no element is touched.
        var rows = new AttentionEngine.Kernels.Tensors.RawStrided4<T>((T*)64, 1, 8, keys, 64, 0, 64, pitch, 1);
        return new()
        {
            Batch = 1, QueryHeads = 16, KvHeads = 8, QueryLength = queries, KeyLength = keys, HeadDim = 64, ValueDim = 64,
            Scale = 1, Band = DiagonalBand.All, Q = default, K = rows, V = rows, Output = default,
        };
    }

    /// <summary>The problem run with the copies and without them (every block staged per tile) gives the same bits.</summary>
    private static void CopiesChangeNoBit<T>(AttentionProblem<T> problem, ProblemSpec spec) where T : unmanaged
    {
        AttentionResult with, without;
        lock (Toggle)
        {
            with = problem.Run(Attention.Using(Backend.Cpu));
            KeyValueWidening.Enabled = false;
            try { without = problem.Run(Attention.Using(Backend.Cpu)); }
            finally { KeyValueWidening.Enabled = true; }
        }
        SameBits.Equal(with, without, spec.ToString());
    }

    private static readonly object Toggle = new();
}
