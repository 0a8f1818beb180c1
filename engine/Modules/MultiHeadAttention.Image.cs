using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using AttentionEngine.Kernels;

namespace AttentionEngine;

public sealed unsafe partial class MultiHeadAttention<TWeight>
{
    /// <summary>
    /// Self-attention over the positions of feature maps (a non-local / ViT-style block): every pixel of
    /// <paramref name="input"/> [batch, channels, height, width] is a token of EmbedDim = channels, the projections are
    /// 1x1 convolutions over channels, attention runs over the height · width positions, and the result (plus the input
    /// when <paramref name="residual"/>) is written back as [batch, channels, height, width].
    /// </summary>
    /// <remarks>
    /// The map is never transposed as a whole on the way in: the projections read it in place as a [positions, channels]
    /// matrix with a channel stride of height · width. The one transpose is the result's way back to channel-major,
    /// fused with the residual add. <paramref name="output"/> may be the input's own memory.
    /// </remarks>
    /// <param name="input">[batch, EmbedDim, height, width]; height and width must flatten (width's stride times width is height's stride).</param>
    /// <param name="output">[batch, EmbedDim, height, width], the same flattening.</param>
    /// <param name="residual">Add the input to the layer's output (the usual block); false gives the layer's output alone.</param>
    /// <param name="options">As for sequences, with positions numbered row by row (key padding and weights are [.., height · width]).</param>
    /// <exception cref="ArgumentException">a shape that does not match the layer, or strides that do not flatten; the message names the tensor.</exception>
    /// <exception cref="InvalidOperationException">weights not loaded yet.</exception>
    public void ForwardImage<T>(ReadOnlyTensorSpan<T> input, TensorSpan<T> output, bool residual = true, scoped in MultiHeadAttentionOptions options = default)
        where T : unmanaged
    {
        ElementTypes.ThrowIfUnsupported<T>();
        if (!_fused)
            throw new ArgumentException($"This layer's KeyDim ({_config.KeyInputDim}) or ValueDim ({_config.ValueInputDim}) differs from EmbedDim ({_e}); image self-attention needs all three equal.", nameof(input));
        var (inBatch, inPositions, inStride) = Positions(input.Rank, input.Lengths, input.Strides, nameof(input));
        var (outBatch, outPositions, outStride) = Positions(output.Rank, output.Lengths, output.Strides, nameof(output));
        if (output.Lengths[0] != input.Lengths[0] || output.Lengths[2] != input.Lengths[2] || output.Lengths[3] != input.Lengths[3])
            throw new ArgumentException(
                $"output is [{string.Join(", ", output.Lengths.ToArray())}]; expected [{string.Join(", ", input.Lengths.ToArray())}] like input.", nameof(output));
        int batch = (int)input.Lengths[0], positions = (int)(input.Lengths[2] * input.Lengths[3]);
        nint channelIn = input.Strides[1], channelOut = output.Strides[1];
        fixed (T* x = &Unsafe.AsRef(in input.GetPinnableReference()))
        fixed (T* y = &output.GetPinnableReference())
        {
            // Token views [batch, positions, channels]: the map's own memory with the channel and position strides swapped in.
            nint inReach = TensorLayout.StorageLength(input.Lengths, input.Strides), outReach = TensorLayout.StorageLength(output.Lengths, output.Strides);
            ReadOnlyTensorSpan<T> tokens = TensorLayout.View(x, inReach, [batch, positions, _e], [inBatch, inStride, channelIn]);
            if (!residual)
            {
                Run<T, T>(tokens, tokens, tokens, TensorLayout.View(y, outReach, [batch, positions, _e], [outBatch, outStride, channelOut]), options, self: true);
                return;
            }
            long count = (long)batch * positions * _e;
            float* result = ModuleScratch.Rent(count, slot: 1);
            Run<T, float>(tokens, tokens, tokens, TensorLayout.View(result, (nint)count, [batch, positions, _e], [(nint)positions * _e, _e, 1]), options, self: true);
            // output = input + result, channel-major again: every element reads its input before it is written (in place is fine).
            for (int b = 0; b < batch; b++)
                for (int c = 0; c < _e; c++)
                {
                    T* source = x + b * inBatch + c * channelIn, destination = y + b * outBatch + c * channelOut;
                    float* column = result + (long)b * positions * _e + c;
                    for (int p = 0; p < positions; p++)
                        destination[p * outStride] = ElementTypes.FromSingle<T>(ElementTypes.ToSingle(source[p * inStride]) + column[(long)p * _e]);
                }
        }
    }

    /// <summary>Batch stride, position count and position stride of a [batch, EmbedDim, height, width] map whose height and width flatten.</summary>
    private (nint BatchStride, nint Positions, nint PositionStride) Positions(int rank, ReadOnlySpan<nint> lengths, ReadOnlySpan<nint> strides, string name)
    {
        if (rank != 4) throw new ArgumentException($"{name} has rank {rank}; expected a feature map [batch, channels, height, width].", name);
        if (lengths[1] != _e) throw new ArgumentException($"{name} dimension 1 (channels) is {lengths[1]}; expected EmbedDim = {_e}.", name);
        nint height = lengths[2], width = lengths[3];
        nint positionStride = width > 1 ? strides[3] : strides[2];
        if (height > 1 && width > 1 && strides[2] != width * strides[3])
            throw new ArgumentException(
                $"{name} has strides [{string.Join(", ", strides.ToArray())}]: height's stride must be width ({width}) times width's stride so the positions form one sequence.", name);
        if (height * width > int.MaxValue) throw new ArgumentException($"{name} has {height * width} positions; at most {int.MaxValue}.", name);
        return (strides[0], height * width, positionStride);
    }
}
