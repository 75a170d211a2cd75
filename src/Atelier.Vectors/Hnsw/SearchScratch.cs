using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Atelier.Vectors.Hnsw;

/// <summary>
/// Per-thread search state: a visited set cleared in O(1) by bumping an epoch (hnswlib's VisitedList),
/// and the two heaps. One instance per thread serves every index that thread searches, because each search
/// starts a new epoch.
/// </summary>
internal sealed class SearchScratch
{
    [ThreadStatic]
    private static SearchScratch? t_current;

    private ushort[] _visited = new ushort[1024];
    private ushort _epoch;

    public ushort[] Visited => _visited;

    public ushort Epoch => _epoch;

    public DistanceHeap Candidates { get; } = new(64);

    public DistanceHeap Results { get; } = new(64);

    private float[] _pqTable = [];

    /// <summary>The thread's buffer for one query's product-quantisation distance table (96 KiB at 96 subspaces: too large for the stack).</summary>
    public float[] PqTable(int length)
    {
        if (_pqTable.Length < length)
        {
            _pqTable = new float[length];
        }

        return _pqTable;
    }

    public static SearchScratch Current => t_current ??= new SearchScratch();

    public void NewEpoch(int nodes)
    {
        if (_visited.Length < nodes)
        {
            _visited = new ushort[Math.Max(nodes, _visited.Length * 2)];
            _epoch = 0;
        }

        if (++_epoch == 0)
        {
            Array.Clear(_visited);
            _epoch = 1;
        }
    }

    /// <summary>Marks <paramref name="node"/> visited; false when it already was.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryVisit(int node)
    {
        ref ushort slot = ref _visited[node];
        if (slot == _epoch)
        {
            return false;
        }

        slot = _epoch;
        return true;
    }
}

/// <summary>A binary max-heap of (key, node) pairs on parallel arrays; candidates use negated distances.</summary>
internal sealed class DistanceHeap(int capacity)
{
    private float[] _keys = new float[capacity];
    private int[] _ids = new int[capacity];

    public int Count { get; private set; }

    public float TopKey => _keys[0];

    public int TopId => _ids[0];

    public void Clear() => Count = 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Push(float key, int id)
    {
        if (Count == _keys.Length)
        {
            Array.Resize(ref _keys, Count * 2);
            Array.Resize(ref _ids, Count * 2);
        }

        int i = Count++;
        var keys = _keys;
        var ids = _ids;
        while (i > 0)
        {
            int parent = (i - 1) >> 1;
            if (keys[parent] >= key)
            {
                break;
            }

            keys[i] = keys[parent];
            ids[i] = ids[parent];
            i = parent;
        }

        keys[i] = key;
        ids[i] = id;
    }

    public void Pop()
    {
        Debug.Assert(Count > 0);
        int n = --Count;
        if (n == 0)
        {
            return;
        }

        float key = _keys[n];
        int id = _ids[n];
        var keys = _keys;
        var ids = _ids;
        int i = 0;
        while (true)
        {
            int child = (2 * i) + 1;
            if (child >= n)
            {
                break;
            }

            if (child + 1 < n && keys[child + 1] > keys[child])
            {
                child++;
            }

            if (keys[child] <= key)
            {
                break;
            }

            keys[i] = keys[child];
            ids[i] = ids[child];
            i = child;
        }

        keys[i] = key;
        ids[i] = id;
    }

    /// <summary>Copies the entries out unordered.</summary>
    public void CopyTo(Span<float> keys, Span<int> ids)
    {
        _keys.AsSpan(0, Count).CopyTo(keys);
        _ids.AsSpan(0, Count).CopyTo(ids);
    }
}
