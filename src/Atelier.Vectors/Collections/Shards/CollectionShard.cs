using System.Collections.Concurrent;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Collections.Wal;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Collections.Shards;

/// <summary>A payload field and one of its values: the key of the inverted index that serves match conditions.</summary>
internal readonly record struct PayloadTerm(string Key, PayloadValue Value);

/// <summary>
/// One shard of a collection in memory: its HNSW graph (with its full vectors in memory, or in a segment
/// file for an int8 collection that keeps them out of memory), the payload of each live point, an inverted
/// index from payload values to ids, and the position of its log. Written only under the collection's write lock;
/// read concurrently by searches (the graph supports concurrent reads and writes, the maps are concurrent,
/// and payloads are immutable objects swapped whole).
/// </summary>
internal sealed partial class CollectionShard(int number, string locationId, string prefix, HnswIndex index, VectorSegmentFile? segment) : IDisposable
{
    /// <summary>Below this many candidates (or this fraction of the shard), a match filter is resolved to an id set up front.</summary>
    private const int IdSetMaxCandidates = 50_000;
    private const double IdSetMaxFraction = 0.25;

    private readonly ConcurrentDictionary<long, Payload> _points = new();
    private readonly ConcurrentDictionary<PayloadTerm, ConcurrentDictionary<long, byte>> _postings = new();

    public int Number { get; } = number;

    public string LocationId { get; } = locationId;

    /// <summary>The blob key prefix of the shard's log: <c>collection/&lt;id&gt;/shard-NNN/</c>.</summary>
    public string Prefix { get; } = prefix;

    public HnswIndex Index { get; } = index;

    /// <summary>The file of the graph's full vectors when the shard keeps them out of memory; null when they are in memory.</summary>
    public VectorSegmentFile? Segment { get; } = segment;

    public int Count => Index.Count;

    /// <summary>The sequence number the next log blob gets.</summary>
    public long NextSeq { get; set; } = 1;

    /// <summary>The log sequence number the current snapshot covers (0: none).</summary>
    public long SnapshotSeq { get; set; }

    /// <summary>Bytes of the current snapshot.</summary>
    public long SnapshotBytes { get; set; }

    /// <summary>Bytes of log blobs written after the snapshot.</summary>
    public long LogBytes { get; set; }

    /// <summary>Log blobs written after the snapshot.</summary>
    public int LogBlobs { get; set; }

    /// <summary>
    /// The payload of a live point. Only non-empty payloads are kept: a point in the graph without one has the
    /// empty payload, which spares a collection of bare vectors one dictionary entry per point (about 50 bytes,
    /// half a gigabyte at ten million points).
    /// </summary>
    public bool TryGetPayload(long id, out Payload payload)
    {
        if (_points.TryGetValue(id, out payload!))
        {
            return true;
        }

        payload = Payload.Empty;
        return Index.Contains(id);
    }

    /// <summary>The ids of the live points.</summary>
    public IEnumerable<long> Ids => Index.LiveIds;

    /// <summary>Points with a non-empty payload.</summary>
    internal int PayloadCount => _points.Count;

    /// <summary>Applies committed upserts: payloads first, so a search that reaches a new node finds its payload.</summary>
    public void ApplyUpserts(IReadOnlyList<LogPoint> points, int dimension)
    {
        if (points.Count == 0)
        {
            return;
        }

        var ids = new long[points.Count];
        var vectors = new float[points.Count * dimension];
        for (int i = 0; i < points.Count; i++)
        {
            var point = points[i];
            SetPayload(point.Id, point.Payload);
            ids[i] = point.Id;
            point.Vector.AsSpan(0, dimension).CopyTo(vectors.AsSpan(i * dimension));
        }

        // Large batches (a rebuild on open, a bulk load) insert on every core; small ones are not worth the fan-out.
        int parallelism = points.Count >= 512 ? Environment.ProcessorCount : 1;
        Index.AddRange(ids, vectors, parallelism);
    }

    /// <summary>Applies committed deletes: the graph first, so a search never returns an id whose payload is gone.</summary>
    public int ApplyDeletes(IReadOnlyList<long> ids)
    {
        int deleted = 0;
        foreach (var id in ids)
        {
            if (Index.Delete(id))
            {
                deleted++;
            }

            if (_points.TryRemove(id, out var old))
            {
                RemovePostings(id, old);
            }
        }

        return deleted;
    }

    /// <summary>A filter for this shard's graph: an exact id set when a match condition narrows it enough, else a predicate.</summary>
    public IVectorFilter CreateFilter(PayloadFilter filter)
    {
        List<ConcurrentDictionary<long, byte>>? best = null;
        long bestCount = long.MaxValue;
        foreach (var condition in filter.Must)
        {
            if (condition is not MatchCondition match)
            {
                continue;
            }

            var lists = new List<ConcurrentDictionary<long, byte>>();
            long count = 0;
            foreach (var value in match.Values)
            {
                if (_postings.TryGetValue(new PayloadTerm(match.Key, value), out var posting))
                {
                    lists.Add(posting);
                    count += posting.Count;
                }
            }

            if (count < bestCount)
            {
                best = lists;
                bestCount = count;
            }
        }

        if (best is not null && (bestCount <= IdSetMaxCandidates || bestCount <= IdSetMaxFraction * Count))
        {
            // Every candidate is checked against its current payload: the postings may hold an id whose
            // payload an upsert is replacing right now.
            var matching = new HashSet<long>();
            foreach (var posting in best)
            {
                foreach (var id in posting.Keys)
                {
                    if (_points.TryGetValue(id, out var payload) && filter.Matches(payload))
                    {
                        matching.Add(id);
                    }
                }
            }

            return new MatchingIdsFilter(matching);
        }

        return new PayloadPredicateFilter(this, filter);
    }

    public void Dispose()
    {
        Index.Dispose();
        Segment?.Dispose();
    }

    private void SetPayload(long id, Payload payload)
    {
        if (payload.Fields.Length == 0)
        {
            if (_points.TryRemove(id, out var replaced))
            {
                RemovePostings(id, replaced);
            }

            return;
        }

        if (_points.TryGetValue(id, out var old))
        {
            RemovePostings(id, old);
        }

        _points[id] = payload;
        foreach (var (key, value) in payload.Fields)
        {
            _postings.GetOrAdd(new PayloadTerm(key, value), static _ => new ConcurrentDictionary<long, byte>())[id] = 0;
        }
    }

    private void RemovePostings(long id, Payload payload)
    {
        foreach (var (key, value) in payload.Fields)
        {
            if (_postings.TryGetValue(new PayloadTerm(key, value), out var posting))
            {
                posting.TryRemove(id, out _);
            }
        }
    }

    /// <summary>The ids a payload filter matched, resolved before the walk (exact count lets the graph pick an exact scan).</summary>
    private sealed class MatchingIdsFilter(HashSet<long> ids) : IVectorFilter
    {
        public bool Matches(long id) => ids.Contains(id);

        public int? MatchCount => ids.Count;

        public IEnumerable<long>? MatchingIds => ids;
    }

    /// <summary>A payload filter evaluated on each candidate during the walk.</summary>
    private sealed class PayloadPredicateFilter(CollectionShard shard, PayloadFilter filter) : IVectorFilter
    {
        public bool Matches(long id) => shard.TryGetPayload(id, out var payload) && filter.Matches(payload);

        public int? MatchCount => null;

        public IEnumerable<long>? MatchingIds => null;
    }
}
