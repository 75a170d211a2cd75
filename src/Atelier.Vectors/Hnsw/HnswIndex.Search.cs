using System.Buffers;
using System.Runtime.CompilerServices;
using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Hnsw;

public sealed unsafe partial class HnswIndex
{
    /// <summary>The <paramref name="k"/> nearest live vectors that pass <paramref name="filter"/>, nearest first.</summary>
    public SearchHit[] Search(ReadOnlySpan<float> query, int k, int? ef = null, IVectorFilter? filter = null)
    {
        var hits = new SearchHit[Math.Max(0, k)];
        int n = Search(query, hits, ef, filter);
        return n == hits.Length ? hits : hits[..n];
    }

    /// <summary>
    /// Writes up to <c>results.Length</c> nearest live vectors passing <paramref name="filter"/> into
    /// <paramref name="results"/>, nearest first, and returns how many. Fewer than asked only when fewer
    /// vectors are live and match.
    /// </summary>
    /// <param name="query">The query vector.</param>
    /// <param name="results">Where the hits go; its length is k.</param>
    /// <param name="ef">Candidate list size (defaults to <see cref="HnswOptions.EfSearch"/>; raised to k).</param>
    /// <param name="filter">Applied during the walk; null for none.</param>
    public int Search(ReadOnlySpan<float> query, Span<SearchHit> results, int? ef = null, IVectorFilter? filter = null) =>
        SearchCore(query, results, ef, filter, rerank: true, required: results.Length);

    /// <summary>
    /// Like <see cref="Search(ReadOnlySpan{float}, Span{SearchHit}, int?, IVectorFilter?)"/> but, on a quantised
    /// index, returns the walk's best candidates ranked by their int8 distance without re-ranking, so a caller
    /// merging several indexes re-ranks only the global best (one full-vector read each).
    /// </summary>
    /// <param name="query">The query vector.</param>
    /// <param name="results">Where the candidates go.</param>
    /// <param name="ef">Candidate list size.</param>
    /// <param name="filter">Applied during the walk.</param>
    /// <param name="required">Fewer candidates than this (when more vectors exist) triggers the exact scan.</param>
    internal int SearchApproximate(ReadOnlySpan<float> query, Span<SearchHit> results, int? ef, IVectorFilter? filter, int required) =>
        SearchCore(query, results, ef, filter, rerank: false, required);

    /// <summary>Asks the full-vector source to read the vector of <paramref name="id"/> ahead; nothing when in memory or absent.</summary>
    internal void PrefetchFullVector(long id)
    {
        if (_externalVectors is not null && _idToNode.TryGetValue(id, out int node))
        {
            _externalVectors.Prefetch(node);
        }
    }

    /// <summary>The exact distance from an already prepared (normalised, for cosine) query to a live vector; NaN when absent.</summary>
    internal float ExactDistanceTo(ReadOnlySpan<float> preparedQuery, long id, Span<float> buffer)
    {
        if (!_idToNode.TryGetValue(id, out int node))
        {
            return float.NaN;
        }

        _resizeLock.EnterReadLock();
        try
        {
            return ExactDistance(preparedQuery, node, buffer);
        }
        finally
        {
            _resizeLock.ExitReadLock();
        }
    }

    private int SearchCore(ReadOnlySpan<float> query, Span<SearchHit> results, int? ef, IVectorFilter? filter, bool rerank, int required)
    {
        ThrowIfDisposed();
        if (query.Length != _dimension)
        {
            VectorThrow.DimensionMismatch(_dimension, query.Length);
        }

        int k = results.Length;
        if (k == 0 || Count == 0)
        {
            return 0;
        }

        Span<float> prepared = _dimension <= 1024 ? stackalloc float[_dimension] : new float[_dimension];
        query.CopyTo(prepared);
        if (_options.Metric == DistanceMetric.Cosine)
        {
            VectorDistance.Normalize(prepared);
        }

        _resizeLock.EnterReadLock();
        try
        {
            int live = Count;
            if (filter?.MatchCount is int matches &&
                (matches <= _options.ExactScanMaxMatches || matches < _options.ExactScanSelectivity * live))
            {
                return ExactSearch(prepared, results, filter);
            }

            int found;
            bool stopEarly = filter is null && Volatile.Read(ref _deletedCount) == 0;
            int efSearch = Math.Max(ef ?? _options.EfSearch, k);
            if (filter is null && stopEarly)
            {
                // Nothing deleted: every reachable node is returnable (a node still being inserted by another
                // thread already has its vector and id written), so skip the state check.
                found = WalkAndRank(prepared, results, efSearch, default(AcceptAll), stopEarly, rerank);
            }
            else if (filter is null)
            {
                found = WalkAndRank(prepared, results, efSearch, new AcceptLive(_states), stopEarly, rerank);
            }
            else
            {
                found = WalkAndRank(prepared, results, efSearch, new AcceptLiveMatching(_states, _ids, filter), stopEarly, rerank);
            }

            // The walk may come back short when a filter or many tombstones cut the reachable matches;
            // an exact scan then guarantees k whenever k matching vectors exist.
            if (found < required && found < live)
            {
                return ExactSearch(prepared, results, filter);
            }

            return found;
        }
        finally
        {
            _resizeLock.ExitReadLock();
        }
    }

    /// <summary>Exact k-NN by scanning every live (and matching) vector: the ground truth, and the fallback for selective filters.</summary>
    public SearchHit[] ExactSearch(ReadOnlySpan<float> query, int k, IVectorFilter? filter = null)
    {
        ThrowIfDisposed();
        if (query.Length != _dimension)
        {
            VectorThrow.DimensionMismatch(_dimension, query.Length);
        }

        var prepared = query.ToArray();
        if (_options.Metric == DistanceMetric.Cosine)
        {
            VectorDistance.Normalize(prepared);
        }

        var hits = new SearchHit[Math.Max(0, k)];
        _resizeLock.EnterReadLock();
        try
        {
            int n = ExactSearch(prepared, hits, filter);
            return hits[..n];
        }
        finally
        {
            _resizeLock.ExitReadLock();
        }
    }

    private int ExactSearch(ReadOnlySpan<float> query, Span<SearchHit> results, IVectorFilter? filter)
    {
        var heap = new DistanceHeap(results.Length + 1);
        float[] rented = ArrayPool<float>.Shared.Rent(_dimension);
        var buffer = rented.AsSpan(0, _dimension);
        try
        {
            if (filter?.MatchingIds is { } matching)
            {
                foreach (long id in matching)
                {
                    if (_idToNode.TryGetValue(id, out int node) && _states[node] == NodeState.Live)
                    {
                        Offer(heap, results.Length, ExactDistance(query, node, buffer), node);
                    }
                }
            }
            else
            {
                int nodes = Math.Min(NodeCount, _capacity);
                for (int node = 0; node < nodes; node++)
                {
                    if (_states[node] == NodeState.Live && (filter is null || filter.Matches(_ids[node])))
                    {
                        Offer(heap, results.Length, ExactDistance(query, node, buffer), node);
                    }
                }
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }

        return Drain(heap, results);

        static void Offer(DistanceHeap heap, int k, float distance, int node)
        {
            if (heap.Count < k)
            {
                heap.Push(distance, node);
            }
            else if (distance < heap.TopKey)
            {
                heap.Pop();
                heap.Push(distance, node);
            }
        }
    }

    private int Drain(DistanceHeap heap, Span<SearchHit> results)
    {
        int n = heap.Count;
        for (int i = n - 1; i >= 0; i--)
        {
            results[i] = new SearchHit(_ids[heap.TopId], heap.TopKey);
            heap.Pop();
        }

        return n;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private float ExactDistance(ReadOnlySpan<float> query, int node, Span<float> buffer)
    {
        float* v;
        if (_vectors is not null)
        {
            v = (float*)_vectors.Pointer + ((long)node * _dimension);
        }
        else
        {
            ReadFullVector(node, buffer);
            v = (float*)Unsafe.AsPointer(ref buffer[0]);
        }

        fixed (float* q = query)
        {
            return _options.Metric == DistanceMetric.L2
                ? VectorDistance.L2Squared(q, v, _dimension)
                : 1f - VectorDistance.Dot(q, v, _dimension);
        }
    }

    /// <summary>
    /// Whether a quantised index walks the graph on its int8 codes (the default) or on the full vectors,
    /// for comparing the two on one graph.
    /// </summary>
    internal bool WalkOnCodes { get; set; } = true;

    private int WalkAndRank<TAccept>(ReadOnlySpan<float> query, Span<SearchHit> results, int ef, TAccept accept, bool stopEarly, bool rerank)
        where TAccept : struct, IAcceptPolicy
    {
        var scratch = SearchScratch.Current;
        fixed (float* q = query)
        {
            if (_codes is null || (!WalkOnCodes && _vectors is not null))
            {
                float* v = (float*)_vectors!.Pointer;
                if (_options.Metric == DistanceMetric.L2)
                {
                    var space = new Float32L2Space(q, v, _dimension);
                    Walk(ref space, ef, accept, stopEarly, scratch);
                }
                else
                {
                    var space = new Float32DotSpace(q, v, _dimension);
                    Walk(ref space, ef, accept, stopEarly, scratch);
                }

                // The walk's distances are exact: take the k best straight from the result heap.
                while (scratch.Results.Count > results.Length)
                {
                    scratch.Results.Pop();
                }

                return Drain(scratch.Results, results);
            }

            if (_pqCodes is not null && _pq is not null && WalkOnCodes)
            {
                float[] table = scratch.PqTable(_pq.TableLength);
                _pq.BuildTable(query, table);
                fixed (float* t = table)
                {
                    var space = new PqSpace(t, _pqCodes.Pointer, _pq.Subspaces, _options.Metric == DistanceMetric.L2 ? 0f : 1f);
                    Walk(ref space, ef, accept, stopEarly, scratch);
                }

                return rerank ? Rerank(query, results, scratch) : TakeBest(results, scratch);
            }

            Span<sbyte> code = _dimension <= 4096 ? stackalloc sbyte[_dimension] : new sbyte[_dimension];
            _quantizer!.Encode(query, code);
            fixed (sbyte* c = code)
            {
                sbyte* codes = (sbyte*)_codes.Pointer;
                if (_options.Metric == DistanceMetric.L2)
                {
                    var space = new Int8L2Space(c, codes, _dimension, _quantizer.StepSquared);
                    Walk(ref space, ef, accept, stopEarly, scratch);
                }
                else
                {
                    var space = new Int8DotSpace(c, codes, _dimension, _quantizer.StepSquared);
                    Walk(ref space, ef, accept, stopEarly, scratch);
                }
            }

            return rerank ? Rerank(query, results, scratch) : TakeBest(results, scratch);
        }
    }

    /// <summary>The k best of the walk's results, ranked by the distance the walk used.</summary>
    private int TakeBest(Span<SearchHit> results, SearchScratch scratch)
    {
        while (scratch.Results.Count > results.Length)
        {
            scratch.Results.Pop();
        }

        return Drain(scratch.Results, results);
    }

    /// <summary>Re-scores the walk's candidates (ranked on codes) on full vectors and keeps the k best.</summary>
    private int Rerank(ReadOnlySpan<float> query, Span<SearchHit> results, SearchScratch scratch)
    {
        var candidates = scratch.Results;
        int n = candidates.Count;
        int[] ids = ArrayPool<int>.Shared.Rent(n);
        float[] distances = ArrayPool<float>.Shared.Rent(n);
        float[] buffer = ArrayPool<float>.Shared.Rent(_dimension);
        try
        {
            candidates.CopyTo(distances, ids);
            if (_externalVectors is not null)
            {
                // Full vectors on disk: ask for every candidate's record before reading the first, so the
                // reads overlap instead of costing one device latency each.
                for (int i = 0; i < n; i++)
                {
                    _externalVectors.Prefetch(ids[i]);
                }
            }

            var heap = scratch.Candidates;
            heap.Clear();
            int k = results.Length;
            for (int i = 0; i < n; i++)
            {
                float d = ExactDistance(query, ids[i], buffer);
                if (heap.Count < k)
                {
                    heap.Push(d, ids[i]);
                }
                else if (d < heap.TopKey)
                {
                    heap.Pop();
                    heap.Push(d, ids[i]);
                }
            }

            return Drain(heap, results);
        }
        finally
        {
            ArrayPool<int>.Shared.Return(ids);
            ArrayPool<float>.Shared.Return(distances);
            ArrayPool<float>.Shared.Return(buffer);
        }
    }

    private void Walk<TSpace, TAccept>(ref TSpace space, int ef, TAccept accept, bool stopEarly, SearchScratch scratch)
        where TSpace : struct, IDistanceSpace<TSpace>
        where TAccept : struct, IAcceptPolicy
    {
        long entry = Volatile.Read(ref _entry);
        int current = (int)(entry >> 32);
        int topLevel = (int)entry;
        float currentDistance = space.Distance(current);
        for (int lc = topLevel; lc > 0; lc--)
        {
            GreedyStep(ref space, ref current, ref currentDistance, lc);
        }

        SearchLayer(ref space, current, ef, 0, accept, stopEarly, scratch);
    }

    /// <summary>Moves to the closest neighbour at <paramref name="level"/> until none is closer (upper layers, ef = 1).</summary>
    private void GreedyStep<TSpace>(ref TSpace space, ref int current, ref float currentDistance, int level)
        where TSpace : struct, IDistanceSpace<TSpace>
    {
        bool changed = true;
        while (changed)
        {
            changed = false;
            var links = Links(current, level);
            for (int i = 0; i < links.Length; i++)
            {
                float d = space.Distance(links[i]);
                if (d < currentDistance)
                {
                    currentDistance = d;
                    current = links[i];
                    changed = true;
                }
            }
        }
    }

    /// <summary>
    /// hnswlib's searchBaseLayer: best-first expansion keeping the <paramref name="ef"/> closest accepted
    /// nodes in <see cref="SearchScratch.Results"/>. Rejected nodes (filtered out, deleted, pending) still
    /// enter the candidate queue, so the walk goes through them to the matches behind them.
    /// </summary>
    private void SearchLayer<TSpace, TAccept>(ref TSpace space, int entry, int ef, int level, TAccept accept, bool stopEarly, SearchScratch scratch)
        where TSpace : struct, IDistanceSpace<TSpace>
        where TAccept : struct, IAcceptPolicy
    {
        // Sized by capacity, not count: nodes reserved after this point can be linked in during the walk,
        // but none beyond the capacity while the resize lock is held shared.
        scratch.NewEpoch(_capacity);
        var candidates = scratch.Candidates;
        var top = scratch.Results;
        candidates.Clear();
        top.Clear();
        stopEarly |= TAccept.AcceptsAll;

        float d = space.Distance(entry);
        float bound = float.MaxValue;
        if (accept.Accept(entry))
        {
            top.Push(d, entry);
            bound = d;
        }

        candidates.Push(-d, entry);
        var visited = scratch.Visited;
        ushort epoch = scratch.Epoch;
        visited[entry] = epoch;
        while (candidates.Count > 0)
        {
            float candidateDistance = -candidates.TopKey;
            if (candidateDistance > bound && (top.Count >= ef || stopEarly))
            {
                break;
            }

            int c = candidates.TopId;
            candidates.Pop();
            var links = Links(c, level);
            if (links.Length > 0)
            {
                space.Prefetch(links[0]);
            }

            for (int i = 0; i < links.Length; i++)
            {
                int n = links[i];
                if (i + 1 < links.Length)
                {
                    space.Prefetch(links[i + 1]);
                }

                ref ushort mark = ref visited[n];
                if (mark == epoch)
                {
                    continue;
                }

                mark = epoch;
                float dn = space.Distance(n);
                if (top.Count < ef || dn < bound)
                {
                    candidates.Push(-dn, n);
                    if (accept.Accept(n))
                    {
                        top.Push(dn, n);
                        if (top.Count > ef)
                        {
                            top.Pop();
                        }
                    }

                    if (top.Count > 0)
                    {
                        bound = top.TopKey;
                    }
                }
            }
        }
    }
}
