using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace AttentionEngine.Bench.Peers;

/// <summary>ONNX Runtime values over our native tensors' memory (no copies), for peers that read and write in place.</summary>
internal static class OrtTensors
{
    public static unsafe OrtValue Wrap(NativeTensor<float> tensor)
    {
        long[] shape = tensor.Lengths.ToArray().Select(l => (long)l).ToArray();
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, shape,
            (nint)tensor.Pointer, checked((long)tensor.StorageLength * sizeof(float)));
    }

    /// <summary>The session options every peer uses: a fixed thread count, sequential execution, all graph optimisations.</summary>
    public static SessionOptions Options(int threads) => new()
    {
        IntraOpNumThreads = threads, InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    };
}
