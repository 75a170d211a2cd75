namespace Atelier.Vectors.Collections;

/// <summary>Tuning of the collection store.</summary>
public sealed record CollectionStoreOptions
{
    /// <summary>
    /// A shard's log is folded into a new snapshot once it holds more bytes than this and than the last
    /// snapshot (so snapshots cost amortised linear time in what is written).
    /// </summary>
    public long MinSnapshotLogBytes { get; init; } = 8L << 20;

    /// <summary>
    /// Node-local directories (typically one per NVMe drive) where <see cref="VectorStorage.Int8"/> collections
    /// keep the full-precision vectors their graphs re-rank on, instead of memory: the graph walks int8 codes
    /// in memory and reads a candidate's full vector from a segment file, or from a cache bounded by
    /// <see cref="VectorCacheBytes"/>. Shard <c>i</c> of a collection keeps its file in
    /// <c>VectorSegmentDirectories[i % Count]</c>, so shards and their reads spread over the drives. The files
    /// are derived from the collection's log and rebuilt when it opens, so they need no placement.
    /// Empty (the default): every collection keeps its vectors in memory.
    /// </summary>
    public IReadOnlyList<string> VectorSegmentDirectories { get; init; } = [];

    /// <summary>
    /// Bytes of full-precision vectors each open collection with <see cref="VectorSegmentDirectories"/> keeps
    /// in memory, the hot ones by S3-FIFO (decision 0022); the graph and its int8 codes are held in addition.
    /// </summary>
    public long VectorCacheBytes { get; init; } = 256L << 20;

    /// <summary>
    /// Bytes each open collection with <see cref="VectorSegmentDirectories"/> may keep in memory in all: the
    /// part of its graphs a search touches (the codes it walks on, the links, the per-node tables, see
    /// <c>HnswIndex.ResidentBytes</c>) first, and what they leave to the cache of full vectors, which replaces
    /// <see cref="VectorCacheBytes"/>. Set when the collection opens and after each snapshot, as the graphs
    /// grow. 0 (the default): no overall budget; the cache gets <see cref="VectorCacheBytes"/>.
    /// </summary>
    public long MemoryBudgetBytes { get; init; }

    /// <summary>
    /// For a collection with its vectors in segment files: candidates re-ranked on full vectors, as a multiple
    /// of k. The shards' candidates (ranked on int8 codes) are merged first and only this many of the best are
    /// read at full precision, so a search costs at most <c>k * RerankMultiplier</c> vector reads.
    /// </summary>
    public int RerankMultiplier { get; init; } = 4;

    /// <summary>Runs cache eviction inline, so that it is deterministic (tests).</summary>
    internal bool ForegroundCacheMaintenance { get; init; }

    /// <summary>Whether the collection keeps its full vectors in segment files.</summary>
    internal bool UsesSegments(CollectionRecord record) => VectorSegmentDirectories.Count > 0 && record.Config.Storage == VectorStorage.Int8;

    /// <summary>The directory of shard <paramref name="shard"/>'s vector segment; null when the collection keeps its vectors in memory.</summary>
    internal string? SegmentDirectoryOf(CollectionRecord record, int shard) =>
        UsesSegments(record) ? Path.Combine(VectorSegmentDirectories[shard % VectorSegmentDirectories.Count], record.Id, $"shard-{shard:D3}") : null;
}
