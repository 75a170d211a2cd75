using Atelier.Modeling.Mistral;

namespace Atelier.Inference.KvCache;

/// <summary>
/// One budgeted pool of fixed-size key/value blocks for every layer, allocated once. Blocks are
/// reference-counted: a sequence holds one reference on each block of its table, and a full block
/// may also be registered under its <see cref="PrefixKey"/>, so that later sequences with the same
/// prefix (same tokens, adapter and salt) share it.
/// </summary>
/// <remarks>
/// <para>A block with no references is either free, or cached (registered): cached blocks wait in
/// least-recently-used order and are evicted only when an allocation finds no free block, so the cache
/// uses exactly the memory nobody else needs.</para>
/// <para>Not thread-safe: only the engine loop touches it. The counters are plain ints, which other
/// threads may read (a torn read is impossible and a stale one harmless for metrics).</para>
/// </remarks>
internal sealed class KvBlockPool
{
    private readonly int[] _refCount;
    private readonly PrefixKey?[] _keyOf;
    private readonly LinkedListNode<int>?[] _lruNode;
    private readonly Dictionary<PrefixKey, int> _cached = [];
    private readonly LinkedList<int> _evictable = new();
    private readonly Stack<int> _free;
    private int _used;

    public KvBlockPool(MistralArgs args, int blockSize, long budgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 1);
        BlockSize = blockSize;
        KvWidth = args.KvWidth;
        Layers = args.NLayers;
        BytesPerBlock = 2L * args.NLayers * blockSize * args.KvWidth * sizeof(float);
        var blocks = budgetBytes / BytesPerBlock;
        if (blocks < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(budgetBytes), $"A KV budget of {budgetBytes} bytes holds no block of {BytesPerBlock} bytes.");
        }

        var floatsPerLayer = (long)blockSize * args.KvWidth;
        blocks = Math.Min(blocks, Array.MaxLength / floatsPerLayer);
        BlockCount = (int)Math.Min(blocks, int.MaxValue);
        K = new float[Layers][];
        V = new float[Layers][];
        for (var l = 0; l < Layers; l++)
        {
            // Written once here, so that the budget is really held (as vLLM reserves its cache up front) and no step
            // pays for the operating system's first touch of a page: a large array comes as untouched zero pages, and
            // a batch-32 step's slot writes took 5.2 ms of ~240 on the ~1B model and 1.2 of ~24 on ~100M while they
            // reached new pages, against 1.1 and 0.25 once touched (temporary per-stage timings, serving benchmark).
            K[l] = GC.AllocateUninitializedArray<float>((int)(BlockCount * floatsPerLayer));
            V[l] = GC.AllocateUninitializedArray<float>((int)(BlockCount * floatsPerLayer));
            K[l].AsSpan().Clear();
            V[l].AsSpan().Clear();
        }

        _refCount = new int[BlockCount];
        _keyOf = new PrefixKey?[BlockCount];
        _lruNode = new LinkedListNode<int>?[BlockCount];
        _free = new Stack<int>(BlockCount);
        for (var b = BlockCount - 1; b >= 0; b--)
        {
            _free.Push(b);
        }
    }

    /// <summary>Positions per block.</summary>
    public int BlockSize { get; }

    /// <summary>Floats per position per layer (all key/value heads).</summary>
    public int KvWidth { get; }

    /// <summary>Transformer layers.</summary>
    public int Layers { get; }

    /// <summary>Blocks in the pool.</summary>
    public int BlockCount { get; }

    /// <summary>Bytes one block takes over all layers, keys and values.</summary>
    public long BytesPerBlock { get; }

    /// <summary>Per layer, the key blocks [blocks × BlockSize × KvWidth].</summary>
    public float[][] K { get; }

    /// <summary>Per layer, the value blocks, laid out as <see cref="K"/>.</summary>
    public float[][] V { get; }

    /// <summary>Blocks referenced by at least one sequence.</summary>
    public int UsedBlocks => _used;

    /// <summary>Blocks an allocation can take: free ones and unreferenced cached ones.</summary>
    public int AvailableBlocks => BlockCount - _used;

    /// <summary>Blocks registered in the prefix cache (referenced or not).</summary>
    public int CachedBlocks => _cached.Count;

    /// <summary>Takes a block (a free one, else the least recently used cached one); false when every block is referenced.</summary>
    public bool TryAllocate(out int block)
    {
        if (_free.TryPop(out block))
        {
            Reference(block);
            return true;
        }

        var lru = _evictable.First;
        if (lru is null)
        {
            block = -1;
            return false;
        }

        block = lru.Value;
        _evictable.RemoveFirst();
        _lruNode[block] = null;
        _cached.Remove(_keyOf[block]!.Value);
        _keyOf[block] = null;
        Reference(block);
        return true;
    }

    /// <summary>Finds a cached block by key and takes a reference on it.</summary>
    public bool TryLookup(PrefixKey key, out int block)
    {
        if (!_cached.TryGetValue(key, out block))
        {
            return false;
        }

        if (_lruNode[block] is { } node)
        {
            _evictable.Remove(node);
            _lruNode[block] = null;
        }

        Reference(block);
        return true;
    }

    /// <summary>
    /// Registers a full block under its key so that later sequences can share it. A block already
    /// registered, or a key another block holds (two sequences computed the same prefix at once), is left alone.
    /// </summary>
    public void Register(int block, PrefixKey key)
    {
        if (_keyOf[block] is not null || _cached.ContainsKey(key))
        {
            return;
        }

        _keyOf[block] = key;
        _cached.Add(key, block);
    }

    /// <summary>Drops one reference; an unreferenced block becomes free, or evictable when it is cached.</summary>
    public void Release(int block)
    {
        System.Diagnostics.Debug.Assert(_refCount[block] > 0, "released a block nobody holds");
        if (--_refCount[block] > 0)
        {
            return;
        }

        _used--;
        if (_keyOf[block] is not null)
        {
            // Most recently used at the tail: eviction takes the head.
            _lruNode[block] = _evictable.AddLast(block);
        }
        else
        {
            _free.Push(block);
        }
    }

    private void Reference(int block)
    {
        if (_refCount[block]++ == 0)
        {
            _used++;
        }
    }
}
