using System.Diagnostics;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// Helper threads that stay awake while a caller runs many small parallel products in a row (a decode step:
/// ~33 products of 25–150 µs each), so that a fork costs a store and a join a spin instead of a thread-pool
/// wake-up.
/// </summary>
/// <remarks>
/// <para>Why: on this kind of machine (a 2-vCPU VM) a parked thread-pool worker takes ~20 µs to wake, because
/// an idle vCPU halts and waking it goes through the hypervisor. A ~100M decode step paid that once per
/// product: its per-layer products ran at ~22–27 GB/s against ~49 GB/s for the one 50 MB output product, a
/// fixed ~29 µs a product measured by the serving benchmark's per-product timings.</para>
/// <para>How: <see cref="Hot"/> opens a scope (the serving runner opens one per forward step). While any scope
/// is open, and for <see cref="LingerTicks"/> after the last closes (the engine's gap between steps), the
/// helpers spin on the current job; after that they park. A fork publishes a job whose tasks the caller and
/// the helpers claim one at a time, so the caller never waits on a helper that has not woken yet: it runs the
/// unclaimed tasks itself and only waits for tasks already running. Which thread runs a task never changes a
/// result: the kernels split work only along dimensions whose results do not depend on the split.</para>
/// <para>One job at a time: a fork that finds the team busy (another model's engine, a nested fork) is told
/// to fall back, and a fork from inside a task runs its tasks inline, since the outer fork already keeps every
/// thread busy.</para>
/// </remarks>
public static class KernelTeam
{
    /// <summary>How long helpers keep spinning after the last scope closes: ~200 µs.</summary>
    private static readonly long LingerTicks = Stopwatch.Frequency / 5000;

    private static readonly Lock Gate = new();
    private static readonly ManualResetEventSlim Awake = new(false);
    private static int _helpers;
    private static int _hot;
    private static long _lastHotEnded;
    private static int _busy;
    private static Job? _job;

    [ThreadStatic]
    private static bool _inTask;

    /// <summary>Whether the current thread is running one of a fork's tasks.</summary>
    internal static bool InTask => _inTask;

    /// <summary>Keeps the helpers spinning until the scope is disposed; a no-op when kernels use one thread.</summary>
    public static HotScope Hot()
    {
        var helpers = KernelParallelism.MaxThreads - 1;
        if (helpers <= 0)
        {
            return default;
        }

        lock (Gate)
        {
            for (; _helpers < helpers; _helpers++)
            {
                new Thread(HelperLoop) { IsBackground = true, Name = $"Atelier kernel helper {_helpers + 1}" }.Start();
            }

            if (++_hot == 1)
            {
                Awake.Set();
            }
        }

        return new HotScope(true);
    }

    /// <summary>
    /// Runs <paramref name="body"/> for every index in [0, <paramref name="tasks"/>) on the caller and the spinning
    /// helpers; false, having run nothing, when no scope is open or the team is busy with another job.
    /// </summary>
    internal static bool TryRun(int tasks, Action<int> body)
    {
        if (Volatile.Read(ref _hot) == 0 || Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            return false;
        }

        var job = new Job(body, tasks);
        Volatile.Write(ref _job, job);
        try
        {
            job.Help();

            // Only tasks a helper claimed can still be running; each is short, so spin rather than park.
            var spinner = default(SpinWait);
            while (Volatile.Read(ref job.Done) < tasks)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }
        finally
        {
            Volatile.Write(ref _job, null);
            Volatile.Write(ref _busy, 0);
        }

        if (job.Error is { } error)
        {
            throw new AggregateException(error);
        }

        return true;
    }

    private static void Cool()
    {
        lock (Gate)
        {
            if (--_hot == 0)
            {
                Volatile.Write(ref _lastHotEnded, Stopwatch.GetTimestamp());
                Awake.Reset();
            }
        }
    }

    private static void HelperLoop()
    {
        while (true)
        {
            if (Volatile.Read(ref _hot) == 0 && Stopwatch.GetTimestamp() - Volatile.Read(ref _lastHotEnded) > LingerTicks)
            {
                Awake.Wait();
                continue;
            }

            if (Volatile.Read(ref _job) is { } job && Volatile.Read(ref job.Next) < job.Tasks)
            {
                job.Help();
                continue;
            }

            Thread.SpinWait(8);
        }
    }

    /// <summary>A scope from <see cref="Hot"/>.</summary>
    public readonly struct HotScope(bool open) : IDisposable
    {
        /// <inheritdoc />
        public void Dispose()
        {
            if (open)
            {
                Cool();
            }
        }
    }

    /// <summary>One fork: its tasks, claimed one at a time by whichever thread gets there first.</summary>
    private sealed class Job(Action<int> body, int tasks)
    {
        public readonly int Tasks = tasks;
        public int Next;
        public int Done;
        public Exception? Error;

        public void Help()
        {
            var wasInTask = _inTask;
            _inTask = true;
            try
            {
                while (true)
                {
                    var i = Interlocked.Increment(ref Next) - 1;
                    if (i >= Tasks)
                    {
                        return;
                    }

                    try
                    {
                        body(i);
                    }
                    catch (Exception e)
                    {
                        Interlocked.CompareExchange(ref Error, e, null);
                    }
                    finally
                    {
                        Interlocked.Increment(ref Done);
                    }
                }
            }
            finally
            {
                _inTask = wasInTask;
            }
        }
    }
}
