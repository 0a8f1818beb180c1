using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using AttentionEngine.Kernels.IlGpu;
using ILGPU;
using ILGPU.Runtime;

namespace AttentionEngine;

/// <summary>
/// One validated call on an ILGPU accelerator: copies the inputs in (dense), launches the forward kernel (and the
/// weights kernel when asked), copies output, LSE and weights back into the caller's strided views. Every device
/// buffer is scoped to the call.
/// </summary>
internal static class IlGpuLauncher<T, TStorage, TCodec>
    where T : unmanaged where TStorage : unmanaged where TCodec : struct, IElementCodec<TStorage>
{
    public static void Run<TMask, TScore>(IlGpuSession session, scoped in AttentionCall<T> call, BlockMask<TMask>? blockMask, TScore scoreMod)
        where TMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        var shape = call.Shape;
        long rows = (long)shape.Batch * shape.QueryHeads * shape.QueryLength;
        if (rows == 0) return; // an empty output: nothing to compute or write

        lock (session.Gate)
        {
            var accelerator = session.Accelerator;
            using var q = accelerator.Allocate1D(HostPacking.Dense<T, TStorage>(call.Q));
            using var k = accelerator.Allocate1D(NonEmpty(HostPacking.Dense<T, TStorage>(call.K)));
            using var v = accelerator.Allocate1D(NonEmpty(HostPacking.Dense<T, TStorage>(call.V)));
            using var output = accelerator.Allocate1D<TStorage>(Math.Max(1, rows * shape.ValueDim));
            using var lse = accelerator.Allocate1D<float>(rows);
            using var rowMax = accelerator.Allocate1D<float>(rows);
            using var rowSum = accelerator.Allocate1D<float>(rows);

            var p = new IlGpuAttentionParams<TStorage>
            {
                Batch = shape.Batch, QueryHeads = shape.QueryHeads, KvHeads = shape.KvHeads,
                QueryLength = shape.QueryLength, KeyLength = shape.KeyLength, HeadDim = shape.HeadDim, ValueDim = shape.ValueDim,
                Scale = call.Scale, BandLo = call.Band.Lo, BandHi = call.Band.Hi,
                Q = q.View, K = k.View, V = v.View, Output = output.View, Lse = lse.View, RowMax = rowMax.View, RowSum = rowSum.View,
            };
            if (call.Dropout.IsActive)
            {
                var stream = call.Dropout.Stream;
                (p.HasDropout, p.DropoutKey0, p.DropoutKey1, p.DropoutOffset, p.DropoutThreshold, p.DropoutScale) =
                    (1, stream.Key0, stream.Key1, stream.Offset, stream.Threshold, stream.Scale);
                p.DropoutInWeights = call.Dropout.InWeights ? 1 : 0;
            }

            float[] biasDense = [0f];
            if (call.HasBias)
            {
                (biasDense, p.BiasStrideB, p.BiasStrideH, p.BiasStrideQ) = HostPacking.Broadcast(call.Bias, (float x) => x);
                p.HasBias = 1;
            }
            using var bias = accelerator.Allocate1D(biasDense);
            p.Bias = bias.View;

            byte[] keepDense = [0];
            if (call.HasKeepMask)
            {
                (keepDense, p.KeepStrideB, p.KeepStrideH, p.KeepStrideQ) = HostPacking.Broadcast(call.KeepMask, (bool x) => x ? (byte)1 : (byte)0);
                p.HasKeep = 1;
            }
            using var keep = accelerator.Allocate1D(keepDense);
            p.Keep = keep.View;

            using var kinds = accelerator.Allocate1D<byte>(Math.Max(1, blockMask?.Kinds.Length ?? 0));
            if (blockMask is not null)
            {
                kinds.View.AsContiguous().SubView(0, blockMask.Kinds.Length).CopyFromCPU(MemoryMarshal.AsBytes(blockMask.Kinds.AsSpan()));
                p.HasBlocks = 1;
                p.Blocks = blockMask.Grid;
            }
            p.Kinds = kinds.View;

            MemoryBuffer1D<float, Stride1D.Dense>? weights = null;
            try
            {
                if (call.ReturnWeights) weights = accelerator.Allocate1D<float>(checked(rows * shape.KeyLength));
                if (blockMask is not null && RuntimeHelpers.IsReferenceOrContainsReferences<TMask>())
                {
                    // A functor with arrays cannot travel to the device: its answers for partial blocks do.
                    var (slotsDense, pairsDense) = PartialPairsBuilder.Build(blockMask, shape.Batch, shape.QueryHeads);
                    using var slots = accelerator.Allocate1D(slotsDense);
                    using var pairs = accelerator.Allocate1D(pairsDense);
                    var materialized = new PartialBlockPairs
                    {
                        Slots = slots.View, Pairs = pairs.View, Blocks = PartialPairsBuilder.Grid(blockMask, shape.Batch, shape.QueryHeads),
                    };
                    Launch(session, p, materialized, scoreMod, weights);
                }
                else
                {
                    Launch(session, p, blockMask is null ? default : blockMask.Mask, scoreMod, weights);
                }

                var outputHost = new TStorage[rows * shape.ValueDim];
                output.View.SubView(0, outputHost.Length).CopyToCPU(outputHost);
                HostPacking.Scatter<TStorage, T>(outputHost, call.Output);
                if (call.ReturnLse)
                {
                    var lseHost = lse.GetAsArray1D();
                    HostPacking.Scatter<float, float>(lseHost, call.Lse);
                }
                if (weights is not null && call.ReturnWeights)
                    HostPacking.Scatter<float, float>(weights.GetAsArray1D(), call.Weights);
            }
            finally
            {
                weights?.Dispose();
            }
        }
    }

    private static void Launch<TKernelMask, TScore>(IlGpuSession session, IlGpuAttentionParams<TStorage> p, TKernelMask mask, TScore scoreMod,
        MemoryBuffer1D<float, Stride1D.Dense>? weights)
        where TKernelMask : struct, IMaskMod where TScore : struct, IScoreMod
    {
        var accelerator = session.Accelerator;
        var forward = session.Kernel(typeof(FlashForwardKernel), typeof(TStorage), typeof(TCodec), typeof(TKernelMask), typeof(TScore),
            a => a.LoadStreamKernel<IlGpuAttentionParams<TStorage>, int, TKernelMask, TScore>(FlashForwardKernel.Run<TStorage, TCodec, TKernelMask, TScore>));

        int lanes = accelerator.WarpSize, warps = session.WarpsPerGroup;
        // 48 KiB: what every CUDA device gives a group without opting in to more.
        long sharedBytes = Math.Min(accelerator.MaxSharedMemoryPerGroup, 48 * 1024);
        int keysPerLane = FlashForwardKernel.KeysPerLane(lanes, warps, p.HeadDim, p.ValueDim, sharedBytes);
        while (keysPerLane == 0 && warps > 1) keysPerLane = FlashForwardKernel.KeysPerLane(lanes, --warps, p.HeadDim, p.ValueDim, sharedBytes);
        if (keysPerLane == 0)
            throw new NotSupportedException(
                $"D = {p.HeadDim}, Dv = {p.ValueDim} needs {FlashForwardKernel.SharedFloats(lanes, 1, 1, p.HeadDim, p.ValueDim) * sizeof(float)} bytes of shared memory per group; {accelerator.Name} gives {sharedBytes}.");
        if (p.ValueDim > lanes * FlashForwardKernel.MaxColumnsPerLane)
            throw new NotSupportedException($"Dv = {p.ValueDim} exceeds {lanes * FlashForwardKernel.MaxColumnsPerLane} on {lanes}-lane warps.");
        int sharedFloats = FlashForwardKernel.SharedFloats(lanes, warps, keysPerLane, p.HeadDim, p.ValueDim);

        long groups = (long)p.Batch * p.QueryHeads * ((p.QueryLength + warps - 1) / warps);
        if (groups > int.MaxValue) throw new NotSupportedException($"{groups} thread groups exceed the ILGPU grid limit of {int.MaxValue}.");
        var config = new KernelConfig((int)groups, lanes * warps, SharedMemoryConfig.RequestDynamic<float>(sharedFloats));
        forward(config, p, keysPerLane, mask, scoreMod);

        if (weights is not null)
        {
            var weightsKernel = session.Kernel(typeof(AttentionWeightsKernel), typeof(TStorage), typeof(TCodec), typeof(TKernelMask), typeof(TScore),
                a => a.LoadAutoGroupedStreamKernel<Index1D, IlGpuAttentionParams<TStorage>, TKernelMask, TScore, ArrayView<float>>(
                    AttentionWeightsKernel.Run<TStorage, TCodec, TKernelMask, TScore>));
            if (weights.Length > int.MaxValue) throw new NotSupportedException($"{weights.Length} attention weights exceed one ILGPU launch ({int.MaxValue}).");
            weightsKernel((int)weights.Length, p, mask, scoreMod, weights.View);
        }
        accelerator.Synchronize();
    }

    private static TStorage[] NonEmpty(TStorage[] dense) => dense.Length == 0 ? new TStorage[1] : dense;
}
