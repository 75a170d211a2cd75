using System.Collections.Concurrent;
using System.Diagnostics;
using Atelier.Vectors.Kernels;
using Atelier.Vectors.Storage;

namespace Atelier.Vectors.Hnsw;

/// <summary>
/// A hierarchical navigable small world graph (Malkov and Yashunin), built the way hnswlib builds it:
/// neighbour selection by the heuristic, base layer of <c>2M</c> links, levels drawn from a seeded
/// generator, tombstoned deletes, and filters applied inside the walk. Optionally keeps int8 codes and walks
/// on them, re-ranking on full vectors.
/// </summary>
/// <remarks>
/// Thread safety: searches run concurrently with each other and with inserts and deletes. Inserts lock
/// one node's link list at a time (never two, so there is no lock order to get wrong); growing the
/// storage takes the resize lock exclusively, everything else takes it shared.
/// Storage: vectors, codes and the base layer live in unmanaged memory (allocated, or mapped from segment
/// files when reopened), upper layers in small managed arrays (about 1/M of the nodes have any).
/// </remarks>
public sealed unsafe partial class HnswIndex : IDisposable
{
    private const int MaxLevel = 30;
    private const int LockStripes = 1 << 12;

    private readonly HnswOptions _options;
    private readonly int _dimension;
    private readonly int _m;
    private readonly int _m0;
    private readonly int _stride0;
    private readonly double _levelMultiplier;
    private readonly object[] _nodeLocks;
    private readonly object _entryLock = new();
    private readonly ReaderWriterLockSlim _resizeLock = new(LockRecursionPolicy.NoRecursion);
    private ConcurrentDictionary<long, int> _idToNode = new();
    private readonly IFullVectorSource? _externalVectors;

    private NativeBuffer? _vectors;
    private NativeBuffer? _codes;
    private NativeBuffer? _pqCodes;
    private ProductQuantizer? _pq;
    private NativeBuffer _links0;
    private int[]?[] _upper;
    private byte[] _levels;
    private byte[] _states;
    private long[] _ids;
    private ScalarQuantizer? _quantizer;
    private int _capacity;
    private int _count;
    private int _liveCount;
    private int _deletedCount;

    // Entry node in the high 32 bits, top level in the low 32, so a search reads a consistent pair.
    private long _entry = -1L << 32;
    private bool _disposed;

    /// <summary>Creates an empty in-memory index.</summary>
    public HnswIndex(HnswOptions options)
        : this(options, externalVectors: null)
    {
    }

    internal HnswIndex(HnswOptions options, IFullVectorSource? externalVectors)
    {
        options.Validate();
        if (externalVectors is not null && !options.QuantizeInt8)
        {
            VectorThrow.BadArgument("An index whose full vectors live outside memory must keep int8 codes.");
        }

        _options = options;
        _dimension = options.Dimension;
        _m = options.M;
        _m0 = options.M * 2;
        _stride0 = _m0 + 1;
        _levelMultiplier = 1.0 / Math.Log(Math.Max(options.M, 2));
        _externalVectors = externalVectors;
        _nodeLocks = new object[LockStripes];
        for (int i = 0; i < _nodeLocks.Length; i++)
        {
            _nodeLocks[i] = new object();
        }

        _capacity = Math.Max(16, options.InitialCapacity);
        if (externalVectors is null)
        {
            _vectors = NativeBuffer.Allocate((long)_capacity * _dimension * sizeof(float));
        }

        if (options.QuantizeInt8)
        {
            _codes = NativeBuffer.Allocate((long)_capacity * _dimension);
        }

        if (options.ProductQuantizationSubspaces > 0)
        {
            _pqCodes = NativeBuffer.Allocate((long)_capacity * options.ProductQuantizationSubspaces);
        }

        _links0 = NativeBuffer.Allocate((long)_capacity * _stride0 * sizeof(int));
        _upper = new int[]?[_capacity];
        _levels = new byte[_capacity];
        _states = new byte[_capacity];
        _ids = new long[_capacity];
    }

    /// <summary>The options the index was built with.</summary>
    public HnswOptions Options => _options;

    /// <summary>The vector dimension.</summary>
    public int Dimension => _dimension;

    /// <summary>Vectors that can be returned (added and not deleted).</summary>
    public int Count => Volatile.Read(ref _liveCount);

    /// <summary>Graph nodes, including tombstones.</summary>
    public int NodeCount => Volatile.Read(ref _count);

    /// <summary>The int8 quantiser, once trained (null for an unquantised index).</summary>
    public ScalarQuantizer? Quantizer => _quantizer;

    /// <summary>
    /// Bytes of the index's segments still backed by their saved files rather than by anonymous memory: all of
    /// them right after it is opened, and still all of them after inserts grow the index (tests).
    /// </summary>
    internal long FileBackedBytes => _links0.FileBackedBytes + (_codes?.FileBackedBytes ?? 0) + (_pqCodes?.FileBackedBytes ?? 0) + (_vectors?.FileBackedBytes ?? 0);

    /// <summary>The product quantiser the walk uses, once trained (null unless <see cref="HnswOptions.ProductQuantizationSubspaces"/> is set).</summary>
    public ProductQuantizer? ProductQuantizer => _pq;

    /// <summary>
    /// Bytes a search keeps touching, however large the index: the codes it walks on (PQ codes when it has
    /// them, else int8 codes, else full vectors), the links, and the per-node tables and id map in managed
    /// memory. The int8 codes of an index that walks on PQ codes are not counted: after a reopen they stay
    /// mapped and are read only by inserts.
    /// </summary>
    public long ResidentBytes
    {
        get
        {
            long n = Math.Max(NodeCount, 0);
            long walked = _pqCodes is not null ? _options.ProductQuantizationSubspaces
                : _codes is not null ? _dimension
                : (long)_dimension * sizeof(float);

            // ids (8) + level + state (2) + upper slot (8) + id map entry (about 48: a ConcurrentDictionary
            // node object and its bucket) per node, plus the upper layers of the ~1/M nodes that have any.
            const long PerNodeTables = 8 + 2 + 8 + 48;
            long upper = n / Math.Max(_m, 2) * (24 + ((_m + 1) * sizeof(int)));
            return (n * (walked + (_stride0 * sizeof(int)) + PerNodeTables)) + upper;
        }
    }

    /// <summary>The ids of the live vectors (a moment's view: concurrent inserts and deletes may or may not show).</summary>
    public IEnumerable<long> LiveIds => _idToNode.Keys;

    /// <summary>Whether a vector with this id is present and not deleted.</summary>
    public bool Contains(long id) => _idToNode.ContainsKey(id);

    /// <summary>Memory the index holds per node: full vectors (when in memory), codes, base layer and upper layers.</summary>
    public double BytesPerVector
    {
        get
        {
            int n = Math.Max(1, NodeCount);
            long upper = 0;
            for (int i = 0; i < n && i < _upper.Length; i++)
            {
                upper += _upper[i] is { } a ? 24 + (a.Length * sizeof(int)) : 0;
            }

            double perNode = (_stride0 * sizeof(int)) + 1 + 1 + 8 + 8 /* upper slot */ + 16 /* id map */;
            if (_vectors is not null)
            {
                perNode += _dimension * sizeof(float);
            }

            if (_codes is not null)
            {
                perNode += _dimension;
            }

            if (_pqCodes is not null)
            {
                perNode += _options.ProductQuantizationSubspaces;
            }

            return perNode + ((double)upper / n);
        }
    }

    /// <summary>Fits the int8 quantiser on a representative sample (row-major). Must precede the first insert to take effect.</summary>
    public void TrainQuantizer(ReadOnlySpan<float> sample)
    {
        if (!_options.QuantizeInt8)
        {
            return;
        }

        if (_options.Metric == DistanceMetric.Cosine)
        {
            var normalized = sample.ToArray();
            for (int v = 0; v < normalized.Length / _dimension; v++)
            {
                VectorDistance.Normalize(normalized.AsSpan(v * _dimension, _dimension));
            }

            _quantizer ??= ScalarQuantizer.Train(_options.Metric, normalized, _dimension);
            TrainProductQuantizer(normalized);
        }
        else
        {
            _quantizer ??= ScalarQuantizer.Train(_options.Metric, sample, _dimension);
            TrainProductQuantizer(sample);
        }
    }

    private void TrainProductQuantizer(ReadOnlySpan<float> sample)
    {
        if (_options.ProductQuantizationSubspaces > 0 && _pq is null)
        {
            _pq = ProductQuantizer.Train(_options.Metric, sample, _dimension, _options.ProductQuantizationSubspaces, _options.Seed);
        }
    }

    /// <summary>Marks the vector with <paramref name="id"/> deleted; it is never returned again. False when absent.</summary>
    public bool Delete(long id)
    {
        if (!_idToNode.TryRemove(id, out int node))
        {
            return false;
        }

        _resizeLock.EnterReadLock();
        try
        {
            Volatile.Write(ref _states[node], NodeState.Deleted);
        }
        finally
        {
            _resizeLock.ExitReadLock();
        }

        Interlocked.Decrement(ref _liveCount);
        Interlocked.Increment(ref _deletedCount);
        return true;
    }

    /// <summary>Copies the stored (normalised, for cosine) full vector of <paramref name="id"/>; false when absent.</summary>
    public bool TryGetVector(long id, Span<float> destination)
    {
        if (!_idToNode.TryGetValue(id, out int node))
        {
            return false;
        }

        ReadFullVector(node, destination);
        return true;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _resizeLock.EnterWriteLock();
        try
        {
            _disposed = true;
            _vectors?.Dispose();
            _codes?.Dispose();
            _pqCodes?.Dispose();
            _links0.Dispose();
        }
        finally
        {
            _resizeLock.ExitWriteLock();
        }

        _resizeLock.Dispose();
    }

    private void ReadFullVector(int node, Span<float> destination)
    {
        if (_vectors is not null)
        {
            new ReadOnlySpan<float>((float*)_vectors.Pointer + ((long)node * _dimension), _dimension).CopyTo(destination);
        }
        else
        {
            Debug.Assert(_externalVectors is not null);
            _externalVectors.Read(node, destination);
        }
    }

    private int* LinksPointer0(int node) => (int*)_links0.Pointer + ((long)node * _stride0);

    /// <summary>The links of <paramref name="node"/> at <paramref name="level"/>; empty above the node's level.</summary>
    private ReadOnlySpan<int> Links(int node, int level)
    {
        if (level == 0)
        {
            int* p = LinksPointer0(node);
            return new ReadOnlySpan<int>(p + 1, Math.Min(p[0], _m0));
        }

        var upper = _upper[node];
        int offset = (level - 1) * (_m + 1);
        if (upper is null || offset >= upper.Length)
        {
            return default;
        }

        return upper.AsSpan(offset + 1, Math.Min(upper[offset], _m));
    }

    private void SetLinks(int node, int level, ReadOnlySpan<int> links)
    {
        if (level == 0)
        {
            int* p = LinksPointer0(node);
            links.CopyTo(new Span<int>(p + 1, _m0));

            // Entries first, then the count: a concurrent reader sees either the old or the new count,
            // and every entry under either count is a valid node id.
            Volatile.Write(ref p[0], links.Length);
            return;
        }

        var upper = _upper[node]!;
        int offset = (level - 1) * (_m + 1);
        links.CopyTo(upper.AsSpan(offset + 1, _m));
        Volatile.Write(ref upper[offset], links.Length);
    }

    private object LockFor(int node) => _nodeLocks[node & (LockStripes - 1)];

    private int DrawLevel(int node)
    {
        // SplitMix64 of (seed, node): the level of a node depends only on the seed and its position, so
        // a parallel build draws the same levels as a sequential one.
        ulong z = _options.Seed + (0x9E3779B97F4A7C15UL * (ulong)(node + 1));
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        double u = ((z >> 11) + 1) * (1.0 / 9007199254740993.0);
        return Math.Min(MaxLevel, (int)(-Math.Log(u) * _levelMultiplier));
    }

    private void EnsureCapacity(int nodes)
    {
        if (nodes <= _capacity)
        {
            return;
        }

        _resizeLock.EnterWriteLock();
        try
        {
            if (nodes <= _capacity)
            {
                return;
            }

            int capacity = _capacity;
            while (capacity < nodes)
            {
                capacity = (int)Math.Min(int.MaxValue - 64, capacity * 2L);
            }

            if (_vectors is not null)
            {
                var grown = _vectors.Grow((long)capacity * _dimension * sizeof(float));
                _vectors.Dispose();
                _vectors = grown;
            }

            if (_codes is not null)
            {
                var grown = _codes.Grow((long)capacity * _dimension);
                _codes.Dispose();
                _codes = grown;
            }

            if (_pqCodes is not null)
            {
                var grown = _pqCodes.Grow((long)capacity * _options.ProductQuantizationSubspaces);
                _pqCodes.Dispose();
                _pqCodes = grown;
            }

            var links = _links0.Grow((long)capacity * _stride0 * sizeof(int));
            _links0.Dispose();
            _links0 = links;
            Array.Resize(ref _upper, capacity);
            Array.Resize(ref _levels, capacity);
            Array.Resize(ref _states, capacity);
            Array.Resize(ref _ids, capacity);
            _capacity = capacity;
        }
        finally
        {
            _resizeLock.ExitWriteLock();
        }
    }

    private void ThrowIfDisposed()
    {
        if (_disposed)
        {
            VectorThrow.Disposed(nameof(HnswIndex));
        }
    }
}
