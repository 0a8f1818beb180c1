using System.Numerics.Tensors;

namespace AttentionEngine.Native;

/// <summary>
/// ae_forward and ae_backward on host memory: the caller's tensors become spans over the same memory and go through
/// the managed Attention API (its validator, its backends). Nothing is copied.
/// </summary>
internal static unsafe class HostCalls
{
    private const string HostOnly = "a call takes all of q, k, v and output from one kind of memory (host, or kDLCUDA with the CUDA backend)";

    public static void Forward<T>(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, in CallOptions options) where T : unmanaged
    {
        RequireHost(q, "q"); RequireHost(k, "k"); RequireHost(v, "v"); RequireHost(output, "output");
        OptionalHost(options.Bias, "options->bias"); OptionalHost(options.KeepMask, "options->keep_mask");
        OptionalHost(options.Lse, "options->lse"); OptionalHost(options.Weights, "options->weights");
        CheckMaskTypes(options);
        if (options.Lse is not null) DLTensorViews.RequireDtype(options.Lse, "options->lse", DLDataTypeCode.Float, 32, "float32");
        if (options.Weights is not null) DLTensorViews.RequireDtype(options.Weights, "options->weights", DLDataTypeCode.Float, 32, "float32");

        var buffers = new LayoutBuffers(stackalloc nint[2 * DLTensorViews.MaxRank * 8]);
        var managed = Managed(options, ref buffers) with
        {
            Lse = DLTensorViews.Optional<float>(options.Lse, "options->lse", buffers.Take(), buffers.Take()),
            Weights = DLTensorViews.Optional<float>(options.Weights, "options->weights", buffers.Take(), buffers.Take()),
        };
        ReadOnlyTensorSpan<T> qv = DLTensorViews.Span<T>(q, "q", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> kv = DLTensorViews.Span<T>(k, "k", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> vv = DLTensorViews.Span<T>(v, "v", buffers.Take(), buffers.Take());
        var ov = DLTensorViews.Span<T>(output, "output", buffers.Take(), buffers.Take());

        if (options.ManagedBackend is { } backend) backend.Forward(qv, kv, vv, ov, managed);
        else Attention.Forward(qv, kv, vv, ov, managed);
    }

    public static void Backward<T>(
        DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, DLTensor* lse, DLTensor* dOutput,
        DLTensor* dQ, DLTensor* dK, DLTensor* dV, in CallOptions options, DLTensor* dBias) where T : unmanaged
    {
        const string why = "ae_backward runs on the CPU backends, which read host memory (kDLCPU or kDLCUDAHost)";
        DLTensorViews.RequireHost(q, "q", why); DLTensorViews.RequireHost(k, "k", why); DLTensorViews.RequireHost(v, "v", why);
        DLTensorViews.RequireHost(output, "output", why); DLTensorViews.RequireHost(lse, "lse", why); DLTensorViews.RequireHost(dOutput, "d_output", why);
        DLTensorViews.RequireHost(dQ, "d_q", why); DLTensorViews.RequireHost(dK, "d_k", why); DLTensorViews.RequireHost(dV, "d_v", why);
        OptionalHost(options.Bias, "options->bias"); OptionalHost(options.KeepMask, "options->keep_mask"); OptionalHost(dBias, "d_bias");
        CheckMaskTypes(options);
        DLTensorViews.RequireDtype(lse, "lse", DLDataTypeCode.Float, 32, "float32");
        if (dBias is not null) DLTensorViews.RequireDtype(dBias, "d_bias", DLDataTypeCode.Float, 32, "float32");

        var buffers = new LayoutBuffers(stackalloc nint[2 * DLTensorViews.MaxRank * 12]);

        var managed = Managed(options, ref buffers);
        ReadOnlyTensorSpan<T> qv = DLTensorViews.Span<T>(q, "q", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> kv = DLTensorViews.Span<T>(k, "k", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> vv = DLTensorViews.Span<T>(v, "v", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> ov = DLTensorViews.Span<T>(output, "output", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<float> lv = DLTensorViews.Span<float>(lse, "lse", buffers.Take(), buffers.Take());
        ReadOnlyTensorSpan<T> dov = DLTensorViews.Span<T>(dOutput, "d_output", buffers.Take(), buffers.Take());
        var dqv = DLTensorViews.Span<T>(dQ, "d_q", buffers.Take(), buffers.Take());
        var dkv = DLTensorViews.Span<T>(dK, "d_k", buffers.Take(), buffers.Take());
        var dvv = DLTensorViews.Span<T>(dV, "d_v", buffers.Take(), buffers.Take());
        var dbv = DLTensorViews.Optional<float>(dBias, "d_bias", buffers.Take(), buffers.Take());

        if (options.ManagedBackend is { } backend) backend.Backward(qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, managed, dbv);
        else Attention.Backward(qv, kv, vv, ov, lv, dov, dqv, dkv, dvv, managed, dbv);
    }

    /// <summary>The options forward and backward share: scale, mask, threads, and bias and keep-mask over host memory.</summary>
    private static AttentionOptions Managed(in CallOptions options, ref LayoutBuffers buffers) => new()
    {
        Scale = options.Scale,
        Mask = options.Mask,
        MaxDegreeOfParallelism = options.MaxThreads,
        Bias = DLTensorViews.Optional<float>(options.Bias, "options->bias", buffers.Take(), buffers.Take()),
        KeepMask = DLTensorViews.Optional<bool>(options.KeepMask, "options->keep_mask", buffers.Take(), buffers.Take()),
        Dropout = options.Dropout,
    };

    private static void RequireHost(DLTensor* tensor, string name) => DLTensorViews.RequireHost(tensor, name, HostOnly);

    private static void OptionalHost(DLTensor* tensor, string name)
    {
        if (tensor is not null) DLTensorViews.RequireHost(tensor, name, "this call runs on the CPU, which reads host memory (kDLCPU or kDLCUDAHost)");
    }

    internal static void CheckMaskTypes(in CallOptions options)
    {
        if (options.Bias is not null) DLTensorViews.RequireDtype(options.Bias, "options->bias", DLDataTypeCode.Float, 32, "float32");
        if (options.KeepMask is not null) DLTensorViews.RequireDtype(options.KeepMask, "options->keep_mask", DLDataTypeCode.Bool, 8, "bool (1 byte)");
    }

    /// <summary>Stack room for the lengths and strides of a call's tensors, handed out MaxRank at a time.</summary>
    private ref struct LayoutBuffers(Span<nint> all)
    {
        private readonly Span<nint> _all = all;
        private int _used;

        public Span<nint> Take()
        {
            var slice = _all.Slice(_used, DLTensorViews.MaxRank);
            _used += DLTensorViews.MaxRank;
            return slice;
        }
    }
}
