using System.Runtime.ExceptionServices;
using Atelier.Core.Errors;
using Atelier.Data.Shards;

namespace Atelier.Training.Loading;

/// <summary>
/// The fine-tuning data loader: an endless stream of batches of packed windows from a dataset
/// version's Arrow shards, in a seeded global shuffle, resumable at any batch.
/// <para>
/// Order: the windows are numbered globally (shards in list order, rows in shard order); epoch
/// <c>e</c> hands them out in the order of <see cref="WindowShuffle.Permutation"/>(seed, e, count),
/// so every window comes exactly once per epoch, each epoch in another order, and the order depends
/// only on the seed and the shard list (names, row counts, content hashes), never on
/// <see cref="LoaderOptions.Workers"/>, <see cref="LoaderOptions.PrefetchBatches"/> or timing.
/// Batches are consecutive runs of <see cref="LoaderOptions.BatchSize"/> windows of that endless
/// sequence, so a batch may straddle an epoch boundary.
/// </para>
/// <para>
/// Resuming: <see cref="Position"/> (and each batch's <see cref="LoaderBatch.After"/>) names the
/// next window; a loader opened from it continues with exactly the windows an uninterrupted one
/// would have handed out. Opening with a position taken over another shard list or seed fails.
/// </para>
/// <para>
/// Prefetching: batches are planned in order on the caller's thread (cheap: a permutation lookup
/// per window) and read by up to <see cref="LoaderOptions.Workers"/> concurrent batch reads, at most
/// <see cref="LoaderOptions.PrefetchBatches"/> ahead of the trainer, so memory stays bounded. A batch
/// read fetches the column slices of its windows in each shard with range reads that span small holes
/// (<see cref="LoaderOptions.CoalesceGapBytes"/>) and run concurrently
/// (<see cref="LoaderOptions.ConcurrentReads"/>), so a shard on a remote rack or an object store costs
/// about one round trip per batch; with <see cref="LoaderOptions.MaxPrefetchBatches"/> the depth grows
/// while the trainer waits (see <see cref="LoaderOptions.ForLatency"/>).
/// On open every shard's metadata is read and checked before the first batch, so a truncated or
/// corrupt shard fails the job at its first step rather than hours in. A read error surfaces from
/// <see cref="NextAsync"/> and leaves the loader faulted: open a new one from <see cref="Position"/>.
/// </para>
/// <para>
/// Not thread-safe for concurrent <see cref="NextAsync"/> calls (one trainer consumes a loader);
/// <see cref="Position"/> and <see cref="Stats"/> may be read from any thread.
/// </para>
/// </summary>
public sealed class ShardedSequenceLoader : IAsyncDisposable
{
    private readonly ShardFile[] _shards;
    private readonly long[] _shardStarts;
    private readonly LoaderOptions _options;
    private readonly int _windows;
    private readonly TimeProvider _clock;
    private readonly LoaderCounters _counters = new();
    private readonly SemaphoreSlim _readers;
    private readonly SemaphoreSlim _rangeReads;
    private readonly RangeReadPlan _rangePlan;
    private readonly int _maxDepth;
    private readonly int _rangeReadsPerWorker;
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Queue<Task<LoaderBatch>> _inFlight = new();
    private readonly Task _ready;

    // Planning state, touched only by the (single) consumer: the next window to plan, as (epoch, index).
    private int _planEpoch;
    private int _planIndex;
    private int _permutationEpoch;
    private int[] _permutation;
    private Task<int[]>? _nextPermutation;

    private LoaderPosition _position;
    private int _depth;
    private ExceptionDispatchInfo? _fault;
    private int _consuming;
    private int _disposed;

    private ShardedSequenceLoader(IReadOnlyList<ShardSource> shards, long[] shardStarts, LoaderOptions options, string fingerprint, LoaderPosition start)
    {
        _options = options;
        _clock = options.TimeProvider;
        _shardStarts = shardStarts;
        _windows = (int)shardStarts[^1];
        ShardFingerprint = fingerprint;
        var budget = new StreamBudget(options.MaxIdleStreams);
        _shards = new ShardFile[shards.Count];
        for (int i = 0; i < _shards.Length; i++)
        {
            _shards[i] = new ShardFile(shards[i], budget);
        }

        // No maximum count: the adaptive depth adds permits as it grows.
        _readers = new SemaphoreSlim(options.Workers);
        _rangeReads = new SemaphoreSlim(options.ConcurrentReads);
        _rangePlan = new RangeReadPlan(options.CoalesceGapBytes, options.MaxRangeBytes);
        _depth = options.PrefetchBatches;
        _maxDepth = options.MaxPrefetchBatches ?? options.PrefetchBatches;
        _rangeReadsPerWorker = (options.ConcurrentReads + options.Workers - 1) / options.Workers;
        _position = start;
        _planEpoch = start.Epoch;
        _planIndex = (int)start.Index;
        _permutationEpoch = start.Epoch;
        _permutation = WindowShuffle.Permutation(options.Seed, start.Epoch, _windows);
        _ready = Task.Run(() => CheckShardsAsync(_lifetime.Token));
        Fill(_depth);
    }

    /// <summary>Windows in one epoch (the sum of the shards' rows).</summary>
    public long WindowsPerEpoch => _windows;

    /// <summary>The fingerprint of the shard list (<see cref="ShardSources.Fingerprint"/>).</summary>
    public string ShardFingerprint { get; }

    /// <summary>The position of the next batch <see cref="NextAsync"/> hands out: save it to resume there.</summary>
    public LoaderPosition Position => Volatile.Read(ref _position);

    /// <summary>Counters: windows and bytes read, time read, time the trainer waited.</summary>
    public LoaderStats Stats => _counters.Snapshot();

    /// <summary>Opens a loader over <paramref name="shards"/>, at the start or at <paramref name="resumeFrom"/>.</summary>
    /// <param name="shards">The shards, in the dataset's order (the order is part of the shuffle).</param>
    /// <param name="options">Seed, batch size, workers, prefetch depth.</param>
    /// <param name="resumeFrom">A position saved from a loader over the same shards with the same seed.</param>
    /// <exception cref="ArgumentException">
    /// No windows, bad options, or a position of another shard list (fingerprint mismatch), seed or range.
    /// </exception>
    public static ShardedSequenceLoader Open(IReadOnlyList<ShardSource> shards, LoaderOptions options, LoaderPosition? resumeFrom = null)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentNullException.ThrowIfNull(options);
        if (options.BatchSize < 1 || options.Workers < 1 || options.PrefetchBatches < 0 || options.MaxIdleStreams < 0)
        {
            ThrowHelper.Argument($"BatchSize and Workers must be at least 1, PrefetchBatches and MaxIdleStreams at least 0 (got {options.BatchSize}, {options.Workers}, {options.PrefetchBatches}, {options.MaxIdleStreams}).", nameof(options));
        }

        if (options.ConcurrentReads < 1 || options.CoalesceGapBytes < 0 || options.MaxRangeBytes < 1 || options.MaxPrefetchBatches < options.PrefetchBatches)
        {
            ThrowHelper.Argument($"ConcurrentReads and MaxRangeBytes must be at least 1, CoalesceGapBytes at least 0, MaxPrefetchBatches at least PrefetchBatches (got {options.ConcurrentReads}, {options.MaxRangeBytes}, {options.CoalesceGapBytes}, {options.MaxPrefetchBatches}).", nameof(options));
        }

        var starts = new long[shards.Count + 1];
        for (int i = 0; i < shards.Count; i++)
        {
            ShardSource shard = shards[i] ?? throw new ArgumentException($"Shard {i} is null.", nameof(shards));
            if (shard.Rows < 0)
            {
                ThrowHelper.Argument($"Shard '{shard.Name}' declares {shard.Rows} rows.", nameof(shards));
            }

            starts[i + 1] = starts[i] + shard.Rows;
        }

        if (starts[^1] == 0)
        {
            ThrowHelper.Argument($"The dataset has no windows to train on ({shards.Count} shards declaring 0 rows): was every example dropped by the build?", nameof(shards));
        }

        if (starts[^1] > WindowShuffle.MaxWindows)
        {
            ThrowHelper.Argument($"The dataset has {starts[^1]} windows; the loader supports at most {WindowShuffle.MaxWindows} per epoch.", nameof(shards));
        }

        string fingerprint = ShardSources.Fingerprint(shards);
        var start = new LoaderPosition(0, 0, options.Seed, fingerprint);
        if (resumeFrom is not null)
        {
            if (!string.Equals(resumeFrom.ShardFingerprint, fingerprint, StringComparison.Ordinal))
            {
                ThrowHelper.Argument($"The resume position was saved over another shard list (fingerprint {resumeFrom.ShardFingerprint}, these shards are {fingerprint}): resume with the dataset version the job started with.", nameof(resumeFrom));
            }

            if (resumeFrom.Seed != options.Seed)
            {
                ThrowHelper.Argument($"The resume position was saved with seed {resumeFrom.Seed} but the options say {options.Seed}.", nameof(resumeFrom));
            }

            if (resumeFrom.Epoch < 0 || resumeFrom.Index < 0 || resumeFrom.Index >= starts[^1])
            {
                ThrowHelper.Argument($"The resume position (epoch {resumeFrom.Epoch}, index {resumeFrom.Index}) is outside an epoch of {starts[^1]} windows.", nameof(resumeFrom));
            }

            start = resumeFrom;
        }

        return new ShardedSequenceLoader(shards, starts, options, fingerprint, start);
    }

    /// <summary>
    /// The next batch. Endless: after the last window of an epoch comes the first of the next.
    /// Cancelling stops the wait only; the batch stays next in line.
    /// </summary>
    /// <exception cref="InvalidDataException">A shard is truncated, corrupt or not a token shard (the message names it).</exception>
    public async ValueTask<LoaderBatch> NextAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (Interlocked.Exchange(ref _consuming, 1) != 0)
        {
            ThrowHelper.InvalidOperation("NextAsync was called while another call was in progress; a loader has one consumer.");
        }

        try
        {
            _fault?.Throw();
            Fill(1);
            Task<LoaderBatch> head = _inFlight.Peek();
            if (!head.IsCompleted)
            {
                Deepen();
                long waitStart = _clock.GetTimestamp();
                try
                {
                    await head.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception) when (head.IsCompleted)
                {
                    // The batch failed: observed below, where it faults the loader.
                }
                finally
                {
                    _counters.AddWait(_clock.GetElapsedTime(waitStart));
                }
            }

            LoaderBatch batch;
            try
            {
                batch = await head.ConfigureAwait(false);
            }
            catch (Exception e)
            {
                _fault = ExceptionDispatchInfo.Capture(e);
                throw;
            }

            _ = _inFlight.Dequeue();
            Volatile.Write(ref _position, batch.After);
            _counters.AddBatch();

            // Keep the prefetch depth while the trainer works on this batch.
            Fill(_depth);
            return batch;
        }
        finally
        {
            Volatile.Write(ref _consuming, 0);
        }
    }

    /// <summary>Stops the workers, waits for them (never longer than a read in progress), closes the shards.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _lifetime.CancelAsync().ConfigureAwait(false);
        var pending = new List<Task>(_inFlight) { _ready };
        if (_nextPermutation is not null)
        {
            pending.Add(_nextPermutation);
        }

        foreach (Task task in pending)
        {
            try
            {
                await task.ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Cancelled or failed reads nobody will consume.
            }
        }

        _inFlight.Clear();
        foreach (ShardFile shard in _shards)
        {
            shard.Dispose();
        }

        _readers.Dispose();
        _rangeReads.Dispose();
        _lifetime.Dispose();
    }

    /// <summary>The number of batches the loader now reads ahead (grows up to <see cref="LoaderOptions.MaxPrefetchBatches"/>).</summary>
    public int PrefetchDepth => Volatile.Read(ref _depth);

    // The trainer is about to wait: read one batch further ahead and one more at once, if allowed.
    // Not on the first batch, whose wait is the start-up (shard checks, first read), not a shortfall.
    private void Deepen()
    {
        if (_depth >= _maxDepth || _counters.Batches == 0)
        {
            return;
        }

        Volatile.Write(ref _depth, _depth + 1);
        _readers.Release();
        _rangeReads.Release(_rangeReadsPerWorker);
    }

    private void Fill(int depth)
    {
        while (_inFlight.Count < depth)
        {
            int[] windows = PlanBatch(out int epoch, out LoaderPosition after);
            _inFlight.Enqueue(Task.Run(() => ReadBatchAsync(windows, epoch, after), CancellationToken.None));
        }
    }

    // The global indices of the next batch, in order; advances the plan.
    private int[] PlanBatch(out int epoch, out LoaderPosition after)
    {
        epoch = _planEpoch;
        var windows = new int[_options.BatchSize];
        for (int i = 0; i < windows.Length; i++)
        {
            windows[i] = PermutationOf(_planEpoch)[_planIndex];
            if (++_planIndex == _windows)
            {
                _planIndex = 0;
                _planEpoch = checked(_planEpoch + 1);
            }
        }

        after = new LoaderPosition(_planEpoch, _planIndex, _options.Seed, ShardFingerprint);
        return windows;
    }

    private int[] PermutationOf(int epoch)
    {
        if (epoch != _permutationEpoch)
        {
            // Planning only moves forward one epoch at a time. The synchronous wait is deliberate and not
            // sync-over-async: the task is pure CPU work (a shuffle, no awaits, no I/O) that Task.Run below
            // queued a whole epoch of batches ago, so it has almost always finished; if not, this waits only
            // for the rest of the shuffle, which needs no continuation from this thread (no deadlock).
            _permutation = _nextPermutation is { } next ? next.GetAwaiter().GetResult() : WindowShuffle.Permutation(_options.Seed, epoch, _windows);
            _permutationEpoch = epoch;
            _nextPermutation = null;
        }

        // Shuffle the following epoch in the background: at 10M+ windows it takes a noticeable fraction of a second.
        if (_nextPermutation is null)
        {
            ulong seed = _options.Seed;
            int following = checked(epoch + 1);
            int count = _windows;
            CancellationToken token = _lifetime.Token;
            _nextPermutation = Task.Run(() => WindowShuffle.Permutation(seed, following, count, token), token);
        }

        return _permutation;
    }

    private async Task<LoaderBatch> ReadBatchAsync(int[] windows, int epoch, LoaderPosition after)
    {
        CancellationToken cancellationToken = _lifetime.Token;
        await _ready.ConfigureAwait(false);
        await _readers.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            long started = _clock.GetTimestamp();

            // Read each shard's windows together (their slices sorted by offset and coalesced), all
            // shards at once; hand out in the planned order.
            var order = new int[windows.Length];
            for (int i = 0; i < order.Length; i++)
            {
                order[i] = i;
            }

            int[] sorted = (int[])windows.Clone();
            Array.Sort(sorted, order);
            var batch = new ShardWindow[windows.Length];
            var reads = new List<(int First, int Count, Task<ShardWindow[]> Read)>();
            for (int first = 0; first < sorted.Length;)
            {
                int shard = ShardOf(sorted[first]);
                int count = 1;
                while (first + count < sorted.Length && sorted[first + count] < _shardStarts[shard + 1])
                {
                    count++;
                }

                var rows = new long[count];
                for (int j = 0; j < count; j++)
                {
                    rows[j] = sorted[first + j] - _shardStarts[shard];
                }

                reads.Add((first, count, _shards[shard].ReadWindowsAsync(rows, _rangePlan, _rangeReads, _counters, cancellationToken)));
                first += count;
            }

            await Task.WhenAll(reads.Select(r => r.Read)).ConfigureAwait(false);
            foreach ((int first, int count, Task<ShardWindow[]> read) in reads)
            {
                ShardWindow[] ofShard = await read.ConfigureAwait(false);
                for (int j = 0; j < count; j++)
                {
                    batch[order[first + j]] = ofShard[j];
                }
            }

            _counters.AddRead(windows.Length, _clock.GetElapsedTime(started));
            return new LoaderBatch(batch, epoch, after);
        }
        finally
        {
            _readers.Release();
        }
    }

    private Task CheckShardsAsync(CancellationToken cancellationToken) =>
        Parallel.ForEachAsync(
            _shards,
            new ParallelOptions { MaxDegreeOfParallelism = _options.Workers, CancellationToken = cancellationToken },
            async (shard, token) => await shard.CheckAsync(token).ConfigureAwait(false));

    // The shard holding global window `window`: the last one starting at or before it (empty shards share starts).
    private int ShardOf(int window)
    {
        int low = 0;
        int high = _shards.Length - 1;
        while (low < high)
        {
            int middle = (low + high + 1) >>> 1;
            if (_shardStarts[middle] <= window)
            {
                low = middle;
            }
            else
            {
                high = middle - 1;
            }
        }

        return low;
    }
}
