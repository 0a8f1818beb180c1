using AttentionEngine.Bench.Peers;

namespace AttentionEngine.Bench.Layer;

/// <summary>
/// The same layer as an ONNX graph (opset 23): MatMul + Add projections of X [B, S, E] by [in, out] weights, the standard
/// `Attention` operator on 3-D [B, S, heads·D] inputs (q_num_heads, kv_num_heads), and the output MatMul + Add. Weights
/// are graph inputs fed from our memory, so the timed call is ONNX Runtime's kernels alone.
/// </summary>
internal static class OnnxLayerModel
{
    private const int AttributeInt = 2;

    public static readonly string[] InputNames = ["X", "WqT", "WkT", "WvT", "WoT", "bq", "bk", "bv", "bo"];

    public static byte[] Build(LayerCase c)
    {
        int hd = c.Heads * c.HeadDim, kv = c.KvHeads * c.HeadDim;
        return new ProtoWriter()
            .Int(1, 11)
            .String(2, "AttentionEngine.Bench")
            .Message(8, opset => opset.String(1, "").Int(2, 23))
            .Message(7, graph =>
            {
                void Node(string op, string[] inputs, string output, Action<ProtoWriter>? attributes = null) => graph.Message(1, node =>
                {
                    foreach (var input in inputs) node.String(1, input);
                    node.String(2, output).String(3, output + "_node").String(4, op).String(7, "");
                    attributes?.Invoke(node);
                });
                foreach (var (x, w, b) in new[] { ("q", "WqT", "bq"), ("k", "WkT", "bk"), ("v", "WvT", "bv") })
                {
                    Node("MatMul", ["X", w], x + "0");
                    Node("Add", [x + "0", b], x.ToUpperInvariant());
                }
                Node("Attention", ["Q", "K", "V"], "A", node =>
                {
                    node.Message(5, a => a.String(1, "q_num_heads").Int(3, c.Heads).Int(20, AttributeInt));
                    node.Message(5, a => a.String(1, "kv_num_heads").Int(3, c.KvHeads).Int(20, AttributeInt));
                    node.Message(5, a => a.String(1, "is_causal").Int(3, c.Causal ? 1 : 0).Int(20, AttributeInt));
                });
                Node("MatMul", ["A", "WoT"], "o0");
                Node("Add", ["o0", "bo"], "Y");
                graph.String(2, "layer");
                graph.Message(11, v => OnnxValueInfo.Float(v, "X", c.Batch, c.Length, c.EmbedDim));
                graph.Message(11, v => OnnxValueInfo.Float(v, "WqT", c.EmbedDim, hd));
                graph.Message(11, v => OnnxValueInfo.Float(v, "WkT", c.EmbedDim, kv));
                graph.Message(11, v => OnnxValueInfo.Float(v, "WvT", c.EmbedDim, kv));
                graph.Message(11, v => OnnxValueInfo.Float(v, "WoT", hd, c.EmbedDim));
                graph.Message(11, v => OnnxValueInfo.Float(v, "bq", hd));
                graph.Message(11, v => OnnxValueInfo.Float(v, "bk", kv));
                graph.Message(11, v => OnnxValueInfo.Float(v, "bv", kv));
                graph.Message(11, v => OnnxValueInfo.Float(v, "bo", c.EmbedDim));
                graph.Message(12, v => OnnxValueInfo.Float(v, "Y", c.Batch, c.Length, c.EmbedDim));
            })
            .ToArray();
    }
}
