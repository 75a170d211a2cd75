namespace Atelier.Vectors.Hnsw;

/// <summary>Construction and search parameters of an <see cref="HnswIndex"/> (hnswlib's names and defaults).</summary>
public sealed record HnswOptions
{
    /// <summary>The vector dimension.</summary>
    public required int Dimension { get; init; }

    /// <summary>The distance metric.</summary>
    public DistanceMetric Metric { get; init; } = DistanceMetric.L2;

    /// <summary>Links per node on the upper layers; the base layer keeps up to <c>2 * M</c>.</summary>
    public int M { get; init; } = 16;

    /// <summary>Size of the candidate list while inserting (quality of the graph against build time).</summary>
    public int EfConstruction { get; init; } = 200;

    /// <summary>Default size of the candidate list while searching; a search may override it.</summary>
    public int EfSearch { get; init; } = 64;

    /// <summary>Seed of the level generator, so a build is reproducible.</summary>
    public ulong Seed { get; init; } = 42;

    /// <summary>
    /// Keep int8 codes next to the vectors and walk the graph on them, re-ranking the candidates on the
    /// full vectors. Four times less memory traffic per distance.
    /// </summary>
    public bool QuantizeInt8 { get; init; }

    /// <summary>
    /// With <see cref="QuantizeInt8"/>: also keep product-quantisation codes of this many bytes per vector
    /// (subspaces of 256 centroids; must divide <see cref="Dimension"/>) and walk the graph on them, with
    /// one asymmetric distance table per query. The graph is still built on the int8 codes, which a reopened
    /// index keeps mapped from its segment and does not read while searching, so the memory a search needs
    /// is the PQ codes and the links. 0 (the default): walk on the int8 codes.
    /// </summary>
    public int ProductQuantizationSubspaces { get; init; }

    /// <summary>Nodes to allocate up front; the index grows by doubling past it.</summary>
    public int InitialCapacity { get; init; } = 1024;

    /// <summary>
    /// Below this fraction of live vectors matching a filter, a filtered search scans the matching vectors
    /// exactly instead of walking the graph (the walk would visit most of the graph to find k matches).
    /// </summary>
    public double ExactScanSelectivity { get; init; } = 0.02;

    /// <summary>A filter matching at most this many vectors is always served by an exact scan.</summary>
    public int ExactScanMaxMatches { get; init; } = 2_000;

    internal void Validate()
    {
        if (Dimension <= 0)
        {
            VectorThrow.BadArgument("Dimension must be positive.");
        }

        if (M < 2 || M > 256)
        {
            VectorThrow.BadArgument("M must be between 2 and 256.");
        }

        if (EfConstruction < 1 || EfSearch < 1)
        {
            VectorThrow.BadArgument("EfConstruction and EfSearch must be positive.");
        }

        if (ProductQuantizationSubspaces != 0)
        {
            if (!QuantizeInt8)
            {
                VectorThrow.BadArgument("Product quantisation is built on the int8 codes: it needs QuantizeInt8.");
            }

            Kernels.ProductQuantizer.Validate(Dimension, ProductQuantizationSubspaces);
        }
    }
}
