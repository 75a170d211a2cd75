using System.Collections.Concurrent;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Blobs;
using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;

namespace Atelier.Training.Checkpoints;

/// <summary>
/// The long-running fine-tune's safety net. A checkpoint is a set of named tensors and blobs of a
/// job at a step; saving it is two-phase (a snapshot in memory, then a persist in the background
/// while training goes on), its bytes are content-addressed chunks (unchanged bytes are never
/// written twice at a location), and it exists only once its manifest is committed, last, through
/// the placement guard's atomic rename. Every chunk is verified by hash on restore, falling back to
/// another copy when one is missing or damaged.
/// <para>
/// Placement: the first copy goes to the first allowed location of
/// <see cref="CheckpointStoreOptions.Locations"/> (on-prem ones first when the policy requires
/// on-prem), fully committed before the next location is written, so a never-cloud-only policy
/// holds at every instant. Locations the policy forbids are refused by the guard (audited) and
/// skipped; the save succeeds when the policy's <see cref="ResidencyPolicy.MinReplicas"/> copies
/// are committed, and otherwise fails leaving nothing.
/// </para>
/// <para>
/// In a cluster the configured locations are the same on every node: a node writes its own drives
/// and the shared ones, skips the drives of other nodes (not a refusal: those bytes are not on this
/// machine), and reads every copy, another node's through that node. A job that resumes on another
/// node finds its checkpoints on the shared location its policy allowed.
/// </para>
/// <para>
/// Concurrency: at most one persist per job is in flight. A save that arrives while the previous
/// one is still persisting waits for it before taking its snapshot (back-pressure: the trainer
/// stalls rather than memory growing without bound), so memory holds at most one snapshot per job.
/// Persists, deletions and sweeps take one store-wide gate, so a sweep never sees the fresh chunks of
/// an uncommitted save as garbage.
/// </para>
/// </summary>
public sealed partial class CheckpointStore : IAsyncDisposable
{
    // Entries below this are copied into their own small array rather than a chunk-sized pooled buffer.
    private const int SmallEntryBytes = 256 << 10;

    // Below this the snapshot copies on the caller's thread; above, it copies on every core.
    private const long ParallelCopyBytes = 64L << 20;

    private readonly PlacementGuard _guard;
    private readonly ChunkStore _chunks;
    private readonly CheckpointStoreOptions _options;
    private readonly TimeProvider _clock;
    private readonly SnapshotBufferPool _pool;
    private readonly FrozenHashCache _frozenHashes = new();
    private readonly SemaphoreSlim _mutation = new(1, 1);
    private readonly ConcurrentDictionary<string, JobLane> _lanes = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _shutdown = new();

    /// <summary>Creates a store writing through <paramref name="guard"/> to the locations of <paramref name="options"/>.</summary>
    public CheckpointStore(PlacementGuard guard, CheckpointStoreOptions options, TimeProvider? clock = null)
    {
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Locations.Count == 0)
        {
            ThrowHelper.Argument("At least one checkpoint location is needed.", nameof(options));
        }

        foreach (var id in options.Locations)
        {
            if (!guard.Locations.Contains(id))
            {
                ThrowHelper.Argument($"Checkpoint location '{id}' is not configured.", nameof(options));
            }
        }

        if (options.ChunkSize < 4096 || options.WriteConcurrency < 1 || options.CommitConcurrency < 1 || options.ReadConcurrency < 1)
        {
            ThrowHelper.Argument("ChunkSize must be at least 4096 and the concurrencies at least 1.", nameof(options));
        }

        _guard = guard;
        _chunks = new ChunkStore(guard);
        _options = options;
        _clock = clock ?? TimeProvider.System;
        _pool = new SnapshotBufferPool(options.ChunkSize, options.MaxPooledSnapshotBytes);
    }

    /// <summary>The options the store runs with.</summary>
    public CheckpointStoreOptions Options => _options;

    /// <summary>The chunk store underneath.</summary>
    public ChunkStore Chunks => _chunks;

    /// <summary>
    /// Takes a snapshot of <paramref name="content"/> and starts persisting it in the background.
    /// Returns once the snapshot is taken: from then on the caller may change every non-frozen
    /// buffer. Await <see cref="CheckpointSave.Durable"/> for durability. If the job's previous
    /// persist is still running, this first waits for it (see the type's remarks).
    /// </summary>
    /// <exception cref="ConflictException">A checkpoint of the job at <paramref name="step"/> already exists.</exception>
    public async ValueTask<CheckpointSave> SaveAsync(CheckpointJob job, long step, CheckpointContent content, CheckpointMetrics? metrics = null, CancellationToken cancellationToken = default)
    {
        var save = await BeginSaveAsync(job, step, content, metrics, cancellationToken).ConfigureAwait(false);

        // A failed snapshot surfaces on Durable as well; here only its completion matters.
        await save.Snapshotted.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        return save;
    }

    /// <summary>
    /// Like <see cref="SaveAsync"/>, but the snapshot copy itself runs in the background too, so
    /// that it overlaps the next step's forward and backward passes, which read the trainable
    /// tensors but do not change them. The caller must not change a non-frozen buffer of
    /// <paramref name="content"/> (i.e. must not run its optimiser step) before
    /// <see cref="CheckpointSave.Snapshotted"/> completes; the time it then waits on it, if any,
    /// is the whole training stall. Returns after the back-pressure wait and the existence check.
    /// </summary>
    /// <exception cref="ConflictException">A checkpoint of the job at <paramref name="step"/> already exists.</exception>
    public async ValueTask<CheckpointSave> BeginSaveAsync(CheckpointJob job, long step, CheckpointContent content, CheckpointMetrics? metrics = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        ArgumentNullException.ThrowIfNull(content);
        ValidateJobId(job.JobId);
        ArgumentException.ThrowIfNullOrEmpty(job.Workspace);
        ArgumentOutOfRangeException.ThrowIfNegative(step);
        if (content.Entries.Count == 0)
        {
            ThrowHelper.Argument("A checkpoint needs at least one entry.", nameof(content));
        }

        var lane = _lanes.GetOrAdd(job.JobId, static _ => new JobLane());
        var started = _clock.GetTimestamp();
        await lane.Gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (lane.InFlight is { } previous)
            {
                // Back-pressure. The previous save's outcome is reported on its own handle.
                await ((Task)previous).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                cancellationToken.ThrowIfCancellationRequested();
            }

            var waited = _clock.GetElapsedTime(started);
            var key = CheckpointManifest.KeyOf(job.JobId, step);
            foreach (var location in _options.Locations)
            {
                if (await HoldsAsync(location, key, cancellationToken).ConfigureAwait(false))
                {
                    throw new ConflictException($"Checkpoint '{CheckpointManifest.IdOf(job.JobId, step)}' already exists at location '{location}'.");
                }
            }

            var save = new CheckpointSave(CheckpointManifest.IdOf(job.JobId, step), step, waited);
            var createdAt = _clock.GetUtcNow();
            var persist = Task.Run(
                async () =>
                {
                    CheckpointSnapshot snapshot;
                    var snapshotStarted = _clock.GetTimestamp();
                    try
                    {
                        snapshot = TakeSnapshot(content);
                    }
                    catch (Exception e)
                    {
                        save.SnapshotFailed(e);
                        throw;
                    }

                    save.SnapshotTaken(_clock.GetElapsedTime(snapshotStarted), snapshot.BytesCopied);
                    return await PersistAsync(job, step, createdAt, metrics ?? new CheckpointMetrics(), snapshot, _shutdown.Token).ConfigureAwait(false);
                },
                CancellationToken.None);
            save.Durable = persist;
            lane.InFlight = persist;
            return save;
        }
        finally
        {
            lane.Gate.Release();
        }
    }

    /// <summary>
    /// Allocates (and touches) snapshot buffers for <paramref name="bytes"/> of non-frozen state
    /// ahead of the first checkpoint, e.g. when a job starts, so that the first snapshot costs what
    /// every later one does instead of also paying for gigabytes of fresh pages. Bounded by
    /// <see cref="CheckpointStoreOptions.MaxPooledSnapshotBytes"/>; returns the bytes now pooled.
    /// </summary>
    public long ReserveSnapshotMemory(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        return _pool.Reserve(bytes);
    }

    /// <summary>Waits for the job's persist in flight, if any; its outcome is on its own handle.</summary>
    public async Task WaitForPersistAsync(string jobId, CancellationToken cancellationToken = default)
    {
        if (_lanes.TryGetValue(jobId, out var lane) && lane.InFlight is { } inFlight)
        {
            await ((Task)inFlight).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            cancellationToken.ThrowIfCancellationRequested();
        }
    }

    /// <summary>Waits for every persist in flight, then stops.</summary>
    public async ValueTask DisposeAsync()
    {
        foreach (var lane in _lanes.Values)
        {
            if (lane.InFlight is { } inFlight)
            {
                await ((Task)inFlight).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        await _shutdown.CancelAsync().ConfigureAwait(false);
        _shutdown.Dispose();
    }

    private CheckpointSnapshot TakeSnapshot(CheckpointContent content)
    {
        var chunkSize = _options.ChunkSize;
        var entries = new List<SnapshotEntry>(content.Entries.Count);
        var rented = new List<byte[]>();
        var copies = new List<(ReadOnlyMemory<byte> From, byte[] To)>();
        long copied = 0;
        foreach (var entry in content.Entries)
        {
            var data = entry.Data;
            var count = data.Length == 0 ? 0 : ((data.Length - 1) / chunkSize) + 1;
            var segments = new SnapshotSegment[count];
            if (!entry.Frozen && data.Length <= SmallEntryBytes)
            {
                var copy = data.ToArray();
                for (var i = 0; i < count; i++)
                {
                    segments[i] = new SnapshotSegment { Bytes = copy.AsMemory(i * chunkSize, Math.Min(chunkSize, copy.Length - (i * chunkSize))) };
                }

                copied += data.Length;
            }
            else
            {
                for (var i = 0; i < count; i++)
                {
                    var slice = data.Slice(i * chunkSize, Math.Min(chunkSize, data.Length - (i * chunkSize)));
                    if (entry.Frozen)
                    {
                        segments[i] = new SnapshotSegment { Bytes = slice, Cache = _frozenHashes.SlotFor(slice) };
                        continue;
                    }

                    var buffer = _pool.Rent();
                    rented.Add(buffer);
                    copies.Add((slice, buffer));
                    segments[i] = new SnapshotSegment { Bytes = buffer.AsMemory(0, slice.Length) };
                    copied += slice.Length;
                }
            }

            entries.Add(new SnapshotEntry { Source = entry, Segments = segments });
        }

        if (copied >= ParallelCopyBytes)
        {
            // Copying is memory-bandwidth bound; more than one core gets closer to that bound
            // than one, and every millisecond here is a millisecond the trainer is stalled.
            Parallel.For(0, copies.Count, i => copies[i].From.Span.CopyTo(copies[i].To));
        }
        else
        {
            foreach (var (from, to) in copies)
            {
                from.Span.CopyTo(to);
            }
        }

        return new CheckpointSnapshot { Entries = entries, Rented = rented, BytesCopied = copied };
    }

    private static void ValidateJobId(string jobId)
    {
        ArgumentException.ThrowIfNullOrEmpty(jobId);
        if (jobId.Contains('/', StringComparison.Ordinal) || jobId.Contains('@', StringComparison.Ordinal))
        {
            ThrowHelper.Argument($"Job id '{jobId}' may not contain '/' or '@'.", nameof(jobId));
        }

        BlobKey.Validate(CheckpointManifest.KeyOf(jobId, 0));
    }

    private sealed class JobLane
    {
        // Serialises SaveAsync calls of one job, so "the previous persist" is well defined.
        public SemaphoreSlim Gate { get; } = new(1, 1);

        public Task<CheckpointPersistResult>? InFlight { get; set; }
    }
}
