using Atelier.Modeling.Mistral;

namespace Atelier.Inference.Adapters;

/// <summary>What <see cref="AdapterPool.TryAcquire"/> found.</summary>
internal enum AdapterStatus
{
    /// <summary>Resident and now pinned for the caller.</summary>
    Ready,

    /// <summary>Being loaded; the engine is woken when it is done.</summary>
    Loading,

    /// <summary>Not resident, and every resident adapter is pinned: wait until one is released.</summary>
    NoRoom,

    /// <summary>The load failed (the error is returned); the entry is dropped so a later request retries.</summary>
    Failed,
}

/// <summary>
/// A bounded pool of LoRA adapters, loaded on demand through a caller's delegate and evicted least
/// recently used among those no running sequence pins (S-LoRA keeps adapters the same way, so that
/// thousands can be served from a few resident ones).
/// </summary>
/// <remarks>
/// Only the engine loop calls it; loads run on the thread pool and wake the loop when they finish, so
/// a slow registry never stalls the running batch. The pool owns what the loader returns and disposes
/// it on eviction: the loader must return a new instance each time.
/// </remarks>
internal sealed class AdapterPool : IDisposable
{
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly Func<string, CancellationToken, ValueTask<LoraAdapter>>? _loader;
    private readonly MistralArgs _args;
    private readonly int _capacity;
    private readonly Action _wake;
    private readonly CancellationToken _shutdown;
    private long _clock;
    private int _resident;

    public AdapterPool(int capacity, Func<string, CancellationToken, ValueTask<LoraAdapter>>? loader, MistralArgs args, Action wake, CancellationToken shutdown)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
        _loader = loader;
        _args = args;
        _wake = wake;
        _shutdown = shutdown;
    }

    /// <summary>Adapters loaded and held in memory.</summary>
    public int Resident => _resident;

    /// <summary>Adapters loaded since the pool was created (a load after an eviction counts again).</summary>
    public long Loads { get; private set; }

    /// <summary>Pins the adapter when it is resident; starts loading it otherwise.</summary>
    public AdapterStatus TryAcquire(string id, out LoraAdapter? adapter, out Exception? error)
    {
        adapter = null;
        error = null;
        if (_entries.TryGetValue(id, out var entry))
        {
            var load = entry.Load;
            if (!load.IsCompleted)
            {
                return AdapterStatus.Loading;
            }

            if (!entry.Counted)
            {
                // First look after the load finished: check it once.
                if (load.IsCompletedSuccessfully && !load.Result.Args.Equals(_args))
                {
                    load.Result.Dispose();
                    _entries.Remove(id);
                    error = new InvalidOperationException($"Adapter '{id}' was made for another model shape than the one being served.");
                    return AdapterStatus.Failed;
                }

                if (!load.IsCompletedSuccessfully)
                {
                    _entries.Remove(id);
                    error = load.Exception?.InnerException ?? new OperationCanceledException($"Loading adapter '{id}' was cancelled.");
                    return AdapterStatus.Failed;
                }

                entry.Counted = true;
                _resident++;
                Loads++;
            }

            entry.Pins++;
            entry.LastUse = ++_clock;
            adapter = load.Result;
            return AdapterStatus.Ready;
        }

        if (_loader is null)
        {
            error = new InvalidOperationException($"Adapter '{id}' was requested, but the engine has no adapter loader.");
            return AdapterStatus.Failed;
        }

        if (_entries.Count >= _capacity && !EvictOne())
        {
            return AdapterStatus.NoRoom;
        }

        _entries.Add(id, new Entry(StartLoad(id)));
        return AdapterStatus.Loading;
    }

    /// <summary>Unpins an adapter acquired with <see cref="TryAcquire"/>.</summary>
    public void Release(string id)
    {
        var entry = _entries[id];
        System.Diagnostics.Debug.Assert(entry.Pins > 0, "released an adapter nobody pinned");
        entry.Pins--;
        entry.LastUse = ++_clock;
    }

    private Task<LoraAdapter> StartLoad(string id)
    {
        var loader = _loader!;
        var shutdown = _shutdown;
        var task = Task.Run(async () => await loader(id, shutdown).ConfigureAwait(false), shutdown);
        task.ContinueWith(static (_, state) => ((Action)state!)(), _wake, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return task;
    }

    /// <summary>Evicts the least recently used resident adapter no sequence pins; false when there is none.</summary>
    private bool EvictOne()
    {
        string? victim = null;
        long oldest = long.MaxValue;
        foreach (var (id, entry) in _entries)
        {
            if (entry.Pins == 0 && entry.Load.IsCompleted && entry.LastUse < oldest)
            {
                victim = id;
                oldest = entry.LastUse;
            }
        }

        if (victim is null)
        {
            return false;
        }

        var evicted = _entries[victim];
        _entries.Remove(victim);
        if (evicted.Load.IsCompletedSuccessfully)
        {
            evicted.Load.Result.Dispose();
        }

        if (evicted.Counted)
        {
            _resident--;
        }

        return true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var entry in _entries.Values)
        {
            if (entry.Load.IsCompletedSuccessfully)
            {
                entry.Load.Result.Dispose();
            }
            else if (!entry.Load.IsCompleted)
            {
                // Still loading (the shutdown token cancels it): dispose what it returns, if anything.
                entry.Load.ContinueWith(static t =>
                {
                    if (t.IsCompletedSuccessfully)
                    {
                        t.Result.Dispose();
                    }
                }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        _entries.Clear();
        _resident = 0;
    }

    private sealed class Entry(Task<LoraAdapter> load)
    {
        public Task<LoraAdapter> Load { get; } = load;

        public int Pins { get; set; }

        public long LastUse { get; set; }

        /// <summary>Whether the finished load was checked and counted as resident.</summary>
        public bool Counted { get; set; }
    }
}
