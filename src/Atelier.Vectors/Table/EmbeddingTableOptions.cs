namespace Atelier.Vectors.Table;

/// <summary>Configuration of an <see cref="EmbeddingTable"/>.</summary>
public sealed record EmbeddingTableOptions
{
    /// <summary>The table's name, used as the <c>table</c> tag of its metrics.</summary>
    public string Name { get; init; } = "default";

    /// <summary>The vector dimension.</summary>
    public required int Dimension { get; init; }

    /// <summary>The distance metric.</summary>
    public DistanceMetric Metric { get; init; } = DistanceMetric.L2;

    /// <summary>
    /// Data directories, typically one per NVMe drive. Shard <c>i</c> lives in
    /// <c>Directories[i % Directories.Count]</c>, so shards and their I/O spread evenly over the drives.
    /// </summary>
    public required IReadOnlyList<string> Directories { get; init; }

    /// <summary>Number of shards; ids are hashed onto them. Fixed for the table's life.</summary>
    public int ShardCount { get; init; } = 4;

    /// <summary>
    /// Bytes of full-precision vectors kept in memory (the hot set, in a W-TinyLFU cache); the rest are read
    /// from the segment files on demand. The graph and the int8 codes are held in memory in addition.
    /// </summary>
    public long MemoryBudgetBytes { get; init; } = 256L << 20;

    /// <summary>HNSW links per node (see <see cref="Hnsw.HnswOptions.M"/>).</summary>
    public int M { get; init; } = 16;

    /// <summary>HNSW build candidate list size.</summary>
    public int EfConstruction { get; init; } = 100;

    /// <summary>Default search candidate list size per shard.</summary>
    public int EfSearch { get; init; } = 64;

    /// <summary>
    /// Candidates re-ranked on full vectors, as a multiple of k. The shards' candidates (ranked on int8
    /// codes) are merged first and only this many of the best are read at full precision, so a search
    /// costs at most <c>k * RerankMultiplier</c> vector reads however many shards there are.
    /// </summary>
    public int RerankMultiplier { get; init; } = 4;

    /// <summary>Seed of the level generator.</summary>
    public ulong Seed { get; init; } = 42;

    internal void Validate()
    {
        if (Dimension <= 0 || ShardCount <= 0 || Directories.Count == 0)
        {
            VectorThrow.BadArgument("An embedding table needs a positive dimension, at least one shard and one directory.");
        }
    }
}
