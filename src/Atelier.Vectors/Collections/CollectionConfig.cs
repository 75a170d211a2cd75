namespace Atelier.Vectors.Collections;

/// <summary>How a collection keeps its vectors.</summary>
public enum VectorStorage
{
    /// <summary>Full precision: 4 bytes per component on disk and in memory.</summary>
    Float32 = 0,

    /// <summary>
    /// Half precision on disk (2 bytes per component): vectors are rounded to float16 when upserted and are
    /// returned rounded; the in-memory graph computes on their float32 widening.
    /// </summary>
    Float16 = 1,

    /// <summary>
    /// The graph is walked on int8 codes (a quarter of the memory traffic per distance) and candidates are
    /// re-ranked on the full float32 vectors, which are what is persisted.
    /// </summary>
    Int8 = 2,
}

/// <summary>What a collection is: fixed when it is created.</summary>
public sealed record CollectionConfig
{
    /// <summary>Components per vector.</summary>
    public required int Dimension { get; init; }

    /// <summary>The distance metric.</summary>
    public required DistanceMetric Metric { get; init; }

    /// <summary>How vectors are kept.</summary>
    public VectorStorage Storage { get; init; } = VectorStorage.Float32;

    /// <summary>Shards the points are hashed onto by id; each has its own graph and its own log.</summary>
    public int Shards { get; init; } = 1;

    /// <summary>Locations of the shards: shard <c>i</c> lives at <c>Locations[i % Locations.Count]</c>.</summary>
    public IReadOnlyList<string> Locations { get; init; } = [];

    /// <summary>HNSW links per node.</summary>
    public int M { get; init; } = 16;

    /// <summary>HNSW candidate list size while inserting.</summary>
    public int EfConstruction { get; init; } = 128;

    /// <summary>HNSW default candidate list size while searching.</summary>
    public int EfSearch { get; init; } = 64;

    /// <summary>
    /// For an <see cref="VectorStorage.Int8"/> collection: bytes of product-quantisation code per vector (its
    /// subspaces, each of 256 centroids; must divide <see cref="Dimension"/>). The graph is then walked on
    /// these codes and re-ranked on full vectors, so a search keeps in memory the PQ codes and the links
    /// rather than the int8 codes: 96 bytes instead of 384 for 384 dimensions. 0 (the default): none.
    /// </summary>
    /// <remarks>Left out of the JSON when 0, so configurations written before it existed read back byte for byte.</remarks>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public int ProductQuantization { get; init; }

    /// <summary>Checks what the request parser cannot see alone: settings that depend on one another.</summary>
    /// <exception cref="Core.Errors.BadRequestException">A setting is out of range or needs another one.</exception>
    public void Validate()
    {
        if (ProductQuantization != 0)
        {
            if (Storage != VectorStorage.Int8)
            {
                VectorThrow.BadArgument("product_quantization needs storage int8: its codes are trained next to the int8 codes the graph is built on.");
            }

            Kernels.ProductQuantizer.Validate(Dimension, ProductQuantization);
        }
    }

    /// <summary>The location of shard <paramref name="shard"/>.</summary>
    public string LocationOf(int shard) => Locations[shard % Locations.Count];
}

/// <summary>A collection's catalog row.</summary>
public sealed record CollectionRecord
{
    /// <summary>The internal id (<c>col-&lt;uuid&gt;</c>), which names its blobs.</summary>
    public required string Id { get; init; }

    /// <summary>The owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The name, unique in the workspace; the API addresses collections by it.</summary>
    public required string Name { get; init; }

    /// <summary>The configuration.</summary>
    public required CollectionConfig Config { get; init; }

    /// <summary>The residency policy of its bytes (a name, or names joined by <c>&amp;</c>).</summary>
    public required string Policy { get; init; }

    /// <summary>Creation time, Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Who created it.</summary>
    public required string CreatedBy { get; init; }
}
