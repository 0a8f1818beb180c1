using AttentionEngine.Bench.Performance;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace AttentionEngine.Bench.Peers;

/// <summary>
/// ONNX Runtime's CPU `Attention` kernel on one case, reading and writing our own tensors in place (OrtValues over
/// their native memory), so a timed call is the operator alone.
/// </summary>
internal sealed unsafe class OnnxAttentionPeer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly OrtValue[] _inputs;
    private readonly OrtValue[] _outputs;
    private static readonly string[] InputNames = ["Q", "K", "V"];
    private static readonly string[] OutputNames = ["Y"];

    public OnnxAttentionPeer(PerformanceCase c, CaseTensors<float> tensors, NativeTensor<float> output, int threads)
    {
        using var options = OrtTensors.Options(threads);
        _session = new InferenceSession(OnnxAttentionModel.Build(c, 1 / MathF.Sqrt(c.HeadDim)), options);
        _inputs = [OrtTensors.Wrap(tensors.Q), OrtTensors.Wrap(tensors.K), OrtTensors.Wrap(tensors.V)];
        _outputs = [OrtTensors.Wrap(output)];
    }

    /// <summary>The ONNX Runtime version that runs the peer.</summary>
    public static string Version => OrtEnv.Instance().GetVersionString();

    public void Run() => _session.Run(_runOptions, InputNames, _inputs, OutputNames, _outputs);

    public void Dispose()
    {
        foreach (var value in _inputs.Concat(_outputs)) value.Dispose();
        _runOptions.Dispose();
        _session.Dispose();
    }
}
