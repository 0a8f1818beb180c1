using AttentionEngine.Kernels.Cpu;
using AttentionEngine.Testing;

namespace AttentionEngine.Tests.Dropout;

/// <summary>
/// Every forward and backward path draws the mask <see cref="AttentionDropout.IsKept"/> defines, bit for bit: the
/// Reference, each CPU vector width, one thread or two, the tile kernel whatever the query count. The forward's mask is
/// The IlGpu kernel (forward only) runs on ILGPU's CPU accelerator. The forward's mask is read from the weights after dropout (zero exactly where dropped); the backward's from dV with an incoming gradient
/// on one query row only (dV_j = P_ij · m_ij · dO_i is zero exactly where (i, j) is dropped).
/// </summary>
[Collection(nameof(IlGpuCpuAccelerator))]
public class DropoutMaskTests(IlGpuCpuAccelerator accelerator)
{
    private static readonly AttentionDropout Dropout = new(0.4, seed: 0xDEADBEEF_0BADF00D, offset: 9) { InWeights = true };

    private static IEnumerable<AttentionBackend> Backends()
    {
        yield return Attention.Using(Backend.Reference);
        foreach (var isa in new[] { CpuIsa.Avx512, CpuIsa.Avx2, CpuIsa.Vector128 })
            if (new CpuBackend(isa) is { IsAvailable: true } cpu) yield return cpu;
    }

    /// <summary>The forward paths: every backward path, and the IlGpu kernel on ILGPU's CPU accelerator (warps of 32 lanes).</summary>
    private IEnumerable<AttentionBackend> ForwardBackends() => Backends().Append(accelerator.Backend);

    [Theory]
    [InlineData(2, 4, 2, 1, 3)]      // decode shapes: the decode kernel (one split, as weights ask)
    [InlineData(2, 4, 2, 5, 130)]
    [InlineData(1, 3, 1, 77, 70)]    // GQA, rows of three heads interleaved in each tile
    [InlineData(1, 2, 2, 40, 257)]
    public void Every_forward_path_draws_the_mask_IsKept_defines(int batch, int queryHeads, int kvHeads, int lq, int lk)
    {
        using var q = TensorRandom.Create<float>(1, ValueDistribution.Normal, batch, queryHeads, lq, 16);
        using var k = TensorRandom.Create<float>(2, ValueDistribution.Normal, batch, kvHeads, lk, 16);
        using var v = TensorRandom.Create<float>(3, ValueDistribution.Normal, batch, kvHeads, lk, 8);
        using var output = NativeTensor<float>.Zeros(batch, queryHeads, lq, 8);
        using var weights = NativeTensor<float>.Zeros(batch, queryHeads, lq, lk);
        foreach (var backend in ForwardBackends())
        foreach (int threads in backend is CpuBackend ? new[] { 1, 2 } : [1]) // threads are the CPU's business
        {
            weights.Fill(float.NaN);
            backend.Forward<float>(q, k, v, output, new AttentionOptions { Dropout = Dropout, Weights = weights, MaxDegreeOfParallelism = threads });
            for (int b = 0; b < batch; b++)
            for (int h = 0; h < queryHeads; h++)
            for (int i = 0; i < lq; i++)
            for (int j = 0; j < lk; j++)
            {
                bool kept = Dropout.IsKept(b, h, i, j, queryHeads);
                float w = weights[b, h, i, j];
                Assert.True(kept ? w > 0 : w == 0, $"{backend.Name} threads {threads}: ({b}, {h}, {i}, {j}) weight {w}, IsKept {kept}");
            }
        }
    }

    /// <summary>
    /// The mask read through the output, for backends that return no weights (Cuda): with V the identity (key j holds
    /// the unit vector e_j), output(i, j) = P(i, j) · m(i, j), zero exactly where (i, j) is dropped. Two row blocks of the
    /// CUDA kernel (64 rows each), fp32 (3xTF32 on tensor cores).
    /// </summary>
    [Fact]
    public void Every_forward_path_draws_the_mask_read_through_an_identity_value_matrix()
    {
        foreach (var backend in ForwardBackends()) CheckThroughIdentityValues(backend);
    }

    /// <summary>
    /// The mask read through the output, for backends that return no weights (Cuda, whose tests call this in their own
    /// collection): with V the identity (key j holds the unit vector e_j), output(i, j) = P(i, j) · m(i, j), zero
    /// exactly where (i, j) is dropped. Two row blocks of the CUDA kernel (64 rows each), fp32.
    /// </summary>
    internal static void CheckThroughIdentityValues(AttentionBackend backend)
    {
        const int heads = 2, lq = 70, lk = 64;
        using var q = TensorRandom.Create<float>(7, ValueDistribution.Normal, 1, heads, lq, lk);
        using var k = TensorRandom.Create<float>(8, ValueDistribution.Normal, 1, heads, lk, lk);
        using var v = NativeTensor<float>.Zeros(1, heads, lk, lk);
        for (int h = 0; h < heads; h++)
        for (int j = 0; j < lk; j++) v[0, h, j, j] = 1f;
        using var output = NativeTensor<float>.Zeros(1, heads, lq, lk);
        output.Fill(float.NaN);
        backend.Forward<float>(q, k, v, output, new AttentionOptions { Dropout = Dropout, Scale = 0.05f });
        for (int h = 0; h < heads; h++)
        for (int i = 0; i < lq; i++)
        for (int j = 0; j < lk; j++)
        {
            bool kept = Dropout.IsKept(0, h, i, j, heads);
            float o = output[0, h, i, j];
            Assert.True(kept ? o > 0 : o == 0, $"{backend.Name}: output ({h}, {i}, {j}) {o}, IsKept {kept}");
        }
    }

    [Theory]
    [InlineData(2, 2, 37, 70)]
    [InlineData(1, 1, 9, 200)]
    public void Every_backward_path_redraws_the_same_mask(int batch, int heads, int lq, int lk)
    {
        using var q = TensorRandom.Create<float>(4, ValueDistribution.Normal, batch, heads, lq, 16);
        using var k = TensorRandom.Create<float>(5, ValueDistribution.Normal, batch, heads, lk, 16);
        using var v = TensorRandom.Create<float>(6, ValueDistribution.Normal, batch, heads, lk, 8);
        using var output = NativeTensor<float>.Zeros(batch, heads, lq, 8);
        using var lse = NativeTensor<float>.Zeros(batch, heads, lq);
        using var dOutput = NativeTensor<float>.Zeros(batch, heads, lq, 8);
        using var dq = NativeTensor<float>.Zeros(batch, heads, lq, 16);
        using var dk = NativeTensor<float>.Zeros(batch, heads, lk, 16);
        using var dv = NativeTensor<float>.Zeros(batch, heads, lk, 8);
        var options = new AttentionOptions { Dropout = Dropout, Lse = lse };
        foreach (var backend in Backends())
        {
            backend.Forward<float>(q, k, v, output, options);
            foreach (int row in new[] { 0, lq / 2, lq - 1 })
            {
                dOutput.Fill(0f);
                for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                for (int c = 0; c < 8; c++) dOutput[b, h, row, c] = 1f;
                backend.Backward<float>(q, k, v, output, lse, dOutput, dq, dk, dv, options);
                for (int b = 0; b < batch; b++)
                for (int h = 0; h < heads; h++)
                for (int j = 0; j < lk; j++)
                {
                    bool kept = Dropout.IsKept(b, h, row, j, heads);
                    float g = dv[b, h, j, 0];
                    Assert.True(kept ? g > 0 : g == 0, $"{backend.Name}: dV at ({b}, {h}, key {j}) for row {row} is {g}, IsKept {kept}");
                }
            }
        }
    }
}
