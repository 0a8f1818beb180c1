using System.Runtime.ExceptionServices;

namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// A batch of independent tasks 0..count−1 that the caller and the pool's workers drain together by an atomic
/// counter. One instance is reused call after call (it is the allocation a per-call lambda would otherwise be); a
/// generation number keeps a worker that wakes up late from joining a later call by mistake.
/// </summary>
internal abstract class PoolWork
{
    private readonly object _gate = new(); // a Monitor (not a Lock): End waits on it
    private long _next; // long: threads overshoot the count by one each, which must not wrap near int.MaxValue tasks
    private int _count;
    private int _helpers;
    private int _generation;
    private bool _closed;
    private ExceptionDispatchInfo? _failure;

    /// <summary>Runs one task; tasks must not depend on each other or on which thread runs them.</summary>
    protected abstract void RunTask(int task);

    internal int Generation => Volatile.Read(ref _generation);

    internal void Begin(int count)
    {
        _next = 0;
        _count = count;
        _failure = null;
        lock (_gate) _closed = false;
    }

    /// <summary>Takes tasks until none are left; a failure stops everyone from taking more.</summary>
    internal void Drain()
    {
        ThreadNesting.Enter(); // a call made from inside a task (a functor calling attention) gets its own scratch
        try
        {
            long task;
            while ((task = Interlocked.Increment(ref _next) - 1) < _count) RunTask((int)task);
        }
        catch (Exception exception)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(exception), null);
            Volatile.Write(ref _next, long.MaxValue / 2);
        }
        finally
        {
            ThreadNesting.Exit();
        }
    }

    /// <summary>A worker asks to help with the call its ticket was issued for.</summary>
    internal bool TryJoin(int generation)
    {
        lock (_gate)
        {
            if (_closed || generation != _generation) return false;
            _helpers++;
            return true;
        }
    }

    internal void Leave()
    {
        lock (_gate)
        {
            if (--_helpers == 0 && _closed) Monitor.PulseAll(_gate);
        }
    }

    /// <summary>The caller, done draining, waits for helpers still inside, then retires this generation.</summary>
    internal void End()
    {
        lock (_gate) _closed = true; // no helper joins from here on
        // Helpers still inside are finishing their last task, usually microseconds away. A caller blocked on the monitor
        // is woken 10-20 microseconds after the pulse on a small VM, which a small call feels, so it spins first.
        for (long deadline = PoolSpin.Deadline(PoolSpin.CallerTicks); Volatile.Read(ref _helpers) > 0 && PoolSpin.Pause(deadline);) { }
        lock (_gate)
        {
            while (_helpers > 0) Monitor.Wait(_gate);
            _generation++;
        }
        _failure?.Throw();
    }
}
