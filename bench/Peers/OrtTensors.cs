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

    /// <summary>
    /// The session options every peer uses: a fixed thread count, sequential execution, all graph optimisations, and
    /// the intra-op threads' spinning stopped when a Run returns (<c>session.force_spinning_stop</c>). ONNX Runtime's
    /// workers otherwise keep spin-waiting after a Run, and the peers time ONNX Runtime and our kernels call by call in
    /// turn: on this 2-core machine the spinning worker took a core from the call timed after it (our 2-thread GEMM at
    /// 4096x1024x1024 ran 80 ms next to ONNX Runtime and 50 ms without it). Spinning within a Run is unchanged.
    /// </summary>
    public static SessionOptions Options(int threads)
    {
        var options = new SessionOptions
        {
            IntraOpNumThreads = threads, InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        options.AddSessionConfigEntry("session.force_spinning_stop", "1");
        return options;
    }
}
