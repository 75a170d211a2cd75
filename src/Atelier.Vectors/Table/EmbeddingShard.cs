using System.Runtime.InteropServices;
using Atelier.Vectors.Hnsw;
using BitFaster.Caching.Lfu;
using Microsoft.Win32.SafeHandles;

namespace Atelier.Vectors.Table;

/// <summary>
/// One shard: an int8 HNSW index in memory (its codes and base layer memory-mapped from the committed
/// segments after a reopen) and the full-precision vectors in an append-only segment file, record
/// <c>n</c> holding graph node <c>n</c>, read through the table's shared cache for re-ranking.
/// </summary>
internal sealed class EmbeddingShard : IFullVectorSource, IDisposable
{
    public const string VectorFileName = "vectors.f32";

    private readonly int _shard;
    private readonly int _dimension;
    private readonly SafeFileHandle _vectors;
    private readonly ConcurrentLfu<long, float[]> _cache;
    private long _diskReads;

    private EmbeddingShard(int shard, string directory, int dimension, ConcurrentLfu<long, float[]> cache)
    {
        _shard = shard;
        _dimension = dimension;
        Directory = directory;
        _cache = cache;
        System.IO.Directory.CreateDirectory(directory);
        _vectors = File.OpenHandle(Path.Combine(directory, VectorFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        Index = null!;
    }

    public string Directory { get; }

    public HnswIndex Index { get; private set; }

    public long DiskReads => Interlocked.Read(ref _diskReads);

    private int RecordBytes => _dimension * sizeof(float);

    public static EmbeddingShard OpenOrCreate(int shard, string directory, EmbeddingTableOptions options, ConcurrentLfu<long, float[]> cache)
    {
        var result = new EmbeddingShard(shard, directory, options.Dimension, cache);
        try
        {
            if (File.Exists(Path.Combine(directory, Storage.SegmentIO.ManifestName)))
            {
                result.Index = HnswIndex.Open(directory, verifyChecksums: false, result);
                long committed = (long)result.Index.NodeCount * result.RecordBytes;
                long length = RandomAccess.GetLength(result._vectors);
                if (length < committed)
                {
                    VectorThrow.Corrupted($"Vector segment of shard {shard} in '{directory}' holds {length} bytes; the committed index needs {committed}.");
                }

                // Records past the committed node count were appended after the last flush and are not
                // in the committed graph: drop them, so node ids and records line up again.
                RandomAccess.SetLength(result._vectors, committed);
            }
            else
            {
                RandomAccess.SetLength(result._vectors, 0);
                result.Index = new HnswIndex(
                    new HnswOptions
                    {
                        Dimension = options.Dimension,
                        Metric = options.Metric,
                        M = options.M,
                        EfConstruction = options.EfConstruction,
                        EfSearch = options.EfSearch,
                        Seed = options.Seed + (ulong)shard,
                        QuantizeInt8 = true,
                    },
                    result);
            }
        }
        catch
        {
            result.Dispose();
            throw;
        }

        return result;
    }

    /// <summary>Reads the full vector of <paramref name="node"/>: from the cache, or from the segment file (then cached).</summary>
    public void Read(int node, Span<float> destination)
    {
        long key = ((long)_shard << 40) | (uint)node;
        if (!_cache.TryGet(key, out var vector))
        {
            vector = new float[_dimension];
            int read = RandomAccess.Read(_vectors, MemoryMarshal.AsBytes(vector.AsSpan()), (long)node * RecordBytes);
            if (read != RecordBytes)
            {
                VectorThrow.Corrupted($"Vector segment of shard {_shard} ends before node {node}.");
            }

            Interlocked.Increment(ref _diskReads);
            _cache.AddOrUpdate(key, vector);
        }

        vector.AsSpan().CopyTo(destination);
    }

    /// <summary>Writes the record of a node being inserted (before it is linked in, so re-ranking can read it).</summary>
    public void Write(int node, ReadOnlySpan<float> vector) =>
        RandomAccess.Write(_vectors, MemoryMarshal.AsBytes(vector), (long)node * RecordBytes);

    /// <summary>Makes the vectors durable, then commits the index (whose manifest names the node count).</summary>
    public void Flush()
    {
        RandomAccess.FlushToDisk(_vectors);
        Index.Save(Directory);
    }

    public long SegmentBytes => RandomAccess.GetLength(_vectors);

    public void Dispose()
    {
        Index?.Dispose();
        _vectors.Dispose();
    }
}
