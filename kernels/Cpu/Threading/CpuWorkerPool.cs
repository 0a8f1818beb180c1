namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// Persistent worker threads for the CPU kernels. The caller always works too; up to (degree − 1) workers join it.
/// Unlike Parallel.For this allocates nothing per call, so a steady stream of attention calls produces no garbage.
/// Many callers may use the pool at once: each call has its own <see cref="PoolWork"/>, and tickets are served in
/// order. Results never depend on who runs a task (every task writes its own outputs in a fixed order).
/// </summary>
internal sealed class CpuWorkerPool
{
    private readonly Queue<(PoolWork Work, int Generation)> _tickets = new();
    private readonly SemaphoreSlim _ticketsReady = new(0);
    private readonly Lock _startGate = new();
    private readonly int _workerCount;
    private volatile bool _started;

    private CpuWorkerPool(int workerCount) => _workerCount = workerCount;

    /// <summary>One worker per core beside the caller's.</summary>
    public static CpuWorkerPool Shared { get; } = new(Math.Max(0, Environment.ProcessorCount - 1));

    /// <summary>Runs tasks 0..taskCount−1 of <paramref name="work"/> on at most <paramref name="maxDegree"/> threads and returns when all are done.</summary>
    public void Run(PoolWork work, int taskCount, int maxDegree)
    {
        work.Begin(taskCount);
        int helpers = Math.Min(Math.Min(maxDegree, taskCount) - 1, _workerCount);
        if (helpers > 0)
        {
            EnsureStarted();
            int generation = work.Generation;
            lock (_tickets)
            {
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
            _ticketsReady.Wait();
            (PoolWork work, int generation) ticket;
            lock (_tickets) ticket = _tickets.Dequeue();
            // A ticket whose call already finished (the caller drained everything first) is simply dropped.
            if (!ticket.work.TryJoin(ticket.generation)) continue;
            try { ticket.work.Drain(); }
            finally { ticket.work.Leave(); }
        }
    }
}
