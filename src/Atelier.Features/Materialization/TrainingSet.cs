using Atelier.Core.Residency;

namespace Atelier.Features.Materialization;

/// <summary>A comparison a row must pass to enter a training set. A null value passes no filter.</summary>
/// <param name="Feature">A feature reference, <c>view:feature</c>.</param>
/// <param name="Op">One of <c>gt</c>, <c>gte</c>, <c>lt</c>, <c>lte</c>, <c>eq</c>, <c>ne</c>.</param>
/// <param name="Value">The value to compare with, of the feature's type (a JSON element from the API).</param>
public sealed record FeatureFilter(string Feature, string Op, object? Value);

/// <summary>
/// What to materialise: "these features, quality above x, one per dedup cluster, not contaminated,
/// as of time T". The first feature's view is the spine: every entity it has a value for as of T is a candidate.
/// </summary>
public sealed record TrainingSetRequest
{
    /// <summary>The training set's name; each materialisation makes a new version of it.</summary>
    public required string Name { get; init; }

    /// <summary>The point in time: every value joined is the latest at or before it.</summary>
    public required DateTimeOffset AsOf { get; init; }

    /// <summary>The features to output (<c>view:feature</c>); the first one's view is the spine.</summary>
    public required IReadOnlyList<string> Features { get; init; }

    /// <summary>Conditions every selected row meets.</summary>
    public IReadOnlyList<FeatureFilter> Filters { get; init; } = [];

    /// <summary>A feature holding a cluster id (e.g. a dedup cluster): keep one row per value.</summary>
    public string? OnePer { get; init; }

    /// <summary>Within a cluster, keep the row with the highest value of this feature (ties: smallest key); the smallest key when null.</summary>
    public string? PreferHighest { get; init; }

    /// <summary>Where to write; the store's default location when null.</summary>
    public string? Location { get; init; }
}

/// <summary>One blob of a training set, as placed.</summary>
/// <param name="Key">The blob key.</param>
/// <param name="Bytes">Its size.</param>
/// <param name="Sha256">Its hash.</param>
public sealed record TrainingSetBlob(string Key, long Bytes, string Sha256);

/// <summary>A segment a training set read, for lineage.</summary>
/// <param name="Seq">The segment number in the view's log.</param>
/// <param name="BlobKey">Its blob key.</param>
/// <param name="Sha256">Its hash.</param>
/// <param name="Rows">Its row count.</param>
public sealed record SourceSegment(long Seq, string BlobKey, string Sha256, long Rows);

/// <summary>A source view version of a training set, with the exact segments read.</summary>
/// <param name="View">The view name.</param>
/// <param name="Version">The view version.</param>
/// <param name="ViewId">The view version's id.</param>
/// <param name="Policy">The view's residency policy.</param>
/// <param name="Segments">The segments that could contribute (event times at or before the as-of time).</param>
public sealed record TrainingSetSource(string View, int Version, string ViewId, string Policy, IReadOnlyList<SourceSegment> Segments);

/// <summary>
/// The manifest of a materialised training set: a new dataset version. Written last, after its
/// Parquet, so its presence means the set is complete; it records the query and the lineage to
/// every source view version and segment, and the (intersected) residency policy it was placed under.
/// </summary>
public sealed record TrainingSetManifest
{
    /// <summary>The dataset version id.</summary>
    public required string Id { get; init; }

    /// <summary>The training set name.</summary>
    public required string Name { get; init; }

    /// <summary>The version of this name, from 1.</summary>
    public required int Version { get; init; }

    /// <summary>When it was made.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>Who made it.</summary>
    public required string CreatedBy { get; init; }

    /// <summary>The point in time of every joined value.</summary>
    public required DateTimeOffset AsOf { get; init; }

    /// <summary>The query, as asked.</summary>
    public required TrainingSetQuery Query { get; init; }

    /// <summary>Lineage: the source views and segments.</summary>
    public required IReadOnlyList<TrainingSetSource> Sources { get; init; }

    /// <summary>The residency policy the set was placed under: the intersection of its sources'.</summary>
    public required ResidencyPolicy Policy { get; init; }

    /// <summary>The location holding the blobs.</summary>
    public required string Location { get; init; }

    /// <summary>The Parquet of selected example ids and features.</summary>
    public required TrainingSetBlob Examples { get; init; }

    /// <summary>The output columns, after the entity key.</summary>
    public required IReadOnlyList<string> Columns { get; init; }

    /// <summary>Entities the spine view had a value for as of the time.</summary>
    public required long CandidateRows { get; init; }

    /// <summary>Rows removed by the filters.</summary>
    public required long FilteredOut { get; init; }

    /// <summary>Rows removed by one-per-cluster.</summary>
    public required long DeduplicatedOut { get; init; }

    /// <summary>Rows in the set.</summary>
    public required long Rows { get; init; }
}

/// <summary>The query of a training set, as recorded in its manifest.</summary>
/// <param name="Features">The output features.</param>
/// <param name="Filters">The filters, values as text.</param>
/// <param name="OnePer">The cluster feature.</param>
/// <param name="PreferHighest">The in-cluster preference.</param>
public sealed record TrainingSetQuery(IReadOnlyList<string> Features, IReadOnlyList<RecordedFilter> Filters, string? OnePer, string? PreferHighest);

/// <summary>A filter as recorded in a manifest.</summary>
/// <param name="Feature">The feature reference.</param>
/// <param name="Op">The comparison.</param>
/// <param name="Value">The value, as invariant text.</param>
public sealed record RecordedFilter(string Feature, string Op, string? Value);
