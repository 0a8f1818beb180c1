namespace AttentionEngine.Bench.Peers;

/// <summary>An ONNX ValueInfoProto for an fp32 tensor of fixed shape (a graph input or output).</summary>
internal static class OnnxValueInfo
{
    private const int ElementFloat = 1;

    public static void Float(ProtoWriter valueInfo, string name, params int[] dims) =>
        valueInfo.String(1, name).Message(2, type => type.Message(1, tensor =>
        {
            tensor.Int(1, ElementFloat);
            tensor.Message(2, shape =>
            {
                foreach (int dim in dims) shape.Message(1, d => d.Int(1, dim));
            });
        }));
}
