namespace Atelier.Vectors.Collections;

/// <summary>Tuning of the collection store.</summary>
public sealed record CollectionStoreOptions
{
    /// <summary>
    /// A shard's log is folded into a new snapshot once it holds more bytes than this and than the last
    /// snapshot (so snapshots cost amortised linear time in what is written).
    /// </summary>
    public long MinSnapshotLogBytes { get; init; } = 8L << 20;
}
