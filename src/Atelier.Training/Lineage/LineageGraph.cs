using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Registry;
using Atelier.Training.Checkpoints;

namespace Atelier.Training.Lineage;

/// <summary>Which way a lineage walk goes from its start.</summary>
public enum LineageDirection
{
    /// <summary>Towards what the artifact was made from.</summary>
    Upstream,

    /// <summary>Towards what was made from the artifact.</summary>
    Downstream,
}

/// <summary>An artifact in a lineage graph.</summary>
/// <param name="Kind">One of <see cref="LineageKinds"/>.</param>
/// <param name="Id">Its id.</param>
/// <param name="Name">A display name, when it has one.</param>
/// <param name="Status">Its state, when it has one (<c>missing</c> for an input the catalog no longer holds).</param>
/// <param name="CreatedAt">Unix seconds, when known.</param>
/// <param name="ResidencyPolicy">The residency policy of its bytes, when it has bytes.</param>
/// <param name="Locations">The locations its bytes are placed in.</param>
/// <param name="TaintedBy">For a model trained on erased data: the erasure that tainted it.</param>
public sealed record LineageNode(string Kind, string Id, string? Name, string? Status, long? CreatedAt, string? ResidencyPolicy, IReadOnlyList<string> Locations, string? TaintedBy = null)
{
    /// <summary>How edges name it: <c>kind:id</c>.</summary>
    public string Ref => Key(Kind, Id);

    /// <summary>The reference of an artifact: <c>kind:id</c>.</summary>
    public static string Key(string kind, string id) => kind + ":" + id;
}

/// <summary>A derivation: <paramref name="To"/> was made from (or serves) <paramref name="From"/>; both are node references (<c>kind:id</c>).</summary>
public sealed record LineageEdge(string From, string To, string Relation);

/// <summary>The part of a workspace's lineage a walk reached.</summary>
public sealed record LineageGraph(IReadOnlyList<LineageNode> Nodes, IReadOnlyList<LineageEdge> Edges);

/// <summary>A serving replica and where it runs, for the replicas a model's policy lets serve it.</summary>
public sealed record LineageReplica(string Id, LocationDescriptor Location);

/// <summary>
/// The lineage graph of a workspace, built from what the catalog already records (the inputs named by
/// dataset and job requests, jobs' checkpoints, the registry's models and their bases) and walked
/// upstream or downstream from one artifact. Only the caller's workspace is read; base models, shared
/// by every workspace, appear as nodes.
/// </summary>
/// <param name="lineage">The catalog's lineage queries.</param>
/// <param name="registry">The models the workspace sees, with where their bytes are.</param>
/// <param name="checkpoints">Where each checkpoint's copies are.</param>
/// <param name="erasures">Which models are tainted.</param>
/// <param name="policies">Resolves policies, to judge which replicas may serve a model.</param>
public sealed class LineageGraphService(ILineageRepository lineage, ModelRegistry registry, CheckpointStore checkpoints, IErasureRepository erasures, PolicyCatalog policies)
{
    /// <summary>The status of an input the catalog no longer holds (deleted or erased), kept in the graph by its id.</summary>
    public const string Missing = "missing";

    /// <summary>How deep a walk goes when the caller names no depth.</summary>
    public const int DefaultDepth = 10;

    /// <summary>The deepest walk allowed: lineage is acyclic, but a bound keeps a damaged catalog from running away.</summary>
    public const int MaxDepth = 100;

    /// <summary>
    /// Walks the workspace's lineage from <paramref name="kind"/> <paramref name="id"/>, at most
    /// <paramref name="depth"/> edges away.
    /// </summary>
    /// <exception cref="NotFoundException">The workspace has no such artifact.</exception>
    public async Task<LineageGraph> WalkAsync(string workspaceId, string kind, string id, LineageDirection direction, int depth, IReadOnlyList<LineageReplica> replicas, CancellationToken cancellationToken)
    {
        var whole = await LoadAsync(workspaceId, replicas, cancellationToken).ConfigureAwait(false);
        if (kind == LineageKinds.Model && await registry.FindAsync(workspaceId, id, cancellationToken).ConfigureAwait(false) is { } model)
        {
            // A model may be named by an alias.
            id = model.Id;
        }

        var start = Find(whole, kind, id) ?? throw new NotFoundException(kind, id);
        var (nodes, edges) = whole.Walk(start, direction, Math.Clamp(depth, 0, MaxDepth));
        var shown = new List<LineageNode>(nodes.Count);
        foreach (var node in nodes)
        {
            shown.Add(node.Kind == LineageKinds.Checkpoint && node.Status == "retained"
                ? node with { Locations = await CheckpointLocationsAsync(node, whole, cancellationToken).ConfigureAwait(false) }
                : node);
        }

        return new LineageGraph(shown, edges);
    }

    /// <summary>The whole lineage of a workspace, for walks and for erasure plans.</summary>
    public async Task<WorkspaceLineage> LoadAsync(string workspaceId, IReadOnlyList<LineageReplica> replicas, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(replicas);
        var nodes = new Dictionary<string, LineageNode>(StringComparer.Ordinal);
        var parents = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var row in await lineage.NodesAsync(workspaceId, cancellationToken).ConfigureAwait(false))
        {
            var node = new LineageNode(row.Kind, row.Id, row.Name, row.Status, row.CreatedAt, row.Policy, row.Locations);
            nodes[node.Ref] = node;
            if (row.Parent is not null)
            {
                parents[node.Ref] = row.Parent;
            }
        }

        // Models by id and by alias: a dataset's request keeps the name it was asked with.
        var modelNames = new Dictionary<string, string>(StringComparer.Ordinal);
        var models = await registry.ListAsync(workspaceId, cancellationToken).ConfigureAwait(false);
        foreach (var model in models)
        {
            var taint = model.Kind == ModelKind.FineTuned ? await erasures.TaintOfAsync(model.Id, cancellationToken).ConfigureAwait(false) : null;
            var node = new LineageNode(
                LineageKinds.Model,
                model.Id,
                model.Name,
                model.Archived ? "archived" : null,
                model.CreatedAt,
                model.Policy,
                [.. model.Artifacts.Select(a => a.LocationId).Distinct(StringComparer.Ordinal)],
                taint?.ErasureId);
            nodes[node.Ref] = node;
            modelNames[model.Id] = model.Id;
            foreach (var alias in model.Aliases)
            {
                modelNames.TryAdd(alias, model.Id);
            }
        }

        var edges = new List<LineageEdge>();
        foreach (var row in await lineage.EdgesAsync(workspaceId, cancellationToken).ConfigureAwait(false))
        {
            var fromId = row.FromKind == LineageKinds.Model && modelNames.TryGetValue(row.FromId, out var resolved) ? resolved : row.FromId;
            var from = LineageNode.Key(row.FromKind, fromId);
            var to = LineageNode.Key(row.ToKind, row.ToId);

            // An input the catalog no longer holds (a deleted or erased file) stays in the graph by its id.
            if (!nodes.ContainsKey(from))
            {
                nodes[from] = new LineageNode(row.FromKind, fromId, null, Missing, null, null, []);
            }

            if (nodes.ContainsKey(to))
            {
                edges.Add(new LineageEdge(from, to, row.Relation));
            }
        }

        // A model is served by the replicas its policy lets it run on (ServingRouter's rule).
        foreach (var model in models)
        {
            var policy = policies.Resolve(model.Policy);
            foreach (var replica in replicas)
            {
                if (!policy.Evaluate(replica.Location).Allowed)
                {
                    continue;
                }

                var node = new LineageNode(LineageKinds.Replica, replica.Id, replica.Id, null, null, null, [replica.Location.Id]);
                nodes.TryAdd(node.Ref, node);
                edges.Add(new LineageEdge(LineageNode.Key(LineageKinds.Model, model.Id), node.Ref, "serves"));
            }
        }

        return new WorkspaceLineage(nodes, edges, parents);
    }

    /// <summary>The workspace's artifact <paramref name="kind"/> <paramref name="id"/>, or null (also for an input that is only remembered by id).</summary>
    public static LineageNode? Find(WorkspaceLineage whole, string kind, string id)
    {
        ArgumentNullException.ThrowIfNull(whole);
        return whole.Nodes.TryGetValue(LineageNode.Key(kind, id), out var node) && node.Status != Missing && kind != LineageKinds.Replica ? node : null;
    }

    private async Task<IReadOnlyList<string>> CheckpointLocationsAsync(LineageNode node, WorkspaceLineage whole, CancellationToken cancellationToken)
    {
        if (!whole.Parents.TryGetValue(node.Ref, out var jobId))
        {
            return node.Locations;
        }

        var at = node.Id.LastIndexOf('@');
        if (at < 0 || !long.TryParse(node.Id.AsSpan(at + 1), System.Globalization.CultureInfo.InvariantCulture, out var step))
        {
            return node.Locations;
        }

        var info = await checkpoints.GetAsync(jobId, step, cancellationToken).ConfigureAwait(false);
        return info?.Locations ?? [];
    }
}

/// <summary>The whole lineage of one workspace: its nodes by reference and its edges.</summary>
/// <param name="Nodes">Every node, by <see cref="LineageNode.Ref"/>.</param>
/// <param name="Edges">Every derivation.</param>
/// <param name="Parents">For checkpoints: their job's id, by the checkpoint's reference.</param>
public sealed record WorkspaceLineage(IReadOnlyDictionary<string, LineageNode> Nodes, IReadOnlyList<LineageEdge> Edges, IReadOnlyDictionary<string, string> Parents)
{
    /// <summary>
    /// The nodes and edges reached from <paramref name="start"/> in <paramref name="direction"/>,
    /// breadth first, at most <paramref name="depth"/> edges away; the start comes first. A node is
    /// visited once, so a cycle (which lineage cannot have, but a damaged catalog could) ends the walk.
    /// </summary>
    public (IReadOnlyList<LineageNode> Nodes, IReadOnlyList<LineageEdge> Edges) Walk(LineageNode start, LineageDirection direction, int depth)
    {
        ArgumentNullException.ThrowIfNull(start);
        var next = Edges.ToLookup(e => direction == LineageDirection.Downstream ? e.From : e.To, StringComparer.Ordinal);
        var seen = new HashSet<string>(StringComparer.Ordinal) { start.Ref };
        var nodes = new List<LineageNode> { start };
        var edges = new List<LineageEdge>();
        var frontier = new List<string> { start.Ref };
        for (var level = 0; level < depth && frontier.Count > 0; level++)
        {
            var following = new List<string>();
            foreach (var at in frontier)
            {
                foreach (var edge in next[at])
                {
                    edges.Add(edge);
                    var other = direction == LineageDirection.Downstream ? edge.To : edge.From;
                    if (seen.Add(other) && Nodes.TryGetValue(other, out var node))
                    {
                        nodes.Add(node);
                        following.Add(other);
                    }
                }
            }

            frontier = following;
        }

        return (nodes, edges);
    }
}
