namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// A process-wide switch that is on while any of its scopes is open (a count, not a thread-static: the pool reads it
/// on every call, and the scopes of tests and of the bench may overlap).
/// </summary>
internal sealed class ScopedSwitch
{
    private int _open;

    public bool IsOn => Volatile.Read(ref _open) > 0;

    public Scope Open()
    {
        Interlocked.Increment(ref _open);
        return new Scope(this);
    }

    public readonly struct Scope(ScopedSwitch owner) : IDisposable
    {
        public void Dispose()
        {
            if (owner is not null) Interlocked.Decrement(ref owner._open);
        }
    }
}
