using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Data.Building;

namespace Atelier.Training.Datasets;

/// <summary>Settings of <see cref="DatasetBuildService"/>.</summary>
public sealed record DatasetBuildServiceOptions
{
    /// <summary>The node-local directory under which each build stages its version (<c>&lt;dir&gt;/&lt;dataset id&gt;</c>), where it resumes after a restart.</summary>
    public required string StagingDirectory { get; init; }

    /// <summary>This node's name: the owner recorded on the builds it claims (decision 0021).</summary>
    public string Node { get; init; } = Environment.MachineName;

    /// <summary>
    /// How long a claim on a build holds without renewal. The builder renews it every third of this
    /// while it builds; a node that dies loses its builds to another node this long after its last
    /// renewal, and every node looks for such builds this often.
    /// </summary>
    public TimeSpan LeaseLength { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// True when this node is the only one that builds from its catalog (the embedded mode): it takes
    /// every unfinished build at start whatever lease the catalog holds (a host renamed between runs
    /// resumes its builds at once, as before leases) and does not poll for other nodes' builds.
    /// </summary>
    public bool SoleNode { get; init; }
}

/// <summary>
/// Builds a dataset version derived from another by an operation (the request's <c>operation</c>),
/// such as semantic dedup. <see cref="DatasetBuildService"/> runs it in its queue and places what it
/// builds like any other version; the operation lives with what it needs (Features, for semantic
/// dedup), which Training does not reference.
/// </summary>
public interface IDerivedDatasetBuilder
{
    /// <summary>The request's <c>operation</c> this builder handles.</summary>
    string Operation { get; }

    /// <summary>The property of the dataset's summary under which <see cref="BuildAsync"/>'s summary is stored.</summary>
    string SummaryProperty { get; }

    /// <summary>Builds the version into <paramref name="output"/> (which must not exist) and returns it with a summary for the catalog.</summary>
    Task<(DatasetBuildResult Result, JsonObject Summary)> BuildAsync(DatasetRecord dataset, string staging, string output, IProgress<DatasetBuildProgress> progress, CancellationToken cancel);
}
