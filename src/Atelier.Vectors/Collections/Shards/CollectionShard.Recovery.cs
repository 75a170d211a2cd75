using Atelier.Storage.Placement;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Collections.Wal;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Collections.Shards;

/// <summary>Opening a shard from its blobs, and removing the blobs a snapshot replaced.</summary>
internal sealed partial class CollectionShard
{
    /// <summary>The actor the audit log records for writes and deletes the collection makes on its own (snapshots, clean-up).</summary>
    public const string SystemActor = "system:collections";

    /// <summary>
    /// Opens shard <paramref name="number"/> of a collection: replays its latest snapshot and the log after it,
    /// rebuilds the graph, and removes what a crash during a snapshot left behind.
    /// </summary>
    /// <param name="record">The collection.</param>
    /// <param name="guard">Where its blobs are read and deleted.</param>
    /// <param name="number">The shard.</param>
    /// <param name="segmentDirectory">The directory of the shard's vector segment (int8 only); null keeps its vectors in memory.</param>
    /// <param name="cache">The collection's cache of full vectors read from segment files.</param>
    public static async Task<CollectionShard> OpenAsync(CollectionRecord record, PlacementGuard guard, int number, string? segmentDirectory, FullVectorCache? cache)
    {
        var config = record.Config;
        string location = config.LocationOf(number);
        string prefix = $"{VectorCollection.KeyPrefix(record.Id)}shard-{number:D3}/";
        var logs = new List<(long Seq, string Key)>();
        (long Seq, string Key)? snapshot = null;
        await foreach (var key in guard.Locations.ListKeysAsync(location, prefix, CancellationToken.None).ConfigureAwait(false))
        {
            switch (LogKeys.Parse(key, prefix))
            {
                case { Kind: LogBlobKind.Snapshot } s when snapshot is null || s.Seq > snapshot.Value.Seq:
                    snapshot = (s.Seq, key);
                    break;
                case { Kind: LogBlobKind.Upsert } l:
                    logs.Add((l.Seq, key));
                    break;
            }
        }

        long covered = snapshot?.Seq ?? 0;
        if (segmentDirectory is not null)
        {
            if (snapshot is { } saved && SavedGraphCovers(segmentDirectory) == saved.Seq &&
                await TryOpenSavedGraphAsync(record, guard, number, location, prefix, segmentDirectory, cache!, saved, logs).ConfigureAwait(false) is { } opened)
            {
                try
                {
                    // What a crash during a snapshot left behind: the log it covers and the snapshot it replaced.
                    await opened.DeleteReplacedAsync(guard, record, covered).ConfigureAwait(false);
                }
                catch
                {
                    opened.Dispose();
                    throw;
                }

                return opened;
            }

            ForgetSavedGraph(segmentDirectory);
        }

        using var state = new ReplayedPoints(config.Dimension, segmentDirectory is null ? null : Path.Combine(segmentDirectory, "replay.f32"));
        long snapshotBytes = 0, logBytes = 0;
        int logBlobs = 0;
        if (snapshot is { } snap)
        {
            snapshotBytes = await ReadBlobAsync(guard, location, snap.Key, config.Dimension, state.Apply).ConfigureAwait(false);
        }

        long maxSeq = covered;
        foreach (var (seq, key) in logs.OrderBy(l => l.Seq))
        {
            maxSeq = Math.Max(maxSeq, seq);
            if (seq <= covered)
            {
                continue;
            }

            logBytes += await ReadBlobAsync(guard, location, key, config.Dimension, state.Apply).ConfigureAwait(false);
            logBlobs++;
        }

        var options = new HnswOptions
        {
            Dimension = config.Dimension,
            Metric = config.Metric,
            M = config.M,
            EfConstruction = config.EfConstruction,
            EfSearch = config.EfSearch,
            QuantizeInt8 = config.Storage == VectorStorage.Int8,
            ProductQuantizationSubspaces = config.Storage == VectorStorage.Int8 ? config.ProductQuantization : 0,
            InitialCapacity = Math.Max(1024, state.Count),
        };

        // The segment file is derived: the rebuild below writes every record again, so it starts empty.
        var segment = segmentDirectory is null ? null : new VectorSegmentFile(segmentDirectory, config.Dimension, cache!, truncate: true);
        HnswIndex index;
        try
        {
            index = new HnswIndex(options, segment);
        }
        catch
        {
            segment?.Dispose();
            throw;
        }

        var shard = new CollectionShard(number, location, prefix, index, segment)
        {
            NextSeq = maxSeq + 1,
            SnapshotSeq = covered,
            SnapshotBytes = snapshotBytes,
            LogBytes = logBytes,
            LogBlobs = logBlobs,
        };
        try
        {
            foreach (var batch in state.Batches())
            {
                shard.ApplyUpserts(batch, config.Dimension);
            }

            // What a crash during a snapshot left behind: the log it covers and the snapshot it replaced.
            if (covered > 0)
            {
                await shard.DeleteReplacedAsync(guard, record, covered).ConfigureAwait(false);
            }
        }
        catch
        {
            shard.Dispose();
            throw;
        }

        return shard;
    }

    private static async Task<long> ReadBlobAsync(PlacementGuard guard, string location, string key, int dimension, Action<LogBlobKind, long, float[]?, Payload?> apply)
    {
        var stream = await guard.OpenReadAsync(location, key, CancellationToken.None).ConfigureAwait(false)
            ?? throw new VectorStoreCorruptedException($"Collection blob '{key}' was listed at location '{location}' but cannot be read.");
        await using (stream.ConfigureAwait(false))
        {
            CollectionLog.Read(stream, key, dimension, apply);
            return stream.CanSeek ? stream.Length : 0;
        }
    }

    /// <summary>Deletes the log blobs up to <paramref name="covered"/> and the snapshots before it: the snapshot at <paramref name="covered"/> replaces them.</summary>
    public async Task DeleteReplacedAsync(PlacementGuard guard, CollectionRecord record, long covered)
    {
        var artifact = new ArtifactRef("collection", record.Id, record.WorkspaceId);
        // Listed whole before deleting: a store need not keep a listing stable under deletions.
        var keys = new List<string>();
        await foreach (var key in guard.Locations.ListKeysAsync(LocationId, Prefix, CancellationToken.None).ConfigureAwait(false))
        {
            keys.Add(key);
        }

        foreach (var key in keys)
        {
            if (LogKeys.Parse(key, Prefix) is { } parsed &&
                ((parsed.Kind == LogBlobKind.Upsert && parsed.Seq <= covered) || (parsed.Kind == LogBlobKind.Snapshot && parsed.Seq < covered)))
            {
                await guard.DeleteAsync(artifact, LocationId, SystemActor, key, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }
}
