namespace AttentionEngine.Kernels.Cpu.Threading;

/// <summary>
/// How deeply the current thread is nested in CPU kernel tasks: 0 outside any, 1 inside a task, 2 inside a task of a
/// call that a functor made from inside a task, and so on. Scratch that a thread keeps between calls is kept per
/// depth, so an attention call made from inside a score or mask functor (on the caller's thread or a worker's) gets
/// its own buffers and never tramples the ones the interrupted task is using.
/// </summary>
internal static class ThreadNesting
{
    [ThreadStatic] private static int _depth;

    public static int Depth => _depth;

    /// <summary>Marks the current thread as running tasks until the matching <see cref="Exit"/>.</summary>
    public static void Enter() => _depth++;

    public static void Exit() => _depth--;
}

/// <summary>One instance of <typeparamref name="T"/> per thread and nesting depth, created on first use and reused.</summary>
internal static class NestedPerThread<T> where T : class, new()
{
    [ThreadStatic] private static T?[]? _slots;

    public static T Current
    {
        get
        {
            int depth = ThreadNesting.Depth;
            var slots = _slots;
            if (slots is null || slots.Length <= depth)
            {
                Array.Resize(ref slots, depth + 2);
                _slots = slots;
            }
            return slots[depth] ??= new T();
        }
    }
}
