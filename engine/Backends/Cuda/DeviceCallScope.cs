using AttentionEngine.Bindings.Cuda;

namespace AttentionEngine;

/// <summary>
/// One call on device tensors: the stream its work is queued on (the caller's, or one of its own) and its temporary
/// buffers. <see cref="Complete"/> waits where it must (an own stream, or temporaries the queued work reads);
/// Dispose waits only when the call failed after queueing work on temporaries, then frees them.
/// </summary>
internal sealed class DeviceCallScope : IDisposable
{
    private readonly CudaStream? _own;
    private bool _waited;

    public DeviceCallScope(CudaStream? stream)
    {
        _own = stream is null ? CudaStream.Create() : null;
        Queue = stream ?? _own!;
    }

    public CudaStream Queue { get; }

    public DeviceScratch Scratch { get; } = new();

    /// <summary>
    /// Waits for the queued work when this call owns its stream or queued work reads its temporaries; a call in place
    /// on the caller's stream returns without waiting.
    /// </summary>
    public void Complete()
    {
        if (_own is null && Scratch.IsEmpty) return;
        Queue.Synchronize();
        _waited = true;
    }

    public void Dispose()
    {
        // Queued copies or kernels may still read the temporaries when something failed after queueing them.
        if (!_waited && !Scratch.IsEmpty)
            try { Queue.Synchronize(); }
            catch (CudaException) { } // that failure is what is already propagating
        Scratch.Dispose();
        _own?.Dispose();
    }
}
