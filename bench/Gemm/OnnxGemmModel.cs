using AttentionEngine.Bench.Peers;

namespace AttentionEngine.Bench.Gemm;

/// <summary>
/// A one-node ONNX model: the standard `Gemm` operator (opset 13), Y = A · B, A · Bᵀ (transB, for a [N, K] weight),
/// Aᵀ · B (transA, for A stored [K, M]) or Aᵀ · Bᵀ,
/// fp32, which ONNX Runtime runs on MLAS's sgemm. Field numbers are onnx.proto's.
/// </summary>
internal static class OnnxGemmModel
{
    private const int AttributeInt = 2;

    public static byte[] Build(GemmCase c) => new ProtoWriter()
        .Int(1, 8) // ir_version 8 (opset 13)
        .String(2, "AttentionEngine.Bench")
        .Message(8, opset => opset.String(1, "").Int(2, 13))
        .Message(7, graph =>
        {
            graph.Message(1, node =>
            {
                node.String(1, "A").String(1, "B").String(2, "Y").String(3, "gemm").String(4, "Gemm").String(7, "");
                node.Message(5, a => a.String(1, "transA").Int(3, c.TransposedA ? 1 : 0).Int(20, AttributeInt));
                node.Message(5, a => a.String(1, "transB").Int(3, c.Linear ? 1 : 0).Int(20, AttributeInt));
            });
            graph.String(2, "gemm");
            graph.Message(11, v => OnnxValueInfo.Float(v, "A", c.TransposedA ? c.K : c.M, c.TransposedA ? c.M : c.K));
            graph.Message(11, v => OnnxValueInfo.Float(v, "B", c.Linear ? c.N : c.K, c.Linear ? c.K : c.N));
            graph.Message(12, v => OnnxValueInfo.Float(v, "Y", c.M, c.N));
        })
        .ToArray();
}
