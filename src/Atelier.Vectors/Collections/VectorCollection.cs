using Atelier.Core.Residency;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Collections.Shards;
using Atelier.Vectors.Collections.Wal;

namespace Atelier.Vectors.Collections;

/// <summary>One point to upsert: a non-negative id, a vector of the collection's dimension, a payload.</summary>
/// <param name="Id">The point id.</param>
/// <param name="Vector">The vector (already validated: right dimension, finite components).</param>
/// <param name="Payload">The payload.</param>
public sealed record CollectionPoint(long Id, float[] Vector, Payload Payload);

/// <summary>One search result.</summary>
/// <param name="Id">The point id.</param>
/// <param name="Score">Cosine similarity, inner product, or Euclidean distance (for <c>l2</c>: smaller is closer).</param>
/// <param name="Payload">The point's payload.</param>
/// <param name="Vector">The stored vector, when asked for.</param>
public sealed record ScoredPoint(long Id, float Score, Payload Payload, float[]? Vector);

/// <summary>What a shard holds and where, for the collection's description.</summary>
/// <param name="Shard">The shard number.</param>
/// <param name="Location">The location of its bytes.</param>
/// <param name="Points">Live points.</param>
/// <param name="LogBlobs">Log blobs since the last snapshot.</param>
/// <param name="LogBytes">Bytes of those blobs.</param>
/// <param name="SnapshotBytes">Bytes of the last snapshot (0 when none).</param>
/// <param name="OpenedFromSavedGraph">Whether the shard's graph was mapped from its saved graph when the collection opened, rather than rebuilt from the snapshot and the log.</param>
public sealed record ShardDescription(int Shard, string Location, long Points, int LogBlobs, long LogBytes, long SnapshotBytes, bool OpenedFromSavedGraph = false);

/// <summary>
/// An open vector collection: points hashed by id onto shards, each an HNSW graph with the payloads of its
/// points and a log of immutable blobs at its location, written through the placement guard.
/// </summary>
/// <remarks>
/// Durability: an upsert or delete batch is committed (fsync, atomic rename, audited) as one log blob per
/// shard it touches before it is applied in memory and acknowledged, so an acknowledged batch survives a
/// crash. A crash in the middle of a batch that spans shards can leave part of that unacknowledged batch
/// applied; upserts and deletes are idempotent, so retrying it converges. When a shard's log outgrows its
/// last snapshot, a new snapshot of the shard's live points replaces the log before it.
/// Opening replays the latest snapshot and the log after it, and rebuilds the graph.
/// </remarks>
public sealed class VectorCollection : IDisposable
{
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly CollectionShard[] _shards;
    private readonly PlacementGuard _guard;
    private readonly ResidencyPolicy _policy;
    private readonly CollectionStoreOptions _options;

    private VectorCollection(CollectionRecord record, PlacementGuard guard, ResidencyPolicy policy, CollectionStoreOptions options, CollectionShard[] shards, FullVectorCache? cache)
    {
        VectorCache = cache;
        Record = record;
        _guard = guard;
        _policy = policy;
        _options = options;
        _shards = shards;
    }

    /// <summary>The catalog row.</summary>
    public CollectionRecord Record { get; }

    /// <summary>The configuration.</summary>
    public CollectionConfig Config => Record.Config;

    /// <summary>Live points over all shards.</summary>
    public long Count => _shards.Sum(s => (long)s.Count);

    /// <summary>The cache of full vectors read from segment files; null when the collection keeps its vectors in memory.</summary>
    internal FullVectorCache? VectorCache { get; }

    /// <summary>Full vectors read from segment files (cache misses) since the collection opened.</summary>
    internal long SegmentDiskReads => _shards.Sum(s => s.Segment?.DiskReads ?? 0);

    /// <summary>In-memory bytes of the shards' graphs and codes (not counting the full-vector cache).</summary>
    internal long IndexBytes => _shards.Sum(s => (long)(s.Index.BytesPerVector * s.Index.NodeCount));

    /// <summary>Shards opened from the graph saved at their last snapshot rather than rebuilt (tests).</summary>
    internal int ShardsOpenedFromSavedGraph => _shards.Count(s => s.OpenedFromSavedGraph);

    /// <summary>The blob key prefix of everything the collection stores.</summary>
    public static string KeyPrefix(string collectionId) => $"collection/{collectionId}/";

    /// <summary>Opens a collection from its blobs (an empty one when it has none yet).</summary>
    public static async Task<VectorCollection> OpenAsync(CollectionRecord record, PlacementGuard guard, ResidencyPolicy policy, CollectionStoreOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(record);
        ArgumentNullException.ThrowIfNull(guard);
        options ??= new CollectionStoreOptions();
        var cache = !options.UsesSegments(record) ? null : new FullVectorCache(options.VectorCacheBytes, record.Config.Dimension, options.ForegroundCacheMaintenance);
        var shards = new CollectionShard[record.Config.Shards];
        try
        {
            for (int i = 0; i < shards.Length; i++)
            {
                cancellationToken.ThrowIfCancellationRequested();
                shards[i] = await CollectionShard.OpenAsync(record, guard, i, options.SegmentDirectoryOf(record, i), cache).ConfigureAwait(false);
            }
        }
        catch
        {
            foreach (var shard in shards)
            {
                shard?.Dispose();
            }

            throw;
        }

        var collection = new VectorCollection(record, guard, policy, options, shards, cache);
        collection.ApplyMemoryBudget();
        return collection;
    }

    /// <summary>
    /// Bytes of the shards' graphs that searches keep touching (see <c>HnswIndex.ResidentBytes</c>) plus the
    /// non-empty payloads' map entries: what the memory budget is spent on before the cache of full vectors.
    /// </summary>
    public long ResidentIndexBytes => _shards.Sum(s => s.Index.ResidentBytes + (s.PayloadCount * 128L));

    /// <summary>Whether the graphs alone need more than <see cref="CollectionStoreOptions.MemoryBudgetBytes"/> (the cache is then cut to its minimum, three vectors).</summary>
    public bool OverMemoryBudget { get; private set; }

    /// <summary>The memory budget the collection is held to (0: none; see <see cref="CollectionStoreOptions.MemoryBudgetBytes"/>), when it keeps its vectors in segment files.</summary>
    public long MemoryBudgetBytes => VectorCache is null ? 0 : _options.MemoryBudgetBytes;

    /// <summary>
    /// Gives the cache of full vectors what the memory budget leaves after the graphs. Called when the collection
    /// opens and after each snapshot; the cache keeps what still fits, so a steady trickle of inserts only evicts
    /// the coldest vectors as the graphs grow.
    /// </summary>
    private void ApplyMemoryBudget()
    {
        if (VectorCache is null || _options.MemoryBudgetBytes <= 0)
        {
            return;
        }

        long left = _options.MemoryBudgetBytes - ResidentIndexBytes;
        OverMemoryBudget = left <= 0;
        VectorCache.SetBudget(Math.Max(0, left));
    }

    /// <summary>The shard that holds <paramref name="id"/>.</summary>
    public int ShardOf(long id)
    {
        if (_shards.Length == 1)
        {
            return 0;
        }

        // A 64-bit mix (Stafford's variant 13) so that sequential ids spread evenly.
        ulong z = (ulong)id;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z % (ulong)_shards.Length);
    }

    /// <summary>
    /// Upserts a batch: durable in every shard it touches before this returns. A later point with the same id
    /// in the batch wins. Returns how many distinct ids were written.
    /// </summary>
    public async Task<int> UpsertAsync(IReadOnlyList<CollectionPoint> points, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(points);
        if (Config.Storage == VectorStorage.Float16)
        {
            // Round now, so memory holds exactly what the log (and a replay of it) holds.
            foreach (var point in points)
            {
                for (int i = 0; i < point.Vector.Length; i++)
                {
                    point.Vector[i] = (float)(Half)point.Vector[i];
                }
            }
        }

        var byShard = new List<LogPoint>?[_shards.Length];
        var last = new Dictionary<long, int>(points.Count);
        for (int i = 0; i < points.Count; i++)
        {
            last[points[i].Id] = i;
        }

        for (int i = 0; i < points.Count; i++)
        {
            var point = points[i];
            if (last[point.Id] == i)
            {
                (byShard[ShardOf(point.Id)] ??= []).Add(new LogPoint(point.Id, point.Vector, point.Payload));
            }
        }

        await WriteBatchAsync(LogBlobKind.Upsert, byShard, actor, cancellationToken).ConfigureAwait(false);
        return last.Count;
    }

    /// <summary>Deletes points by id; durable before this returns. Returns how many existed.</summary>
    public async Task<int> DeleteAsync(IReadOnlyList<long> ids, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var byShard = new List<LogPoint>?[_shards.Length];
        foreach (var id in ids.Distinct())
        {
            int s = ShardOf(id);
            if (_shards[s].Index.Contains(id))
            {
                (byShard[s] ??= []).Add(new LogPoint(id, [], Payload.Empty));
            }
        }

        return await WriteBatchAsync(LogBlobKind.Delete, byShard, actor, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The stored vector (normalised, for cosine) and payload of a point.</summary>
    public bool TryGet(long id, out float[] vector, out Payload payload)
    {
        var shard = _shards[ShardOf(id)];
        vector = new float[Config.Dimension];
        if (shard.TryGetPayload(id, out payload) && shard.Index.TryGetVector(id, vector))
        {
            return true;
        }

        payload = Payload.Empty;
        return false;
    }

    /// <summary>The <paramref name="k"/> nearest points passing <paramref name="filter"/>, nearest first.</summary>
    public ScoredPoint[] Search(float[] query, int k, PayloadFilter? filter, int? ef, bool withVector)
    {
        ArgumentNullException.ThrowIfNull(query);
        var merged = VectorCache is null ? SearchInMemory(query, k, filter, ef) : SearchOnSegments(query, k, filter, ef);
        var results = new List<ScoredPoint>(k);
        foreach (var hit in merged)
        {
            var shard = _shards[ShardOf(hit.Id)];

            // A point deleted after the walk found it has no payload any more: it is not returned.
            if (!shard.TryGetPayload(hit.Id, out var payload))
            {
                continue;
            }

            float[]? vector = null;
            if (withVector)
            {
                vector = new float[Config.Dimension];
                if (!shard.Index.TryGetVector(hit.Id, vector))
                {
                    continue;
                }
            }

            results.Add(new ScoredPoint(hit.Id, Score(hit.Distance), payload, vector));
        }

        return [.. results];
    }

    /// <summary>What each shard holds.</summary>
    public ShardDescription[] DescribeShards() =>
        [.. _shards.Select(s => new ShardDescription(s.Number, s.LocationId, s.Count, s.LogBlobs, s.LogBytes, s.SnapshotBytes, s.OpenedFromSavedGraph))];

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var shard in _shards)
        {
            shard.Dispose();
        }

        _writeLock.Dispose();
    }

    /// <summary>Every shard searches its graph on its in-memory vectors; the best k of their results win.</summary>
    private IEnumerable<SearchHit> SearchInMemory(float[] query, int k, PayloadFilter? filter, int? ef)
    {
        var perShard = new SearchHit[_shards.Length][];
        if (_shards.Length == 1)
        {
            perShard[0] = SearchShard(_shards[0], query, k, filter, ef);
        }
        else
        {
            Parallel.For(0, _shards.Length, s => perShard[s] = SearchShard(_shards[s], query, k, filter, ef));
        }

        return perShard.SelectMany(h => h).OrderBy(h => h.Distance).ThenBy(h => h.Id).Take(k);
    }

    private static SearchHit[] SearchShard(CollectionShard shard, float[] query, int k, PayloadFilter? filter, int? ef) =>
        shard.Index.Search(query, k, ef, filter is null ? null : shard.CreateFilter(filter));

    /// <summary>
    /// A search whose full vectors are in segment files: every shard walks its graph on int8 codes and returns
    /// its best candidates unranked, and only the global best <c>k * RerankMultiplier</c> are re-ranked on full
    /// vectors (from the cache, else one read each), so a search reads the same number of vectors however many
    /// shards the collection has.
    /// </summary>
    private IEnumerable<SearchHit> SearchOnSegments(float[] query, int k, PayloadFilter? filter, int? ef)
    {
        int candidatesPerShard = k * Math.Max(1, _options.RerankMultiplier);
        int efShard = Math.Max(ef ?? Config.EfSearch, candidatesPerShard);
        var perShard = new SearchHit[_shards.Length][];
        void Walk(int s)
        {
            var shard = _shards[s];
            var candidates = new SearchHit[candidatesPerShard];
            int found = shard.Index.SearchApproximate(query, candidates, efShard, filter is null ? null : shard.CreateFilter(filter), k);
            perShard[s] = candidates[..found];
        }

        if (_shards.Length == 1)
        {
            Walk(0);
        }
        else
        {
            Parallel.For(0, _shards.Length, Walk);
        }

        var best = perShard.SelectMany(h => h).OrderBy(h => h.Distance).ThenBy(h => h.Id).Take(candidatesPerShard).ToArray();
        float[] prepared = query;
        if (Config.Metric == DistanceMetric.Cosine)
        {
            prepared = [.. query];
            Kernels.VectorDistance.Normalize(prepared);
        }

        // Every candidate's full vector is asked for before the first is read, so the reads of a cold re-rank
        // are in flight together: one device latency per search rather than one per candidate.
        foreach (var hit in best)
        {
            _shards[ShardOf(hit.Id)].Index.PrefetchFullVector(hit.Id);
        }

        var buffer = new float[Config.Dimension];
        var exact = new List<SearchHit>(best.Length);
        foreach (var hit in best)
        {
            // NaN: deleted since the walk found it.
            float distance = _shards[ShardOf(hit.Id)].Index.ExactDistanceTo(prepared, hit.Id, buffer);
            if (!float.IsNaN(distance))
            {
                exact.Add(hit with { Distance = distance });
            }
        }

        return exact.OrderBy(h => h.Distance).ThenBy(h => h.Id).Take(k);
    }

    private float Score(float distance) => Config.Metric switch
    {
        DistanceMetric.L2 => MathF.Sqrt(Math.Max(0, distance)),
        _ => 1f - distance,
    };

    private async Task<int> WriteBatchAsync(LogBlobKind kind, List<LogPoint>?[] byShard, string actor, CancellationToken cancellationToken)
    {
        // One writer per collection: the order of blobs in each log is the order the batches are applied in
        // memory, so a replay rebuilds exactly what was acknowledged.
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var writes = new Task<long>?[_shards.Length];
            for (int s = 0; s < _shards.Length; s++)
            {
                if (byShard[s] is { Count: > 0 } points)
                {
                    var shard = _shards[s];
                    writes[s] = CommitBlobAsync(shard, LogKeys.Log(shard.Prefix, shard.NextSeq), kind, points.Count, points, actor, cancellationToken);
                }
            }

            // Shards whose blob committed are applied even if another shard's failed: their blob is durable
            // and will be replayed on the next open, so memory must agree with it now.
            Exception? failure = null;
            int applied = 0;
            for (int s = 0; s < _shards.Length; s++)
            {
                if (writes[s] is not { } write)
                {
                    continue;
                }

                var shard = _shards[s];
                try
                {
                    long bytes = await write.ConfigureAwait(false);
                    shard.NextSeq++;
                    shard.LogBytes += bytes;
                    shard.LogBlobs++;
                }
                catch (Exception e)
                {
                    failure ??= e;
                    continue;
                }

                if (kind == LogBlobKind.Upsert)
                {
                    shard.ApplyUpserts(byShard[s]!, Config.Dimension);
                    applied += byShard[s]!.Count;
                }
                else
                {
                    applied += shard.ApplyDeletes([.. byShard[s]!.Select(p => p.Id)]);
                }
            }

            if (failure is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(failure).Throw();
            }

            for (int s = 0; s < _shards.Length; s++)
            {
                if (writes[s] is not null && NeedsSnapshot(_shards[s]))
                {
                    // Not the request's token: a client that keeps going away must not keep the log from compacting.
                    await SnapshotAsync(_shards[s], CancellationToken.None).ConfigureAwait(false);
                }
            }

            return applied;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Snapshots every shard that has a log now, instead of when the log outgrows the last snapshot: after a
    /// bulk load, so the next open replays one blob per shard (and, with segment files, maps the saved graph).
    /// </summary>
    internal async Task CompactAsync(CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            foreach (var shard in _shards)
            {
                if (shard.LogBlobs > 0)
                {
                    await SnapshotAsync(shard, cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private bool NeedsSnapshot(CollectionShard shard) =>
        shard.LogBlobs >= 2 && shard.LogBytes > Math.Max(shard.SnapshotBytes, _options.MinSnapshotLogBytes);

    /// <summary>
    /// Writes every live point of the shard as a snapshot covering the log so far, then deletes the log blobs
    /// and the snapshot it replaces. A crash before the snapshot commits leaves the old snapshot and log; a
    /// crash after it leaves blobs the next open ignores and deletes.
    /// </summary>
    private async Task SnapshotAsync(CollectionShard shard, CancellationToken cancellationToken)
    {
        long covered = shard.NextSeq - 1;

        // Only the ids are gathered up front; each vector is read as it is written, so a snapshot of a shard
        // whose vectors live in a segment file does not bring them all into memory. A point with a payload but
        // no node (an insert that failed part-way) is left out, as before; under the write lock no point comes
        // or goes meanwhile, so every id gathered still has its vector when it is written.
        var ids = shard.Ids.Where(shard.Index.Contains).ToArray();
        IEnumerable<LogPoint> Live()
        {
            var vector = new float[Config.Dimension];
            foreach (var id in ids)
            {
                if (!shard.TryGetPayload(id, out var payload) || !shard.Index.TryGetVector(id, vector))
                {
                    throw new InvalidOperationException($"Point {id} of shard {shard.Number} vanished during a snapshot.");
                }

                yield return new LogPoint(id, vector, payload);
            }
        }

        long bytes = await CommitBlobAsync(shard, LogKeys.Snapshot(shard.Prefix, covered), LogBlobKind.Snapshot, ids.Length, Live(), CollectionShard.SystemActor, cancellationToken).ConfigureAwait(false);
        shard.SnapshotSeq = covered;
        shard.SnapshotBytes = bytes;
        shard.LogBytes = 0;
        shard.LogBlobs = 0;
        try
        {
            shard.SaveGraph(covered);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The saved graph only spares the next open a rebuild; the snapshot, which is the truth, committed.
        }

        await shard.DeleteReplacedAsync(_guard, Record, covered).ConfigureAwait(false);
        ApplyMemoryBudget();
    }

    private async Task<long> CommitBlobAsync(CollectionShard shard, string key, LogBlobKind kind, int count, IEnumerable<LogPoint> points, string actor, CancellationToken cancellationToken)
    {
        var artifact = new ArtifactRef("collection", Record.Id, Record.WorkspaceId);
        await using var write = await _guard.BeginWriteAsync(artifact, _policy, shard.LocationId, actor, key: key, cancellationToken: cancellationToken).ConfigureAwait(false);
        await CollectionLog.WriteAsync(write, kind, Config.Storage, Config.Dimension, count, points, cancellationToken).ConfigureAwait(false);

        // Once the bytes are on their way to disk, a client that goes away must not leave a blob that was
        // committed but never applied in memory: commit without the request's token.
        var receipt = await write.CommitAsync(CancellationToken.None).ConfigureAwait(false);
        return receipt.Bytes;
    }
}
