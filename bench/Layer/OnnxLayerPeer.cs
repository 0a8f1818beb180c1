using AttentionEngine.Bench.Peers;
using Microsoft.ML.OnnxRuntime;

namespace AttentionEngine.Bench.Layer;

/// <summary>ONNX Runtime running <see cref="OnnxLayerModel"/> over our tensors in place.</summary>
internal sealed class OnnxLayerPeer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly RunOptions _runOptions = new();
    private readonly OrtValue[] _inputs;
    private readonly OrtValue[] _outputs;
    private static readonly string[] OutputNames = ["Y"];

    /// <param name="inputs">X, WqT, WkT, WvT, WoT, bq, bk, bv, bo in <see cref="OnnxLayerModel.InputNames"/> order.</param>
    public OnnxLayerPeer(LayerCase c, IReadOnlyList<NativeTensor<float>> inputs, NativeTensor<float> output, int threads)
    {
        using var options = OrtTensors.Options(threads);
        _session = new InferenceSession(OnnxLayerModel.Build(c), options);
        _inputs = inputs.Select(OrtTensors.Wrap).ToArray();
        _outputs = [OrtTensors.Wrap(output)];
    }

    public void Run() => _session.Run(_runOptions, OnnxLayerModel.InputNames, _inputs, OutputNames, _outputs);

    public void Dispose()
    {
        foreach (var value in _inputs.Concat(_outputs)) value.Dispose();
        _runOptions.Dispose();
        _session.Dispose();
    }
}
