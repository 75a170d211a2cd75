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
    /// A node-local directory (a fast drive) where <see cref="VectorStorage.Int8"/> collections keep the
    /// full-precision vectors their graphs re-rank on, instead of memory: the graph walks int8 codes in
    /// memory and reads a candidate's full vector from the file, or from a cache bounded by
    /// <see cref="VectorCacheBytes"/>. The files are derived from the collection's log and rebuilt when it
    /// opens, so they need no placement. Null (the default): every collection keeps its vectors in memory.
    /// </summary>
    public string? VectorSegmentDirectory { get; init; }

    /// <summary>
    /// Bytes of full-precision vectors each open collection with a <see cref="VectorSegmentDirectory"/> keeps
    /// in memory, the hot ones by W-TinyLFU; the graph and its int8 codes are held in addition.
    /// </summary>
    public long VectorCacheBytes { get; init; } = 256L << 20;

    /// <summary>
    /// For a collection with its vectors in segment files: candidates re-ranked on full vectors, as a multiple
    /// of k. The shards' candidates (ranked on int8 codes) are merged first and only this many of the best are
    /// read at full precision, so a search costs at most <c>k * RerankMultiplier</c> vector reads.
    /// </summary>
    public int RerankMultiplier { get; init; } = 4;

    /// <summary>Runs cache eviction inline, so that it is deterministic (tests).</summary>
    internal bool ForegroundCacheMaintenance { get; init; }

    /// <summary>The directory of a collection's vector segments, when it keeps its vectors out of memory.</summary>
    internal string? SegmentDirectoryOf(CollectionRecord record) =>
        VectorSegmentDirectory is { } root && record.Config.Storage == VectorStorage.Int8 ? Path.Combine(root, record.Id) : null;
}
