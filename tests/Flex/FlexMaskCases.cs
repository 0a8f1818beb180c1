using AttentionEngine.Testing;

namespace AttentionEngine.Tests;

/// <summary>
/// A mask functor drawn for a problem, as a block mask plus its meaning pair by pair (empty blocks hide, full show,
/// partial ask the functor), which the dense keep-mask the Reference backend gets is built from.
/// </summary>
internal abstract class FlexMaskCase
{
    public abstract string Name { get; }
    public abstract IAttentionForward Candidate(AttentionBackend backend);

    /// <summary>The backward pass of the case's block mask on <paramref name="backend"/>.</summary>
    public abstract void Backward<T>(AttentionBackend backend, NativeTensor<T> q, NativeTensor<T> k, NativeTensor<T> v, NativeTensor<T> output,
        NativeTensor<float> lse, NativeTensor<T> dOutput, NativeTensor<T> dQ, NativeTensor<T> dK, NativeTensor<T> dV, in AttentionOptions options)
        where T : unmanaged;
    /// <summary>The backward pass of the case's block mask on device tensors (the CUDA backend's device overload).</summary>
    public abstract void DeviceBackward<T>(CudaBackend backend, DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
        DeviceTensor<float> lse, DeviceTensor<T> dOutput, DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, in AttentionOptions options)
        where T : unmanaged;
    public abstract bool Visible(int batch, int head, int query, int key);

    /// <summary>The case's visibility as an explicit [B, Hq, Lq, Lk] keep-mask, written pair by pair.</summary>
    public NativeTensor<bool> Dense(AttentionShape shape)
    {
        var keep = NativeTensor<bool>.Zeros(shape.Batch, shape.QueryHeads, shape.QueryLength, shape.KeyLength);
        for (int b = 0; b < shape.Batch; b++)
        for (int h = 0; h < shape.QueryHeads; h++)
        for (int i = 0; i < shape.QueryLength; i++)
        for (int j = 0; j < shape.KeyLength; j++)
            keep[b, h, i, j] = Visible(b, h, i, j);
        return keep;
    }

    public override string ToString() => Name;

    /// <summary>One of the built-ins, a composition, or a random block layout, with a random block size.</summary>
    public static FlexMaskCase Draw(AttentionShape shape, Random random)
    {
        int lq = shape.QueryLength, lk = shape.KeyLength;
        int[] sizes = [16, 64, 100, 128];
        int qBlock = sizes[random.Next(sizes.Length)], kBlock = sizes[random.Next(sizes.Length)];
        int[] Documents(int length, int seed)
        {
            var r = new Random(seed);
            var ids = new int[length];
            for (int n = 1; n < length; n++) ids[n] = ids[n - 1] + (r.Next(12) == 0 ? 1 : 0);
            return ids;
        }
        int seed = random.Next();
        switch (random.Next(9))
        {
            case 0: return Of("causal-BR", Mask.Causal(CausalAlignment.BottomRight).ToFunctor(lq, lk), shape, qBlock, kBlock, random);
            case 1: return Of("window", Mask.SlidingWindow(random.Next(40), random.Next(3)).ToFunctor(lq, lk), shape, qBlock, kBlock, random);
            case 2: return Of("prefix-lm", new PrefixLmMask(random.Next(lk + 1)), shape, qBlock, kBlock, random);
            case 3:
                var documents = Documents(Math.Max(lq, lk), seed);
                return Of("documents", new DocumentMask(documents[..lq], documents[..lk], random.Next(2) == 0), shape, qBlock, kBlock, random);
            case 4: return Of("dilated", new DilatedMask(1 + random.Next(4), random.Next(80)), shape, qBlock, kBlock, random);
            case 5: return Of("global", new GlobalTokensMask(random.Next(5), random.Next(20)), shape, qBlock, kBlock, random);
            case 6: return Of("window&documents", MaskMods.And(Mask.SlidingWindow(30, 30).ToFunctor(lq, lk), new DocumentMask(Documents(lq, seed), Documents(lk, seed), false)), shape, qBlock, kBlock, random);
            case 7: return Of("prefix|dilated", MaskMods.Or(new PrefixLmMask(random.Next(20)), new DilatedMask(3, 60)), shape, qBlock, kBlock, random);
            default: return Of("not-causal", MaskMods.Not(Mask.Causal().ToFunctor(lq, lk)), shape, qBlock, kBlock, random);
        }
    }

    private static FlexMaskCase Of<TMask>(string name, TMask mask, AttentionShape shape, int qBlock, int kBlock, Random random)
        where TMask : struct, IMaskMod
    {
        // Per-head masks for some problems (the functor is head-independent, the random layout is not).
        int heads = random.Next(2) == 0 ? 1 : shape.QueryHeads, batch = random.Next(2) == 0 ? 1 : shape.Batch;
        BlockMask<TMask> blocks;
        if (random.Next(4) == 0)
        {
            // A random layout: empty, full and partial blocks mixed, whole rows of empty blocks included.
            int qbs = (shape.QueryLength + qBlock - 1) / qBlock, kbs = (shape.KeyLength + kBlock - 1) / kBlock;
            var layout = new BlockKind[batch * heads * qbs * kbs];
            int emptyRow = random.Next(qbs);
            for (int n = 0; n < layout.Length; n++)
                layout[n] = n / kbs % qbs == emptyRow ? BlockKind.Empty : (BlockKind)random.Next(3);
            blocks = BlockMask.FromLayout(mask, layout, batch, heads, shape.QueryLength, shape.KeyLength, qBlock, kBlock);
            name += "+layout";
        }
        else
        {
            blocks = BlockMask.Create(mask, batch, heads, shape.QueryLength, shape.KeyLength, qBlock, kBlock);
        }
        return new Case<TMask>($"{name} {qBlock}x{kBlock} [{batch},{heads}]", blocks);
    }

    private sealed class Case<TMask>(string name, BlockMask<TMask> blocks) : FlexMaskCase where TMask : struct, IMaskMod
    {
        public BlockMask<TMask> Blocks => blocks;
        public override string Name => name;
        public override IAttentionForward Candidate(AttentionBackend backend) => FlexAttention.Create(blocks, backend);

        public override void Backward<T>(AttentionBackend backend, NativeTensor<T> q, NativeTensor<T> k, NativeTensor<T> v, NativeTensor<T> output,
            NativeTensor<float> lse, NativeTensor<T> dOutput, NativeTensor<T> dQ, NativeTensor<T> dK, NativeTensor<T> dV, in AttentionOptions options) =>
            FlexAttention.Create(blocks, backend).Backward<T>(q, k, v, output, lse, dOutput, dQ, dK, dV, options);

        public override void DeviceBackward<T>(CudaBackend backend, DeviceTensor<T> q, DeviceTensor<T> k, DeviceTensor<T> v, DeviceTensor<T> output,
            DeviceTensor<float> lse, DeviceTensor<T> dOutput, DeviceTensor<T> dQ, DeviceTensor<T> dK, DeviceTensor<T> dV, in AttentionOptions options) =>
            backend.Backward(q, k, v, output, lse, dOutput, dQ, dK, dV, blocks, options);

        public override bool Visible(int batch, int head, int query, int key) =>
            blocks[batch, head, query / blocks.QueryBlock, key / blocks.KeyBlock] switch
            {
                BlockKind.Full => true,
                BlockKind.Partial => blocks.Mask.Keep(batch, head, query, key),
                _ => false,
            };
    }
}
