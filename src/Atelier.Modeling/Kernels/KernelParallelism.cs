namespace Atelier.Modeling.Kernels;

/// <summary>
/// How many threads the kernels may use. Kernels split work only along dimensions whose results
/// do not depend on the split (rows, columns, heads), never along a reduction, so every result is
/// bit-identical whatever this is set to.
/// </summary>
public static class KernelParallelism
{
    private static int _maxThreads = Environment.ProcessorCount;

    /// <summary>The most threads a kernel uses; defaults to the processor count.</summary>
    public static int MaxThreads
    {
        get => _maxThreads;
        set => _maxThreads = Math.Max(1, value);
    }

    /// <summary>Runs <paramref name="body"/> for each index in [0, count), in parallel when worth it.</summary>
    internal static void For(int count, Action<int> body)
    {
        var threads = Math.Min(_maxThreads, count);
        if (threads <= 1)
        {
            for (var i = 0; i < count; i++)
            {
                body(i);
            }

            return;
        }

        Run(count, threads, body);
    }

    /// <summary>
    /// Runs <paramref name="body"/> for each index in [0, <paramref name="tasks"/>) on up to <paramref name="threads"/>
    /// threads: on the kernel team when a hot scope is open (<see cref="KernelTeam.Hot"/>), inline when called from
    /// inside another fork's task (that fork already keeps every thread busy), else on the thread pool.
    /// </summary>
    public static void Run(int tasks, int threads, Action<int> body)
    {
        if (threads <= 1 || tasks <= 1 || KernelTeam.InTask)
        {
            for (var i = 0; i < tasks; i++)
            {
                body(i);
            }

            return;
        }

        if (!KernelTeam.TryRun(tasks, body))
        {
            Parallel.For(0, tasks, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);
        }
    }

    /// <summary>
    /// Splits [0, count) into contiguous chunks of at least <paramref name="minChunk"/> and runs
    /// <paramref name="body"/>(start, end) on each, in parallel when there is more than one. The chunk
    /// boundaries depend on <paramref name="count"/> and <paramref name="minChunk"/> only, never on the
    /// thread count, so even vectorised code whose tail handling depends on a chunk's length gives the
    /// same bits for any number of threads.
    /// </summary>
    internal static void ForRange(int count, int minChunk, Action<int, int> body)
    {
        if (count <= 0)
        {
            return;
        }

        var chunks = Math.Clamp(count / Math.Max(1, minChunk), 1, 64);
        var size = (count + chunks - 1) / chunks;
        chunks = (count + size - 1) / size;
        if (chunks == 1)
        {
            body(0, count);
            return;
        }

        if (_maxThreads <= 1)
        {
            for (var c = 0; c < chunks; c++)
            {
                var start = c * size;
                body(start, Math.Min(count, start + size));
            }

            return;
        }

        Run(chunks, _maxThreads, c =>
        {
            var start = c * size;
            body(start, Math.Min(count, start + size));
        });
    }
}
