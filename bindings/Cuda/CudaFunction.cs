namespace AttentionEngine.Bindings.Cuda;

/// <summary>A kernel of a loaded module. Valid while its module is alive (it holds a reference to it).</summary>
public sealed unsafe class CudaFunction
{
    private readonly CudaModule _module;

    internal CudaFunction(nint handle, string name, CudaModule module)
    {
        Handle = handle;
        Name = name;
        _module = module;
    }

    /// <summary>The raw CUfunction handle.</summary>
    public nint Handle { get; }
    /// <summary>The kernel's (extern "C") name in its module.</summary>
    public string Name { get; }

    /// <summary>One attribute of the compiled kernel (cuFuncGetAttribute), e.g. its registers per thread.</summary>
    public int Attribute(CudaFunctionAttribute attribute)
    {
        CudaException.Check(CudaDriverNative.cuFuncGetAttribute(out int value, (int)attribute, Handle), $"cuFuncGetAttribute({Name}, {attribute})");
        return value;
    }

    /// <summary>Allows launches with more than 48 KiB of dynamic shared memory (up to the device's opt-in limit).</summary>
    public void SetMaxDynamicSharedMemory(int bytes) =>
        CudaException.Check(CudaDriverNative.cuFuncSetAttribute(Handle, (int)CudaFunctionAttribute.MaxDynamicSharedSizeBytes, bytes),
            $"cuFuncSetAttribute({Name}, MaxDynamicSharedSizeBytes = {bytes})");

    /// <summary>
    /// Launches on <paramref name="stream"/>; <paramref name="arguments"/> points at one pointer per kernel parameter,
    /// each to that parameter's value (cuLaunchKernel's kernelParams).
    /// </summary>
    public void Launch((uint X, uint Y, uint Z) grid, (uint X, uint Y, uint Z) block, uint sharedMemoryBytes, CudaStream stream, void** arguments)
    {
        ArgumentNullException.ThrowIfNull(stream);
        GC.KeepAlive(_module);
        CudaException.Check(CudaDriverNative.cuLaunchKernel(Handle, grid.X, grid.Y, grid.Z, block.X, block.Y, block.Z,
            sharedMemoryBytes, stream.Value, arguments, null), $"cuLaunchKernel({Name})");
    }
}
