using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine.Tests;

/// <summary>The README's device-tensor example, verbatim between the markers (ReadmeTests compares the two).</summary>
internal static class ReadmeDeviceExample
{
    public static void Run(NativeTensor<Half> hostQ, NativeTensor<Half> hostK, NativeTensor<Half> hostV, NativeTensor<Half> hostOutput)
    {
        // README:device-begin
        using var gpu = CudaDevice.Open(0);
        using var dq = DeviceTensor<Half>.CopyOf(gpu, hostQ);               // or DeviceTensor<Half>.FromAddress(gpu, ptr, lengths, strides)
        using var dk = DeviceTensor<Half>.CopyOf(gpu, hostK, TensorLayout.Permuted(hostK.Lengths, [0, 2, 1, 3])); // [B, S, H, D] memory
        using var dv = DeviceTensor<Half>.CopyOf(gpu, hostV);
        using var dout = DeviceTensor<Half>.Zeros(gpu, 1, 8, 128, 64);
        using var dlse = DeviceTensor<float>.Zeros(gpu, 1, 8, 128);
        using var stream = CudaStream.Create();
        CudaBackend.Default.Forward(dq, dk, dv, dout, new AttentionOptions { Mask = Mask.Causal() }, dlse, stream);
        stream.Synchronize();                                                // or keep queueing work on it
        dout.CopyTo(hostOutput);
        // README:device-end
    }
}
