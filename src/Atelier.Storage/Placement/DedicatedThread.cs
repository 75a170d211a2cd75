using System.Collections.Concurrent;

namespace Atelier.Storage.Placement;

/// <summary>
/// Runs an async loop on a thread of its own: the loop starts there and every await that captures
/// the context (the default, or <c>ConfigureAwait(true)</c>) resumes there, through a one-thread
/// <see cref="SynchronizationContext"/> that pumps posted continuations. For loops whose work is
/// blocking system calls behind an async API (a local store's fsync and rename): they keep their own
/// thread instead of holding thread-pool threads, and they await rather than block on a task.
/// </summary>
internal static class DedicatedThread
{
    /// <summary>Starts <paramref name="loop"/> on a new background thread named <paramref name="name"/>.</summary>
    /// <returns>A task that completes as the loop's task does, once the thread has nothing left to run.</returns>
    public static Task Run(Func<Task> loop, string name)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            using var context = new PumpContext();
            SynchronizationContext.SetSynchronizationContext(context);
            Task task;
            try
            {
                task = loop();
            }
            catch (Exception e)
            {
                task = Task.FromException(e);
            }

            // The pump ends when the loop's task does; whatever was posted before that runs first.
            _ = task.ContinueWith(static (_, state) => ((PumpContext)state!).Complete(), context, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            context.Pump();
            SynchronizationContext.SetSynchronizationContext(null);
            if (task.Exception is { } failure)
            {
                done.SetException(failure.InnerExceptions);
            }
            else if (task.IsCanceled)
            {
                done.SetCanceled();
            }
            else
            {
                done.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = name,
        };
        thread.Start();
        return done.Task;
    }

    /// <summary>Queues the continuations posted to it and runs them, in order, on the thread that pumps it.</summary>
    private sealed class PumpContext : SynchronizationContext, IDisposable
    {
        private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _posted = new();

        public override void Post(SendOrPostCallback d, object? state) => _posted.Add((d, state));

        // Only continuations are expected; Send would block the poster on this thread's queue.
        public override void Send(SendOrPostCallback d, object? state) => throw new NotSupportedException("A dedicated thread's context takes posted continuations only.");

        public override SynchronizationContext CreateCopy() => this;

        public void Complete() => _posted.CompleteAdding();

        /// <summary>Runs posted continuations until <see cref="Complete"/> and the queue is empty; between them the thread sleeps.</summary>
        public void Pump()
        {
            foreach (var (callback, state) in _posted.GetConsumingEnumerable())
            {
                callback(state);
            }
        }

        public void Dispose() => _posted.Dispose();
    }
}
