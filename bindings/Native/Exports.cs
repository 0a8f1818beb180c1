using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace AttentionEngine.Native;

/// <summary>
/// The functions of attention_engine.h. Each catches every exception and returns its status with the message in
/// <see cref="LastError"/>: nothing managed ever unwinds into a native caller.
/// </summary>
internal static unsafe class Exports
{
    /// <summary>AE_ABI_VERSION of the header this library implements.</summary>
    public const uint AbiVersion = 1;

    [UnmanagedCallersOnly(EntryPoint = "ae_version")]
    public static byte* Version() => Static("0.1.0\0"u8);

    [UnmanagedCallersOnly(EntryPoint = "ae_abi_version")]
    public static uint AbiVersionExport() => AbiVersion;

    [UnmanagedCallersOnly(EntryPoint = "ae_check_abi")]
    public static int CheckAbi(uint abiVersion, nuint optionsSize, nuint tensorSize)
    {
        string? mismatch =
            abiVersion != AbiVersion ? $"the caller was compiled against ABI version {abiVersion}; this library implements version {AbiVersion}"
            // A newer header's larger ae_options is fine (each call checks that the fields this library does not know are zero), and
            // so is the first header's smaller one (its missing fields read as zero).
            : optionsSize < NativeOptions.FirstSize ? $"the caller's ae_options is {optionsSize} bytes; this library's is {NativeOptions.FirstSize} to {sizeof(NativeOptions)}"
            : tensorSize != (nuint)sizeof(DLTensor) ? $"the caller's DLTensor is {tensorSize} bytes; DLPack 1.x's (this library's) is {sizeof(DLTensor)}"
            : null;
        return mismatch is null ? (int)NativeStatus.Ok : Fail(new NativeCallException(NativeStatus.AbiMismatch, $"ABI mismatch: {mismatch}."));
    }

    [UnmanagedCallersOnly(EntryPoint = "ae_last_error")]
    public static byte* LastErrorExport() => LastError.Pointer;

    [UnmanagedCallersOnly(EntryPoint = "ae_status_name")]
    public static byte* StatusName(int status) => Static(StatusMapping.Name(status));

    [UnmanagedCallersOnly(EntryPoint = "ae_backend_available")]
    public static int BackendAvailable(int backend)
    {
        try
        {
            var managed = (NativeBackend)backend switch
            {
                NativeBackend.Auto or NativeBackend.Cpu => Attention.Using(Backend.Cpu),
                NativeBackend.Reference => Attention.Using(Backend.Reference),
                NativeBackend.Cuda => Attention.Using(Backend.Cuda),
                _ => throw new ArgumentException($"backend is {backend}; expected AE_BACKEND_AUTO (0), _CPU (1), _REFERENCE (2) or _CUDA (3).", nameof(backend)),
            };
            return managed.UnavailableReason is { } reason
                ? Fail(new NativeCallException(NativeStatus.BackendUnavailable, $"Backend {managed.Name} is not available: {reason}"))
                : (int)NativeStatus.Ok;
        }
        catch (Exception e)
        {
            return Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "ae_forward")]
    public static int Forward(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, NativeOptions* options)
    {
        try
        {
            DLTensorViews.Require(q, "q"); DLTensorViews.Require(k, "k"); DLTensorViews.Require(v, "v"); DLTensorViews.Require(output, "output");
            var call = CallOptions.Read(options);
            var element = ElementType(q, k, v, output);
            bool device = q->Device.DeviceType == DLDeviceType.Cuda;
            if (!device && !DLTensorViews.IsHost(q))
                throw new NativeCallException(NativeStatus.UnsupportedDevice,
                    $"q is on {DLTensorViews.DeviceName(q->Device)}; this library takes kDLCPU, kDLCUDAHost and kDLCUDA tensors.");
            if (element == typeof(float)) Forward<float>(device, q, k, v, output, call);
            else if (element == typeof(Half)) Forward<Half>(device, q, k, v, output, call);
            else Forward<BFloat16>(device, q, k, v, output, call);
            return (int)NativeStatus.Ok;
        }
        catch (Exception e)
        {
            return Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "ae_backward")]
    public static int Backward(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, DLTensor* lse, DLTensor* dOutput,
        DLTensor* dQ, DLTensor* dK, DLTensor* dV, NativeOptions* options, DLTensor* dBias)
    {
        try
        {
            DLTensorViews.Require(q, "q"); DLTensorViews.Require(k, "k"); DLTensorViews.Require(v, "v"); DLTensorViews.Require(output, "output");
            DLTensorViews.Require(lse, "lse"); DLTensorViews.Require(dOutput, "d_output");
            DLTensorViews.Require(dQ, "d_q"); DLTensorViews.Require(dK, "d_k"); DLTensorViews.Require(dV, "d_v");
            var call = CallOptions.Read(options);
            if (call.Lse is not null || call.Weights is not null)
                throw new ArgumentException("options->lse and options->weights are forward outputs; ae_backward takes the saved LSE as its lse argument and returns no weights. Leave them NULL.", "options");
            var element = ElementType(q, k, v, output);
            foreach (var (tensor, name) in new[] { ((nint)dOutput, "d_output"), ((nint)dQ, "d_q"), ((nint)dK, "d_k"), ((nint)dV, "d_v") })
                RequireSameType((DLTensor*)tensor, name, element, q);
            if (element == typeof(float)) HostCalls.Backward<float>(q, k, v, output, lse, dOutput, dQ, dK, dV, call, dBias);
            else if (element == typeof(Half)) HostCalls.Backward<Half>(q, k, v, output, lse, dOutput, dQ, dK, dV, call, dBias);
            else HostCalls.Backward<BFloat16>(q, k, v, output, lse, dOutput, dQ, dK, dV, call, dBias);
            return (int)NativeStatus.Ok;
        }
        catch (Exception e)
        {
            return Fail(e);
        }
    }

    private static void Forward<T>(bool device, DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output, in CallOptions call) where T : unmanaged
    {
        if (device) DeviceCalls.Forward<T>(q, k, v, output, call);
        else HostCalls.Forward<T>(q, k, v, output, call);
    }

    /// <summary>q's element type, which k, v and output must share.</summary>
    private static Type ElementType(DLTensor* q, DLTensor* k, DLTensor* v, DLTensor* output)
    {
        var element = DLTensorViews.ValueType(q, "q");
        RequireSameType(k, "k", element, q);
        RequireSameType(v, "v", element, q);
        RequireSameType(output, "output", element, q);
        return element;
    }

    private static void RequireSameType(DLTensor* tensor, string name, Type element, DLTensor* q)
    {
        if (DLTensorViews.ValueType(tensor, name) != element)
            throw new NativeCallException(NativeStatus.UnsupportedDtype,
                $"{name} has dtype {tensor->DType} but q has {q->DType}; q, k, v and output share one element type.");
    }

    private static int Fail(Exception exception)
    {
        try
        {
            LastError.Set(StatusMapping.Message(exception));
            return (int)StatusMapping.Of(exception);
        }
        catch
        {
            // Even recording the message failed (out of memory): the status still gets through.
            return (int)NativeStatus.OutOfMemory;
        }
    }

    /// <summary>The address of a NUL-terminated UTF-8 literal: data in the image, which never moves.</summary>
    private static byte* Static(ReadOnlySpan<byte> literal) => (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(literal));
}
