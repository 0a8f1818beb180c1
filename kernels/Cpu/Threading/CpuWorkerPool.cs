namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// Persistent worker threads for the CPU kernels. The caller always works too; up to (degree − 1) workers join it.
/// Unlike Parallel.For this allocates nothing per call, so a steady stream of attention calls produces no garbage.
/// Many callers may use the pool at once: each call has its own <see cref="PoolWork"/>, and tickets are served in
/// order. Results never depend on who runs a task (every task writes its own outputs in a fixed order).
/// </summary>
internal sealed class CpuWorkerPool
{
    // Room for every helper of many concurrent calls, so the queue does not grow (allocate) in steady state; stale
    // tickets are purged before each enqueue, so a starved worker cannot make it grow either.
    private readonly Queue<(PoolWork Work, int Generation)> _tickets;
    private readonly SemaphoreSlim _ticketsReady = new(0);
    private readonly Lock _startGate = new();
    private readonly int _workerCount;
    private volatile bool _started;

    private readonly int _ticketCapacity;

    private CpuWorkerPool(int workerCount)
    {
        _workerCount = workerCount;
        _ticketCapacity = Math.Max(64, 16 * workerCount);
        _tickets = new Queue<(PoolWork, int)>(_ticketCapacity);
    }

    /// <summary>One worker per core beside the caller's.</summary>
    public static CpuWorkerPool Shared { get; } = new(Math.Max(0, Environment.ProcessorCount - 1));

    /// <summary>
    /// Work (floating-point operations, memory counted in, <see cref="WorkEstimate"/>) a helper must get before it is
    /// worth waking. A sleeping worker joins 10-20 microseconds after its release on a 2-core VM, and with few coarse
    /// tasks the caller then waits for the task the helper started late: at 2^17 (the first calibration, when workers
    /// and callers blocked at once) a B1 H2 N64 D64 call took 0.024 ms on two threads against 0.014 on one. Since
    /// workers and callers spin briefly before they block (<see cref="PoolSpin"/>), a helper of back-to-back calls is
    /// awake, and 2^20 shares everything with two tasks of real work: B1 H4 N64 D64 0.017 ms against 0.027 on one
    /// thread, a B1 H32 Hkv8 Lk128 D128 decode 0.021 against 0.036 (2^22 kept both on one thread). 2^20 still keeps
    /// B1 H2 N32 D64 and B1 H2 Lk256 D128 decodes (under 10 microseconds) on the caller. The thread count never changes
    /// a bit of any result (tasks are independent and write their own outputs), so this is a speed choice only.
    /// </summary>
    public const double MinFlopsPerThread = 1 << 20;

    /// <summary>How many threads (the caller included) a call of <paramref name="taskCount"/> tasks and <paramref name="flops"/> in total uses.</summary>
    public int ThreadsFor(int taskCount, int maxDegree, double flops) =>
        (int)Math.Max(1, Math.Min(Math.Min(maxDegree, taskCount), Math.Min(_workerCount + 1, Math.Floor(flops / (SharingForced.IsOn ? 1 : MinFlopsPerThread)))));

    private static readonly ScopedSwitch SharingForced = new(), IdleSpinStopped = new();

    /// <summary>
    /// For tests of determinism across thread counts: while any scope is open, calls use the threads they are allowed
    /// however little work they have, so small drawn problems really run on several threads (other tests running
    /// meanwhile only share more; no result changes).
    /// </summary>
    internal static ScopedSwitch.Scope ShareEveryCall() => SharingForced.Open();

    /// <summary>
    /// For timing beside a peer whose workers stop spinning when its call returns (ONNX Runtime's
    /// <c>session.force_spinning_stop</c>, which the bench sets): while a scope is open, our workers block as soon as
    /// their call's work is done instead of spinning for the next ticket, so neither side's idle threads take a core
    /// from the other's timed call. A caller's spin for its own helpers, within the call, stays (as the peer's does).
    /// </summary>
    internal static ScopedSwitch.Scope StopIdleSpin() => IdleSpinStopped.Open();

    /// <summary>
    /// Runs tasks 0..taskCount−1 of <paramref name="work"/> on at most <paramref name="maxDegree"/> threads, fewer when
    /// <paramref name="flops"/> (the call's estimated total) is too little to share (<see cref="MinFlopsPerThread"/>),
    /// and returns when all are done.
    /// </summary>
    public void Run(PoolWork work, int taskCount, int maxDegree, double flops)
    {
        work.Begin(taskCount);
        int helpers = ThreadsFor(taskCount, maxDegree, flops) - 1;
        if (helpers > 0)
        {
            EnsureStarted();
            int generation = work.Generation;
            lock (_tickets)
            {
                // Tickets of finished calls, left by workers the OS has not scheduled yet, would pile up behind a busy
                // machine and grow the queue (an allocation on the caller's thread). The semaphore keeps their
                // counts; a worker that then finds the queue empty goes back to waiting.
                while (_tickets.TryPeek(out var stale) && stale.Work.Generation != stale.Generation) _tickets.Dequeue();
                // Behind a live ticket of a concurrent call the front purge stops, and stale tickets can still pile up
                // until the queue would grow (an allocation on the caller's thread). Then one pass keeps only live
                // tickets, in order.
                if (_tickets.Count + helpers > _ticketCapacity)
                    for (int n = _tickets.Count; n > 0; n--)
                    {
                        var ticket = _tickets.Dequeue();
                        if (ticket.Work.Generation == ticket.Generation) _tickets.Enqueue(ticket);
                    }
                for (int n = 0; n < helpers; n++) _tickets.Enqueue((work, generation));
            }
            _ticketsReady.Release(helpers);
        }
        work.Drain();
        work.End();
    }

    private void EnsureStarted()
    {
        if (_started) return;
        lock (_startGate)
        {
            if (_started) return;
            for (int n = 0; n < _workerCount; n++)
                new Thread(WorkerLoop) { IsBackground = true, Name = $"AttentionEngine CPU worker {n}" }.Start();
            _started = true;
        }
    }

    private void WorkerLoop()
    {
        while (true)
        {
            // A worker that just finished spins a little for the next call's ticket: back-to-back small calls then find
            // it awake instead of paying its wake-up.
            bool ready = false;
            for (long deadline = PoolSpin.Deadline(IdleSpinStopped.IsOn ? 0 : PoolSpin.WorkerTicks); !ready && PoolSpin.Pause(deadline);)
                ready = _ticketsReady.CurrentCount > 0 && _ticketsReady.Wait(0);
            if (!ready) _ticketsReady.Wait();
            (PoolWork work, int generation) ticket;
            lock (_tickets)
            {
                if (!_tickets.TryDequeue(out ticket)) continue; // its ticket was purged as stale
            }
            // A ticket whose call already finished (the caller drained everything first) is simply dropped.
            if (!ticket.work.TryJoin(ticket.generation)) continue;
            try { ticket.work.Drain(); }
            finally { ticket.work.Leave(); }
        }
    }
}
