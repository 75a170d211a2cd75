using System.Diagnostics.Metrics;
using Atelier.Vectors.Collections.Segments;
using BitFaster.Caching.Lfu;

namespace Atelier.Vectors.Table;

/// <summary>
/// An embedding table that can be larger than memory: vectors hashed by id onto shards, shards spread
/// over several data directories (one per drive), each shard an int8 HNSW graph in memory with its
/// full-precision vectors in a segment file on its drive. Full vectors are needed only to re-rank a
/// search's candidates; the hot ones stay in a W-TinyLFU cache (BitFaster's <see cref="ConcurrentLfu{K,V}"/>)
/// bounded by <see cref="EmbeddingTableOptions.MemoryBudgetBytes"/>, the rest are read from disk.
/// A search fans out over the shards in parallel and merges their top k.
/// </summary>
public sealed class EmbeddingTable : IDisposable
{
    /// <summary>The name of the <see cref="Meter"/> the tables publish on (cache hit ratio, disk reads, size).</summary>
    public const string MeterName = VectorMetrics.MeterName;

    private readonly EmbeddingTableOptions _options;
    private readonly Meter _meter;
    private readonly EmbeddingShard[] _shards;
    private readonly FullVectorCache _cache;

    private EmbeddingTable(EmbeddingTableOptions options, bool foregroundCache)
    {
        options.Validate();
        _options = options;
        _cache = new FullVectorCache(options.MemoryBudgetBytes, options.Dimension, foregroundCache);
        _shards = new EmbeddingShard[options.ShardCount];

        // One meter per table, disposed with it, so a closed table stops reporting; exporters subscribe by name.
        _meter = new Meter(MeterName);
        var tags = new KeyValuePair<string, object?>[] { new("table", options.Name) };
        _meter.CreateObservableGauge("atelier.vectors.cache.hit_ratio", () => new Measurement<double>(CacheHitRatio, tags), description: "Hit ratio of the full-vector cache since the table was opened.");
        _meter.CreateObservableCounter("atelier.vectors.disk_reads", () => new Measurement<long>(DiskReads, tags), unit: "{vector}", description: "Full vectors read from segment files.");
        _meter.CreateObservableGauge("atelier.vectors.count", () => new Measurement<long>(Count, tags), unit: "{vector}", description: "Live vectors in the table.");
        try
        {
            for (int i = 0; i < _shards.Length; i++)
            {
                string directory = Path.Combine(options.Directories[i % options.Directories.Count], $"shard-{i:D3}");
                _shards[i] = EmbeddingShard.OpenOrCreate(i, directory, options, _cache);
            }
        }
        catch
        {
            _meter.Dispose();
            foreach (var shard in _shards)
            {
                shard?.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Opens the table in its directories, creating empty shards where none were committed. Vectors added
    /// after the last <see cref="Flush"/> are not there after a crash; committed ones always are.
    /// </summary>
    public static EmbeddingTable Open(EmbeddingTableOptions options) => new(options, foregroundCache: false);

    /// <summary>Opens with cache maintenance run inline, so eviction is deterministic (tests).</summary>
    internal static EmbeddingTable OpenWithForegroundCache(EmbeddingTableOptions options) => new(options, foregroundCache: true);

    /// <summary>The options the table was opened with.</summary>
    public EmbeddingTableOptions Options => _options;

    /// <summary>Live vectors over all shards.</summary>
    public long Count => _shards.Sum(s => (long)s.Index.Count);

    /// <summary>Hit ratio of the full-vector cache since open (exported as a metric by the feature store).</summary>
    public double CacheHitRatio => _cache.HitRatio;

    /// <summary>Full vectors held in the cache now.</summary>
    public int CachedVectors => _cache.Count;

    /// <summary>Full vectors read from the segment files since open.</summary>
    public long DiskReads => _shards.Sum(s => s.DiskReads);

    /// <summary>Bytes of full-precision vectors on disk over all shards.</summary>
    public long SegmentBytes => _shards.Sum(s => s.SegmentBytes);

    /// <summary>In-memory bytes of the shards' graphs and codes (not counting the vector cache).</summary>
    public long IndexBytes => _shards.Sum(s => (long)(s.Index.BytesPerVector * s.Index.NodeCount));

    /// <summary>The shard that holds <paramref name="id"/>.</summary>
    public int ShardOf(long id)
    {
        // A 64-bit mix (Stafford's variant 13) so that sequential ids spread evenly.
        ulong z = (ulong)id;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (int)(z % (ulong)_shards.Length);
    }

    /// <summary>Adds or replaces vectors (row-major, one per id), shards in parallel.</summary>
    public void Upsert(ReadOnlySpan<long> ids, ReadOnlySpan<float> vectors)
    {
        int dim = _options.Dimension;
        if (vectors.Length != ids.Length * dim)
        {
            VectorThrow.BadArgument($"Expected {ids.Length} vectors of dimension {dim}, got {vectors.Length} floats.");
        }

        var counts = new int[_shards.Length];
        var shardOf = new int[ids.Length];
        for (int i = 0; i < ids.Length; i++)
        {
            shardOf[i] = ShardOf(ids[i]);
            counts[shardOf[i]]++;
        }

        var shardIds = new long[_shards.Length][];
        var shardVectors = new float[_shards.Length][];
        var filled = new int[_shards.Length];
        for (int s = 0; s < _shards.Length; s++)
        {
            shardIds[s] = new long[counts[s]];
            shardVectors[s] = new float[counts[s] * dim];
        }

        for (int i = 0; i < ids.Length; i++)
        {
            int s = shardOf[i];
            int at = filled[s]++;
            shardIds[s][at] = ids[i];
            vectors.Slice(i * dim, dim).CopyTo(shardVectors[s].AsSpan(at * dim, dim));
        }

        Parallel.For(0, _shards.Length, s => _shards[s].Index.AddRange(shardIds[s], shardVectors[s]));
    }

    /// <summary>Deletes the vector for <paramref name="id"/>; false when absent.</summary>
    public bool Delete(long id) => _shards[ShardOf(id)].Index.Delete(id);

    /// <summary>The <paramref name="k"/> nearest vectors over all shards that pass <paramref name="filter"/>.</summary>
    public SearchHit[] Search(ReadOnlySpan<float> query, int k, int? ef = null, IVectorFilter? filter = null)
    {
        var hits = new SearchHit[k];
        int n = Search(query, hits, ef, filter);
        return n == k ? hits : hits[..n];
    }

    /// <summary>Fills <paramref name="results"/> with the nearest vectors over all shards, nearest first; returns how many.</summary>
    public int Search(ReadOnlySpan<float> query, Span<SearchHit> results, int? ef = null, IVectorFilter? filter = null)
    {
        int dim = _options.Dimension;
        if (query.Length != dim)
        {
            VectorThrow.DimensionMismatch(dim, query.Length);
        }

        int k = results.Length;
        if (k == 0)
        {
            return 0;
        }

        // Phase 1: every shard walks its graph on int8 codes and returns its best candidates, in parallel.
        int candidatesPerShard = k * Math.Max(1, _options.RerankMultiplier);
        int efShard = Math.Max(ef ?? _options.EfSearch, candidatesPerShard);
        var candidates = new SearchHit[_shards.Length * candidatesPerShard];
        var found = new int[_shards.Length];
        float[] q = query.ToArray();
        if (_shards.Length == 1)
        {
            found[0] = _shards[0].Index.SearchApproximate(q, candidates.AsSpan(0, candidatesPerShard), efShard, filter, k);
        }
        else
        {
            Parallel.For(0, _shards.Length, s =>
                found[s] = _shards[s].Index.SearchApproximate(q, candidates.AsSpan(s * candidatesPerShard, candidatesPerShard), efShard, filter, k));
        }

        int total = 0;
        for (int s = 0; s < _shards.Length; s++)
        {
            candidates.AsSpan(s * candidatesPerShard, found[s]).CopyTo(candidates.AsSpan(total));
            total += found[s];
        }

        // Phase 2: re-rank only the global best candidates on full vectors (cache, else one disk read each).
        var merged = candidates.AsSpan(0, total);
        merged.Sort(static (a, b) => a.Distance.CompareTo(b.Distance));
        merged = merged[..Math.Min(total, candidatesPerShard)];
        if (_options.Metric == DistanceMetric.Cosine)
        {
            Kernels.VectorDistance.Normalize(q);
        }

        var buffer = new float[dim];
        int kept = 0;
        for (int i = 0; i < merged.Length; i++)
        {
            float exact = _shards[ShardOf(merged[i].Id)].Index.ExactDistanceTo(q, merged[i].Id, buffer);
            if (!float.IsNaN(exact))
            {
                merged[kept++] = merged[i] with { Distance = exact };
            }
        }

        merged = merged[..kept];
        merged.Sort(static (a, b) => a.Distance.CompareTo(b.Distance));
        int n = Math.Min(k, kept);
        merged[..n].CopyTo(results);
        return n;
    }

    /// <summary>Commits every shard (vectors fsynced, then each shard's manifest written last).</summary>
    public void Flush()
    {
        foreach (var shard in _shards)
        {
            shard.Flush();
        }
    }

    /// <summary>Runs pending cache maintenance (eviction, frequency sketch updates) now.</summary>
    public void MaintainCache() => _cache.Maintain();

    /// <inheritdoc />
    public void Dispose()
    {
        _meter.Dispose();
        foreach (var shard in _shards)
        {
            shard.Dispose();
        }
    }
}
