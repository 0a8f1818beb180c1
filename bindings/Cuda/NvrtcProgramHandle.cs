using System.Runtime.InteropServices;

namespace AttentionEngine.Bindings.Cuda;

/// <summary>An nvrtcProgram, destroyed on every path.</summary>
internal sealed class NvrtcProgramHandle : SafeHandle
{
    public NvrtcProgramHandle() : base(0, ownsHandle: true) { }

    public override bool IsInvalid => handle == 0;

    public nint Value => handle;

    public static NvrtcProgramHandle Own(nint program)
    {
        var owner = new NvrtcProgramHandle();
        owner.SetHandle(program);
        return owner;
    }

    protected override bool ReleaseHandle()
    {
        nint program = handle;
        return NvrtcNative.nvrtcDestroyProgram(ref program) == 0;
    }
}
