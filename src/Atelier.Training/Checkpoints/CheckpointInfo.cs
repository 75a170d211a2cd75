using Atelier.Core.Residency;

namespace Atelier.Training.Checkpoints;

/// <summary>The job a checkpoint belongs to, and the residency policy its bytes obey.</summary>
/// <param name="Workspace">The workspace owning the job.</param>
/// <param name="JobId">The job's id (letters, digits, <c>.</c>, <c>_</c>, <c>-</c>).</param>
/// <param name="Policy">
/// The checkpoint's residency policy: the job's data policies intersected along lineage
/// (<see cref="ResidencyPolicy.Intersect"/>), normally with <see cref="ResidencyPolicy.RequireOnPrem"/>.
/// </param>
public sealed record CheckpointJob(string Workspace, string JobId, ResidencyPolicy Policy);

/// <summary>One entry of a committed checkpoint, without its bytes.</summary>
/// <param name="Name">The entry's name.</param>
/// <param name="Kind">Tensor or blob.</param>
/// <param name="DType">The tensor's dtype.</param>
/// <param name="Shape">The tensor's shape.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Chunks">The SHA-256 names of its chunks, in order.</param>
public sealed record CheckpointEntryInfo(string Name, CheckpointEntryKind Kind, string? DType, IReadOnlyList<long>? Shape, long Length, IReadOnlyList<string> Chunks);

/// <summary>A committed checkpoint: what its manifest says, and where copies of it are.</summary>
public sealed record CheckpointInfo
{
    /// <summary>The id used in audit events: <c>&lt;job&gt;@&lt;step&gt;</c>.</summary>
    public required string Id { get; init; }

    /// <summary>The workspace owning the job.</summary>
    public required string Workspace { get; init; }

    /// <summary>The job.</summary>
    public required string JobId { get; init; }

    /// <summary>The training step it was taken at.</summary>
    public required long Step { get; init; }

    /// <summary>When the snapshot was taken.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The residency policy it was placed under.</summary>
    public required string PolicyName { get; init; }

    /// <summary>Losses and accuracy at the step.</summary>
    public required CheckpointMetrics Metrics { get; init; }

    /// <summary>The chunk size it was cut with.</summary>
    public required int ChunkSize { get; init; }

    /// <summary>Its entries.</summary>
    public required IReadOnlyList<CheckpointEntryInfo> Entries { get; init; }

    /// <summary>The locations holding a committed copy, in read-preference order.</summary>
    public required IReadOnlyList<string> Locations { get; init; }

    /// <summary>The total bytes of its entries (before deduplication).</summary>
    public long TotalBytes
    {
        get
        {
            long total = 0;
            foreach (var entry in Entries)
            {
                total += entry.Length;
            }

            return total;
        }
    }
}

/// <summary>What happened at one location during a persist.</summary>
/// <param name="LocationId">The location.</param>
/// <param name="Committed">True when its manifest was committed there.</param>
/// <param name="ChunksWritten">Chunks written (not there before).</param>
/// <param name="BytesWritten">Chunk and manifest bytes written.</param>
/// <param name="ChunksReused">Chunks that were already there (deduplicated).</param>
/// <param name="BytesReused">Their bytes.</param>
/// <param name="Error">Why the location failed or was skipped, when it did.</param>
public sealed record CheckpointLocationOutcome(string LocationId, bool Committed, int ChunksWritten, long BytesWritten, int ChunksReused, long BytesReused, string? Error);

/// <summary>A durable checkpoint and what persisting it cost.</summary>
/// <param name="Checkpoint">The committed checkpoint.</param>
/// <param name="Locations">Each location that was tried, in order.</param>
/// <param name="RefusedLocations">Configured locations the policy forbade (each refusal audited by the guard).</param>
/// <param name="PersistTime">From the start of the background persist to the last manifest commit.</param>
public sealed record CheckpointPersistResult(
    CheckpointInfo Checkpoint,
    IReadOnlyList<CheckpointLocationOutcome> Locations,
    IReadOnlyList<string> RefusedLocations,
    TimeSpan PersistTime)
{
    /// <summary>Bytes written at every location together.</summary>
    public long BytesWritten => Locations.Sum(l => l.BytesWritten);

    /// <summary>Bytes not written because the chunk was already there, at every location together.</summary>
    public long BytesReused => Locations.Sum(l => l.BytesReused);
}

/// <summary>
/// A checkpoint whose snapshot is taken and whose persist runs in the background. Training may
/// go on (and change its tensors) as soon as <see cref="CheckpointStore.SaveAsync"/> returns this.
/// </summary>
public sealed class CheckpointSave
{
    private readonly TaskCompletionSource _snapshotted = new(TaskCreationOptions.RunContinuationsAsynchronously);

    internal CheckpointSave(string id, long step, TimeSpan backPressureWait)
    {
        Id = id;
        Step = step;
        BackPressureWait = backPressureWait;
    }

    /// <summary>The checkpoint's id, <c>&lt;job&gt;@&lt;step&gt;</c>.</summary>
    public string Id { get; }

    /// <summary>The step.</summary>
    public long Step { get; }

    /// <summary>How long the caller waited for the previous persist of the job (back-pressure).</summary>
    public TimeSpan BackPressureWait { get; }

    /// <summary>How long copying the non-frozen entries took (known once <see cref="Snapshotted"/> completes).</summary>
    public TimeSpan SnapshotTime { get; private set; }

    /// <summary>The bytes copied by the snapshot; frozen entries are referenced, not copied (known once <see cref="Snapshotted"/> completes).</summary>
    public long BytesCopied { get; private set; }

    /// <summary>
    /// The training stall of a <see cref="CheckpointStore.SaveAsync"/>: back-pressure plus the
    /// snapshot copy. (With <see cref="CheckpointStore.BeginSaveAsync"/> the stall is what the
    /// caller waits on <see cref="Snapshotted"/>, which it measures itself.)
    /// </summary>
    public TimeSpan Stall => BackPressureWait + SnapshotTime;

    /// <summary>Completes once the snapshot is taken: the caller may change its buffers from then on.</summary>
    public Task Snapshotted => _snapshotted.Task;

    /// <summary>
    /// Completes when the checkpoint is committed at as many locations as its policy needs;
    /// faults with <see cref="Core.Errors.StorageUnavailableException"/> (disk full, failing
    /// location) or <see cref="Core.Errors.PlacementRefusedException"/> (the policy cannot be met
    /// with the configured locations), in which case nothing of it remains and earlier checkpoints
    /// are untouched.
    /// </summary>
    public Task<CheckpointPersistResult> Durable { get; internal set; } = null!;

    internal void SnapshotTaken(TimeSpan time, long bytesCopied)
    {
        SnapshotTime = time;
        BytesCopied = bytesCopied;
        _snapshotted.TrySetResult();
    }

    internal void SnapshotFailed(Exception error) => _snapshotted.TrySetException(error);
}

/// <summary>A restored checkpoint: its metadata and every entry's bytes, verified chunk by chunk.</summary>
public sealed class RestoredCheckpoint
{
    private readonly Dictionary<string, int> _byName;

    internal RestoredCheckpoint(CheckpointInfo info, byte[][] data, IReadOnlyDictionary<string, int> chunksByLocation)
    {
        Info = info;
        Data = data;
        ChunksReadByLocation = chunksByLocation;
        _byName = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < info.Entries.Count; i++)
        {
            _byName[info.Entries[i].Name] = i;
        }
    }

    /// <summary>The checkpoint's metadata.</summary>
    public CheckpointInfo Info { get; }

    /// <summary>Bytes of each entry, in the order of <see cref="CheckpointInfo.Entries"/>.</summary>
    public IReadOnlyList<byte[]> Data { get; }

    /// <summary>How many chunks were read from each location (a fallback shows up here).</summary>
    public IReadOnlyDictionary<string, int> ChunksReadByLocation { get; }

    /// <summary>The bytes of the entry named <paramref name="name"/>.</summary>
    public byte[] this[string name] =>
        _byName.TryGetValue(name, out var index) ? Data[index] : throw new KeyNotFoundException($"Checkpoint '{Info.Id}' has no entry named '{name}'.");
}

/// <summary>What start-up recovery cleaned.</summary>
/// <param name="PartialWritesRemoved">Uncommitted temporary files removed.</param>
/// <param name="ChunksSwept">Unreferenced chunks deleted (torn saves, interrupted deletions).</param>
/// <param name="BytesFreed">Their bytes.</param>
/// <param name="SkippedLocations">Locations not swept, with why (an unreadable manifest makes a sweep unsafe).</param>
public sealed record CheckpointRecoveryReport(int PartialWritesRemoved, int ChunksSwept, long BytesFreed, IReadOnlyList<string> SkippedLocations);

/// <summary>How the checkpoint store lays out and moves bytes.</summary>
public sealed record CheckpointStoreOptions
{
    /// <summary>
    /// Candidate locations in preference order: the first is the fast local one that takes the
    /// first copy and serves restores; the rest are replica targets. Each is judged by the
    /// job's policy; forbidden ones are refused (and audited) and skipped.
    /// </summary>
    public required IReadOnlyList<string> Locations { get; init; }

    /// <summary>Bytes per chunk. 4 MiB: big enough that per-chunk file, fsync and rename costs are
    /// small against the bytes, small enough that a changed tensor rewrites little beside it.</summary>
    public int ChunkSize { get; init; } = 4 << 20;

    /// <summary>Chunks hashed and written (into the page cache) at a time per location.</summary>
    public int WriteConcurrency { get; init; } = 4;

    /// <summary>
    /// Chunk commits (fsync, atomic rename, directory fsync) in flight per location, on their own
    /// threads, while the next chunks are written: a deep queue for the disk, and concurrent
    /// fsyncs share the filesystem's journal commits. All of a checkpoint's chunks are durable
    /// before its manifest is written.
    /// </summary>
    public int CommitConcurrency { get; init; } = 8;

    /// <summary>Chunk reads in flight during a restore.</summary>
    public int ReadConcurrency { get; init; } = 4;

    /// <summary>Snapshot buffers kept for reuse between checkpoints, in bytes.</summary>
    public long MaxPooledSnapshotBytes { get; init; } = 4L << 30;

    /// <summary>The actor recorded in audit events.</summary>
    public string Actor { get; init; } = "system:checkpoints";
}

/// <summary>The ids the store gives checkpoints: <c>&lt;job&gt;@&lt;step&gt;</c>.</summary>
public static class CheckpointIds
{
    /// <summary>The id of a job's checkpoint at a step.</summary>
    public static string Of(string jobId, long step) => CheckpointManifest.IdOf(jobId, step);
}
