using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Table;

/// <summary>
/// One shard: an int8 HNSW index in memory (its codes and base layer memory-mapped from the committed
/// segments after a reopen) and the full-precision vectors in a <see cref="VectorSegmentFile"/>, read
/// through the table's shared cache for re-ranking.
/// </summary>
internal sealed class EmbeddingShard : IDisposable
{
    public const string VectorFileName = VectorSegmentFile.FileName;

    private readonly VectorSegmentFile _vectors;

    private EmbeddingShard(string directory, VectorSegmentFile vectors)
    {
        Directory = directory;
        _vectors = vectors;
        Index = null!;
    }

    public string Directory { get; }

    public HnswIndex Index { get; private set; }

    public long DiskReads => _vectors.DiskReads;

    public long SegmentBytes => _vectors.Length;

    public static EmbeddingShard OpenOrCreate(int shard, string directory, EmbeddingTableOptions options, FullVectorCache cache)
    {
        bool committed = File.Exists(Path.Combine(directory, Storage.SegmentIO.ManifestName));
        var result = new EmbeddingShard(directory, new VectorSegmentFile(directory, options.Dimension, cache, truncate: !committed));
        try
        {
            if (committed)
            {
                result.Index = HnswIndex.Open(directory, verifyChecksums: false, result._vectors);

                // Records past the committed node count were appended after the last flush and are not
                // in the committed graph: drop them, so node ids and records line up again.
                result._vectors.TruncateTo(result.Index.NodeCount);
            }
            else
            {
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
                    result._vectors);
            }
        }
        catch
        {
            result.Dispose();
            throw;
        }

        return result;
    }

    /// <summary>Makes the vectors durable, then commits the index (whose manifest names the node count).</summary>
    public void Flush()
    {
        _vectors.Flush();
        Index.Save(Directory);
    }

    public void Dispose()
    {
        Index?.Dispose();
        _vectors.Dispose();
    }
}
