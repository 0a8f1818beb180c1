using AttentionEngine.Bench.Peers;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace AttentionEngine.Bench.Gemm;

/// <summary>ONNX Runtime's `Gemm` on one case, reading and writing our own tensors in place, so a timed call is the operator alone.</summary>
internal sealed unsafe class OnnxGemmPeer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly OrtValue[] _inputs;
    private readonly OrtValue[] _outputs;
    private static readonly string[] InputNames = ["A", "B"];
    private static readonly string[] OutputNames = ["Y"];

    public OnnxGemmPeer(GemmCase c, NativeTensor<float> a, NativeTensor<float> b, NativeTensor<float> y, int threads)
    {
        using var options = OrtTensors.Options(threads);
        _session = new InferenceSession(OnnxGemmModel.Build(c), options);
        _inputs = [OrtTensors.Wrap(a), OrtTensors.Wrap(b)];
        _outputs = [OrtTensors.Wrap(y)];
    }

    public void Run() => _session.Run(_runOptions, InputNames, _inputs, OutputNames, _outputs);

    public void Dispose()
    {
        foreach (var value in _inputs.Concat(_outputs)) value.Dispose();
        _runOptions.Dispose();
        _session.Dispose();
    }
}
