using AttentionEngine.Bench.Performance;

namespace AttentionEngine.Bench.Peers;

/// <summary>
/// A one-node ONNX model: the standard `Attention` operator (opset 23) on 4D [batch, heads, seq, headDim] inputs,
/// the same layout as ours, with grouped-query heads and an optional causal mask. Field numbers are onnx.proto's.
/// </summary>
internal static class OnnxAttentionModel
{
    private const int AttributeFloat = 1, AttributeInt = 2;

    public static byte[] Build(PerformanceCase c, float scale)
    {
        var model = new ProtoWriter()
            .Int(1, 11) // ir_version 11: opset 23's IR
            .String(2, "AttentionEngine.Bench")
            .Message(8, opset => opset.String(1, "").Int(2, 23))
            .Message(7, graph =>
            {
                graph.Message(1, node =>
                {
                    node.String(1, "Q").String(1, "K").String(1, "V").String(2, "Y")
                        .String(3, "attention").String(4, "Attention").String(7, "");
                    node.Message(5, a => a.String(1, "is_causal").Int(3, c.Causal ? 1 : 0).Int(20, AttributeInt));
                    node.Message(5, a => a.String(1, "scale").Float(2, scale).Int(20, AttributeFloat));
                });
                graph.String(2, "attention");
                graph.Message(11, v => OnnxValueInfo.Float(v, "Q", c.Batch, c.Heads, c.QueryLength, c.HeadDim));
                graph.Message(11, v => OnnxValueInfo.Float(v, "K", c.Batch, c.KvHeads, c.KeyLength, c.HeadDim));
                graph.Message(11, v => OnnxValueInfo.Float(v, "V", c.Batch, c.KvHeads, c.KeyLength, c.HeadDim));
                graph.Message(12, v => OnnxValueInfo.Float(v, "Y", c.Batch, c.Heads, c.QueryLength, c.HeadDim));
            });
        return model.ToArray();
    }
}
