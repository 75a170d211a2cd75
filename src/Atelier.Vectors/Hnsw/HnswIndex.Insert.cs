using System.Buffers;
using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Hnsw;

public sealed unsafe partial class HnswIndex
{
    /// <summary>
    /// Adds (or replaces) the vector for <paramref name="id"/>. A replaced vector is tombstoned and a new node
    /// inserted, as hnswlib does without <c>allow_replace_deleted</c>.
    /// </summary>
    public void Add(long id, ReadOnlySpan<float> vector)
    {
        ThrowIfDisposed();
        if (vector.Length != _dimension)
        {
            VectorThrow.DimensionMismatch(_dimension, vector.Length);
        }

        if (_options.QuantizeInt8 && _quantizer is null)
        {
            lock (_entryLock)
            {
                // A lone vector is a poor sample; AddRange and TrainQuantizer train on many.
                TrainQuantizer(vector);
            }
        }

        float[] rented = ArrayPool<float>.Shared.Rent(_dimension);
        try
        {
            var prepared = rented.AsSpan(0, _dimension);
            vector.CopyTo(prepared);
            if (_options.Metric == DistanceMetric.Cosine)
            {
                VectorDistance.Normalize(prepared);
            }

            if (_idToNode.ContainsKey(id))
            {
                Delete(id);
            }

            int node = Interlocked.Increment(ref _count) - 1;
            EnsureCapacity(node + 1);
            _resizeLock.EnterReadLock();
            try
            {
                ThrowIfDisposed();
                InsertNode(node, id, prepared);
            }
            finally
            {
                _resizeLock.ExitReadLock();
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(rented);
        }
    }

    /// <summary>
    /// Adds a batch (row-major <paramref name="vectors"/>, one row per id) on up to
    /// <paramref name="degreeOfParallelism"/> threads. Trains the quantiser on the batch first if needed.
    /// </summary>
    public void AddRange(ReadOnlyMemory<long> ids, ReadOnlyMemory<float> vectors, int degreeOfParallelism = 1)
    {
        ThrowIfDisposed();
        if (vectors.Length != ids.Length * _dimension)
        {
            VectorThrow.BadArgument($"Expected {ids.Length} vectors of dimension {_dimension} ({ids.Length * _dimension} floats), got {vectors.Length} floats.");
        }

        if (_options.QuantizeInt8 && _quantizer is null && ids.Length > 0)
        {
            lock (_entryLock)
            {
                TrainQuantizer(vectors.Span);
            }
        }

        EnsureCapacity(NodeCount + ids.Length);
        if (degreeOfParallelism <= 1)
        {
            for (int i = 0; i < ids.Length; i++)
            {
                Add(ids.Span[i], vectors.Span.Slice(i * _dimension, _dimension));
            }

            return;
        }

        Parallel.For(
            0,
            ids.Length,
            new ParallelOptions { MaxDegreeOfParallelism = degreeOfParallelism },
            i => Add(ids.Span[i], vectors.Span.Slice(i * _dimension, _dimension)));
    }

    /// <summary>Writes the node's data and links it in; the caller holds the resize lock shared.</summary>
    private void InsertNode(int node, long id, ReadOnlySpan<float> vector)
    {
        int level = DrawLevel(node);
        _ids[node] = id;
        _levels[node] = (byte)level;
        if (level > 0)
        {
            _upper[node] = new int[level * (_m + 1)];
        }

        if (_vectors is not null)
        {
            vector.CopyTo(new Span<float>((float*)_vectors.Pointer + ((long)node * _dimension), _dimension));
        }

        _externalVectors?.Write(node, vector);
        if (_codes is not null)
        {
            _quantizer!.Encode(vector, new Span<sbyte>((sbyte*)_codes.Pointer + ((long)node * _dimension), _dimension));
        }

        if (_pqCodes is not null)
        {
            int subspaces = _options.ProductQuantizationSubspaces;
            _pq!.Encode(vector, new Span<byte>(_pqCodes.Pointer + ((long)node * subspaces), subspaces));
        }

        if (_vectors is not null)
        {
            float* v = (float*)_vectors.Pointer;
            if (_options.Metric == DistanceMetric.L2)
            {
                Link(new Float32L2Space(v + ((long)node * _dimension), v, _dimension), node, level);
            }
            else
            {
                Link(new Float32DotSpace(v + ((long)node * _dimension), v, _dimension), node, level);
            }
        }
        else
        {
            // Full vectors live on disk: build on the codes, which is what the walk will use anyway.
            sbyte* c = (sbyte*)_codes!.Pointer;
            float s2 = _quantizer!.StepSquared;
            if (_options.Metric == DistanceMetric.L2)
            {
                Link(new Int8L2Space(c + ((long)node * _dimension), c, _dimension, s2), node, level);
            }
            else
            {
                Link(new Int8DotSpace(c + ((long)node * _dimension), c, _dimension, s2), node, level);
            }
        }

        _idToNode[id] = node;
        Volatile.Write(ref _states[node], NodeState.Live);
        Interlocked.Increment(ref _liveCount);
    }

    private void Link<TSpace>(TSpace space, int node, int level)
        where TSpace : struct, IDistanceSpace<TSpace>
    {
        long entry = Volatile.Read(ref _entry);
        bool holdsEntryLock = false;
        if ((int)(entry >> 32) < 0 || level > (int)entry)
        {
            // A node that raises the top level holds the entry lock for its whole insert (as hnswlib does),
            // so two such nodes cannot both believe they are the new entry point.
            Monitor.Enter(_entryLock);
            holdsEntryLock = true;
            entry = Volatile.Read(ref _entry);
        }

        try
        {
            int entryNode = (int)(entry >> 32);
            int topLevel = (int)entry;
            if (entryNode < 0)
            {
                Volatile.Write(ref _entry, ((long)node << 32) | (uint)level);
                return;
            }

            int current = entryNode;
            float currentDistance = space.Distance(current);
            for (int lc = topLevel; lc > level; lc--)
            {
                GreedyStep(ref space, ref current, ref currentDistance, lc);
            }

            var scratch = SearchScratch.Current;
            Span<int> selected = stackalloc int[_m0];
            var candidateIds = ArrayPool<int>.Shared.Rent(_options.EfConstruction + 1);
            var candidateDistances = ArrayPool<float>.Shared.Rent(_options.EfConstruction + 1);
            try
            {
                for (int lc = Math.Min(level, topLevel); lc >= 0; lc--)
                {
                    SearchLayer(ref space, current, _options.EfConstruction, lc, default(AcceptAll), stopEarly: true, scratch);
                    int n = scratch.Results.Count;
                    scratch.Results.CopyTo(candidateDistances, candidateIds);
                    Array.Sort(candidateDistances, candidateIds, 0, n);
                    int chosen = SelectByHeuristic(ref space, candidateIds.AsSpan(0, n), candidateDistances.AsSpan(0, n), _m, selected);
                    lock (LockFor(node))
                    {
                        SetLinks(node, lc, selected[..chosen]);
                    }

                    for (int i = 0; i < chosen; i++)
                    {
                        ConnectBack(ref space, selected[i], node, lc);
                    }

                    current = candidateIds[0];
                }
            }
            finally
            {
                ArrayPool<int>.Shared.Return(candidateIds);
                ArrayPool<float>.Shared.Return(candidateDistances);
            }

            if (level > topLevel)
            {
                Volatile.Write(ref _entry, ((long)node << 32) | (uint)level);
            }
        }
        finally
        {
            if (holdsEntryLock)
            {
                Monitor.Exit(_entryLock);
            }
        }
    }

    /// <summary>
    /// hnswlib's getNeighborsByHeuristic2: walk the candidates nearest first and keep one only if it is closer
    /// to the base than to every neighbour already kept. Spreads links over directions instead of
    /// spending them all inside one cluster.
    /// </summary>
    private static int SelectByHeuristic<TSpace>(ref TSpace space, ReadOnlySpan<int> sortedIds, ReadOnlySpan<float> sortedDistances, int max, Span<int> selected)
        where TSpace : struct, IDistanceSpace<TSpace>
    {
        int chosen = 0;
        for (int i = 0; i < sortedIds.Length && chosen < max; i++)
        {
            int candidate = sortedIds[i];
            float toBase = sortedDistances[i];
            var fromCandidate = space.ForNode(candidate);
            bool keep = true;
            for (int j = 0; j < chosen; j++)
            {
                if (fromCandidate.Distance(selected[j]) < toBase)
                {
                    keep = false;
                    break;
                }
            }

            if (keep)
            {
                selected[chosen++] = candidate;
            }
        }

        return chosen;
    }

    private void ConnectBack<TSpace>(ref TSpace space, int neighbour, int node, int level)
        where TSpace : struct, IDistanceSpace<TSpace>
    {
        int max = level == 0 ? _m0 : _m;
        Span<int> ids = stackalloc int[max + 1];
        Span<float> distances = stackalloc float[max + 1];
        Span<int> selected = stackalloc int[max];
        lock (LockFor(neighbour))
        {
            var links = Links(neighbour, level);
            for (int i = 0; i < links.Length; i++)
            {
                if (links[i] == node)
                {
                    return;
                }
            }

            if (links.Length < max)
            {
                links.CopyTo(ids);
                ids[links.Length] = node;
                SetLinks(neighbour, level, ids[..(links.Length + 1)]);
                return;
            }

            // Full: re-select among the old links plus the new node, by distance to the neighbour.
            var fromNeighbour = space.ForNode(neighbour);
            int n = links.Length + 1;
            links.CopyTo(ids);
            ids[links.Length] = node;
            for (int i = 0; i < n; i++)
            {
                distances[i] = fromNeighbour.Distance(ids[i]);
            }

            SortByDistance(distances[..n], ids[..n]);
            int chosen = SelectByHeuristic(ref fromNeighbour, ids[..n], distances[..n], max, selected);
            SetLinks(neighbour, level, selected[..chosen]);
        }
    }

    private static void SortByDistance(Span<float> distances, Span<int> ids)
    {
        // Insertion sort: at most 2M + 1 entries.
        for (int i = 1; i < distances.Length; i++)
        {
            float d = distances[i];
            int id = ids[i];
            int j = i - 1;
            while (j >= 0 && distances[j] > d)
            {
                distances[j + 1] = distances[j];
                ids[j + 1] = ids[j];
                j--;
            }

            distances[j + 1] = d;
            ids[j + 1] = id;
        }
    }
}
