namespace Atelier.Catalog;

/// <summary>The stored value of one entity in a feature view's online store.</summary>
/// <param name="EntityKey">The entity key.</param>
/// <param name="EventTime">The event time of the value (kept to the tick, in UTC).</param>
/// <param name="Ordinal">Its position in the view's log (segment, then row): breaks ties between equal event times.</param>
/// <param name="Values">The encoded values; opaque to the store.</param>
public readonly record struct OnlineFeatureRow(string EntityKey, DateTimeOffset EventTime, long Ordinal, byte[] Values);

/// <summary>
/// The persistence of the online feature store: the latest value per (view version, entity key) and,
/// per view, the watermark of the last segment of its log applied. It is a derived index that can be
/// rebuilt from the log, so a backend may favour speed over durability. Caching is not its concern.
/// </summary>
public interface IOnlineFeatureRows
{
    /// <summary>The last segment of <paramref name="viewId"/>'s log applied; 0 when none.</summary>
    ValueTask<long> WatermarkAsync(string viewId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Applies the rows of segment <paramref name="segmentSeq"/> in one transaction: a row replaces the
    /// stored value of its key only when its event time is later, or equal with a greater ordinal, so a
    /// backfill of older events never overwrites a newer value and replaying a segment changes nothing.
    /// The watermark moves to <paramref name="segmentSeq"/> in the same transaction, never backwards.
    /// </summary>
    ValueTask ApplyAsync(string viewId, long segmentSeq, IReadOnlyList<OnlineFeatureRow> rows, CancellationToken cancellationToken = default);

    /// <summary>The stored rows of those of <paramref name="entityKeys"/> that have one, in no particular order.</summary>
    ValueTask<IReadOnlyList<OnlineFeatureRow>> GetAsync(string viewId, IReadOnlyList<string> entityKeys, CancellationToken cancellationToken = default);
}
