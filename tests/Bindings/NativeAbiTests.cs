using System.Numerics.Tensors;
using System.Runtime.InteropServices;
using AttentionEngine.Native;

namespace AttentionEngine.Tests;

/// <summary>
/// The C ABI layer in-process: its exports called through unmanaged function pointers under the JIT. The C test
/// (tests/c) checks the published library from C; these cover what C cannot provoke (statuses for out-of-memory and
/// internal errors) and check that a call through the ABI gives the managed call's bits.
/// </summary>
public unsafe class NativeAbiTests
{
    [Fact]
    public void Every_exception_kind_maps_to_its_status_and_keeps_its_message()
    {
        Assert.Equal(NativeStatus.InvalidArgument, StatusMapping.Of(new ArgumentOutOfRangeException("q", "bad")));
        Assert.Equal(NativeStatus.NotSupported, StatusMapping.Of(new NotSupportedException("x")));
        Assert.Equal(NativeStatus.BackendUnavailable, StatusMapping.Of(new InvalidOperationException("x")));
        Assert.Equal(NativeStatus.OutOfMemory, StatusMapping.Of(new OutOfMemoryException("x")));
        Assert.Equal(NativeStatus.NullPointer, StatusMapping.Of(new NativeCallException(NativeStatus.NullPointer, "q is NULL.")));
        var bug = new NullReferenceException("oops");
        Assert.Equal(NativeStatus.Internal, StatusMapping.Of(bug));
        Assert.StartsWith("internal error (System.NullReferenceException): oops", StatusMapping.Message(bug));
        Assert.Equal("q is NULL.", StatusMapping.Message(new NativeCallException(NativeStatus.NullPointer, "q is NULL.")));
        for (int status = 0; status <= 9; status++)
            Assert.StartsWith("AE_", Marshal.PtrToStringUTF8((nint)Unsafe(StatusMapping.Name(status)))!);
    }

    [Fact]
    public void The_last_error_is_nul_terminated_utf8_and_per_thread()
    {
        LastError.Set("a long first message naming options->bias");
        LastError.Set("käse");
        Assert.Equal("käse", Marshal.PtrToStringUTF8((nint)LastError.Pointer));
        string? other = null;
        var thread = new Thread(() => other = Marshal.PtrToStringUTF8((nint)LastError.Pointer));
        thread.Start();
        thread.Join();
        Assert.Equal("", other);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_call_through_the_abi_gives_the_managed_calls_bits(bool tokenMajor)
    {
        // GQA, bottom-right causal with Lq < Lk; with tokenMajor the memory is [B, S, H, D] and both calls see it
        // through the same strided [B, H, S, D] view.
        using var q = Allocate(1, tokenMajor, 2, 4, 9, 32);
        using var k = Allocate(2, tokenMajor, 2, 2, 23, 32);
        using var v = Allocate(3, tokenMajor, 2, 2, 23, 32);
        using var expected = Allocate(0, tokenMajor, 2, 4, 9, 32);
        using var actual = Allocate(0, tokenMajor, 2, 4, 9, 32);
        using var lse = NativeTensor<float>.Zeros(2, 4, 9);
        using var abiLse = NativeTensor<float>.Zeros(2, 4, 9);
        Attention.Forward<float>(View(q, tokenMajor), View(k, tokenMajor), View(v, tokenMajor), View(expected, tokenMajor),
            new AttentionOptions { Mask = Mask.Causal(CausalAlignment.BottomRight), Lse = lse });

        long* layout = stackalloc long[40];
        var tq = Describe(View(q, tokenMajor), layout);
        var tk = Describe(View(k, tokenMajor), layout + 8);
        var tv = Describe(View(v, tokenMajor), layout + 16);
        var to = Describe(View(actual, tokenMajor), layout + 24);
        var tl = Describe(lse.AsTensorSpan(), layout + 32) with { Data = abiLse.Pointer };
        var options = new NativeOptions
        {
            StructSize = (uint)sizeof(NativeOptions), Mask = NativeOptions.MaskCausal, Alignment = 1, WindowLeft = -1, WindowRight = -1, Lse = &tl,
        };
        delegate* unmanaged<DLTensor*, DLTensor*, DLTensor*, DLTensor*, NativeOptions*, int> forward = &Exports.Forward;
        Assert.Equal(0, forward(&tq, &tk, &tv, &to, &options));
        Assert.Equal(expected.Storage.ToArray(), actual.Storage.ToArray());
        Assert.Equal(lse.Storage.ToArray(), abiLse.Storage.ToArray());

        options.Reserved = 3;
        Assert.Equal((int)NativeStatus.InvalidArgument, forward(&tq, &tk, &tv, &to, &options));
        Assert.Contains("options->reserved", Marshal.PtrToStringUTF8((nint)LastError.Pointer));
    }

    /// <summary>Random (seed > 0) or zero memory for a logical [b, h, s, d] tensor, stored [b, s, h, d] when tokenMajor.</summary>
    private static NativeTensor<float> Allocate(int seed, bool tokenMajor, int b, int h, int s, int d)
    {
        nint[] stored = tokenMajor ? [b, s, h, d] : [b, h, s, d];
        return seed > 0 ? TensorRandom.Create<float>(seed, ValueDistribution.Normal, stored) : NativeTensor<float>.Zeros(stored);
    }

    private static TensorSpan<float> View(NativeTensor<float> tensor, bool tokenMajor)
    {
        var span = tensor.AsTensorSpan();
        if (!tokenMajor) return span;
        ReadOnlySpan<nint> l = span.Lengths, st = span.Strides;
        return new TensorSpan<float>(tensor.Pointer, (nint)tensor.StorageLength, [l[0], l[2], l[1], l[3]], [st[0], st[2], st[1], st[3]]);
    }

    private static DLTensor Describe(TensorSpan<float> span, long* layout)
    {
        for (int d = 0; d < span.Rank; d++) { layout[d] = span.Lengths[d]; layout[4 + d] = span.Strides[d]; }
        return new DLTensor
        {
            Data = System.Runtime.CompilerServices.Unsafe.AsPointer(ref span.GetPinnableReference()),
            Device = new DLDevice { DeviceType = DLDeviceType.Cpu },
            NDim = span.Rank,
            DType = new DLDataType { Code = DLDataTypeCode.Float, Bits = 32, Lanes = 1 },
            Shape = layout,
            Strides = layout + 4,
        };
    }

    private static byte* Unsafe(ReadOnlySpan<byte> literal) => (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(literal));
}
