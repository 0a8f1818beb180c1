namespace AttentionEngine.Bindings.Cuda;

/// <summary>An nvrtcProgram, destroyed on every path.</summary>
internal sealed class NvrtcProgramHandle : CudaHandle
{
    public static NvrtcProgramHandle Of(nint program)
    {
        var owner = new NvrtcProgramHandle();
        owner.Own(program);
        return owner;
    }

    protected override bool ReleaseHandle()
    {
        nint program = handle;
        return NvrtcNative.nvrtcDestroyProgram(ref program) == 0;
    }
}
