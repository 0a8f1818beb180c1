using AttentionEngine.Bench.Abi;
using AttentionEngine.Bench.Backward;
using AttentionEngine.Bench.Bdn;
using AttentionEngine.Bench.Cuda;
using AttentionEngine.Bench.Gemm;
using AttentionEngine.Bench.Layer;
using AttentionEngine.Bench.Peers;
using AttentionEngine.Bench.Performance;
using AttentionEngine.Bench.Plotting;
using AttentionEngine.Bench.Sparse;
using AttentionEngine.Bench.Verification;
using Spectre.Console.Cli;

// BenchmarkDotNet parses its own arguments: hand them over before the command-line parser sees them.
if (args is ["bdn", .. var bdnArgs]) return BdnCommand.Run(bdnArgs);

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("bench");
    config.AddCommand<VerifyCommand>("verify")
        .WithDescription("Check every available backend against the float64 oracle on generated problems.")
        .WithExample("verify", "--cases", "200")
        .WithExample("verify", "--backend", "reference", "--dtype", "bf16", "--seed", "7", "--case", "31");
    config.AddCommand<RunCommand>("run")
        .WithDescription("Measure the machine's FMA peak and bandwidth, then time the preset cases against them.")
        .WithExample("run", "--threads", "2")
        .WithExample("run", "--shapes", "B1 H32 Hkv8 Lq1 Lk8192 D128; B2 H16 N2048 D64 causal", "--dtype", "f32,bf16");
    config.AddCommand<PeersCommand>("peers")
        .WithDescription("Time the same fp32 problems through our CPU backend and ONNX Runtime's Attention operator; ratio and max difference.")
        .WithExample("peers", "--threads", "2");
    config.AddCommand<BackwardCommand>("backward")
        .WithDescription("Time the CPU backward pass (fp32; FLOPs = 2.5 x forward) against the machine's measured FMA peak.")
        .WithExample("backward", "--threads", "2");
    config.AddCommand<SparseCommand>("sparse")
        .WithDescription("Block-sparse attention: time against density, causal as a BlockMask vs built-in, BlockMask creation time.")
        .WithExample("sparse", "--threads", "2");
    config.AddCommand<GemmCommand>("gemm")
        .WithDescription("Our packed SIMD GEMM (MatMul) on projection shapes, fp32 and 16-bit weights, against the measured FMA peak and ONNX Runtime's Gemm in the same run.")
        .WithExample("gemm", "--threads", "2")
        .WithExample("gemm", "--shapes", "2048x1024x1024 linear", "--weights", "f32,bf16,f16");
    config.AddCommand<LayerCommand>("layer")
        .WithDescription("A MultiHeadAttention layer forward (projections + attention + output projection) against the measured FMA peak and the same layer as an ONNX Runtime graph.")
        .WithExample("layer", "--threads", "2")
        .WithExample("layer", "--shapes", "B1 S2048 E1024 H16 KV4 causal", "--weights", "bf16");
    config.AddCommand<CudaCommand>("cuda")
        .WithDescription("CUDA backend kernel time on device tensors (CUDA events), TFLOP/s; compare with bench/gpu/sdpa.py (PyTorch SDPA) via bench/gpu/compare.py.")
        .WithExample("cuda", "--json")
        .WithExample("cuda", "--shapes", "B4 H16 N4096 D128 causal", "--dtype", "bf16");
    config.AddCommand<AbiCommand>("abi")
        .WithDescription("The C ABI's cost: the same problems through Attention.Forward and through ae_forward of the published NativeAOT library, alternating, in one process.")
        .WithExample("abi", "--threads", "2", "--library", "out/native/libattention_engine.so");
    config.AddCommand<PlotCommand>("plot")
        .WithDescription("PNG charts of `run --json` / `peers --json` results: rate against sequence length per backend, with the machine limit.")
        .WithExample("plot", "charts", "--input", "run.json", "--input", "peers.json");
    config.AddCommand<HeadsCommand>("heads")
        .WithDescription("A MultiHeadAttention layer's per-head attention weights and their average as heatmaps in one PNG (one panel per head).")
        .WithExample("heads", "heads.png", "--length", "64", "--heads", "4", "--causal");
    config.AddCommand<AttentionEngine.Bench.Quantization.Int8Command>("int8")
        .WithDescription("Decode over an int8 KV cache (per-token scales) against fp32 and bf16 caches in the same run; int8 accuracy against float64.")
        .WithExample("int8", "--threads", "2")
        .WithExample("int8", "--lengths", "4096,32768", "--heads", "32/8", "--dim", "128");
    config.AddCommand<AttentionEngine.Bench.Quantization.Int8PrefillCommand>("int8-prefill")
        .WithDescription("Self-attention with int8 scores (smoothed, SageAttention's recipe) against float scores in the same run; accuracy against float64, smoothed and not.")
        .WithExample("int8-prefill", "--threads", "2")
        .WithExample("int8-prefill", "--lengths", "2048", "--dims", "128");
    config.AddCommand<AttentionEngine.Bench.Cuda.CudaResourcesCommand>("cuda-resources")
        .WithDescription("Registers, stack frame, spills and shared memory of every CUDA kernel variant, from ptxas through NVRTC (no GPU needed).")
        .WithExample("cuda-resources", "--arch", "sm_80");
    config.AddCommand<BdnCommand>("bdn")
        .WithDescription("BenchmarkDotNet suites with a GFLOP/s column; arguments go to BenchmarkDotNet (--filter, --job short, ...).")
        .WithExample("bdn", "--filter", "*N2048*", "--job", "short");
});
return app.Run(args);
