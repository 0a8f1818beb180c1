using System.Globalization;
using System.Text.RegularExpressions;

namespace AttentionEngine;

/// <summary>
/// What the CUDA assembler (ptxas, run inside NVRTC) reports for one compiled kernel variant: registers per thread,
/// stack frame, spills to local memory, and the dynamic shared memory the host asks for it. A spill means registers ran
/// out and values went to (slow) local memory; the engine's kernels are meant not to spill
/// (<see cref="CudaBackend.KernelResources"/>).
/// </summary>
/// <param name="EntryPoint">the kernel's name in the image (flash_forward_d128_bf16)</param>
/// <param name="Architecture">the target it was compiled for (sm_80, sm_90, …)</param>
/// <param name="Registers">32-bit registers per thread</param>
/// <param name="StackFrameBytes">per-thread stack frame in local memory</param>
/// <param name="SpillStoreBytes">bytes of spill stores per thread</param>
/// <param name="SpillLoadBytes">bytes of spill loads per thread</param>
/// <param name="DynamicSharedBytes">dynamic shared memory per block that the host launches it with</param>
public sealed record CudaKernelResources(string EntryPoint, string Architecture, int Registers, int StackFrameBytes, int SpillStoreBytes,
    int SpillLoadBytes, int DynamicSharedBytes)
{
    /// <summary>True when the kernel spills registers to local memory.</summary>
    public bool Spills => SpillStoreBytes > 0 || SpillLoadBytes > 0;
}

/// <summary>Reads ptxas's verbose report (NVRTC's log with --ptxas-options=-v) for one entry point.</summary>
internal static partial class PtxasReport
{
    /// <summary>The option that makes NVRTC's log carry the report.</summary>
    public const string VerboseOption = "--ptxas-options=-v";

    /// <summary>
    /// Registers, stack frame and spills of <paramref name="entryPoint"/>, or null when the log has no report for it.
    /// The lines read: "Function properties for X", then "N bytes stack frame, N bytes spill stores, N bytes spill loads",
    /// and "Used N registers" after "Compiling entry function 'X'".
    /// </summary>
    public static (int Registers, int StackFrame, int SpillStores, int SpillLoads)? Parse(string log, string entryPoint)
    {
        int compiling = log.IndexOf($"Compiling entry function '{entryPoint}'", StringComparison.Ordinal);
        int properties = log.IndexOf($"Function properties for {entryPoint}", StringComparison.Ordinal);
        if (compiling < 0 || properties < 0) return null;
        var frame = Frame().Match(log, properties);
        var registers = Registers().Match(log, compiling);
        if (!frame.Success || !registers.Success) return null;
        static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);
        return (Int(registers.Groups[1]), Int(frame.Groups[1]), Int(frame.Groups[2]), Int(frame.Groups[3]));
    }

    [GeneratedRegex(@"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")]
    private static partial Regex Frame();

    [GeneratedRegex(@"Used (\d+) registers")]
    private static partial Regex Registers();
}
