using System.Collections.Concurrent;
using System.IO.Hashing;
using System.Text;
using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Registry;

namespace Atelier.Inference.Serving;

/// <summary>A serving replica: its engines and where it runs.</summary>
/// <param name="Id">Its name.</param>
/// <param name="Location">Where it runs: the facts a model's residency policy is judged against.</param>
/// <param name="Server">Its models and engines.</param>
public sealed record Replica(string Id, LocationDescriptor Location, ModelServer Server);

/// <summary>
/// A base model a replica holds, with its engine's queue: what a node publishes for the other nodes'
/// routers, and what they score it by.
/// </summary>
/// <param name="BaseModel">The base model's id.</param>
/// <param name="Served">The fine-tuned models of that base it served (their adapters are, or were recently, resident).</param>
/// <param name="Running">Sequences in its running batch.</param>
/// <param name="Waiting">Sequences waiting to be admitted.</param>
/// <param name="MaxRunning">Its batch limit.</param>
public sealed record HeldModel(string BaseModel, IReadOnlyList<string> Served, int Running, int Waiting, int MaxRunning);

/// <summary>
/// A replica in another process: a cluster node that serves, reached over HTTP at its base address.
/// </summary>
/// <param name="Id">Its name: the node's name.</param>
/// <param name="Location">Where the node serves: the facts a model's residency policy is judged against.</param>
/// <param name="BaseAddress">The node's HTTP base address.</param>
/// <param name="Published">
/// What the node last said it holds, and its queues (at most a second or two old); null when it has not
/// answered, and the router then scores the node by what forwarding there taught it.
/// </param>
public sealed record RemoteReplica(string Id, LocationDescriptor Location, Uri BaseAddress, IReadOnlyList<HeldModel>? Published = null);

/// <summary>The replicas in other processes a router may forward to: in a cluster, the other live nodes.</summary>
public interface IRemoteReplicas
{
    /// <summary>The remote replicas alive now (a node that membership holds down is not among them).</summary>
    /// <param name="ct">Cancellation.</param>
    ValueTask<IReadOnlyList<RemoteReplica>> CurrentAsync(CancellationToken ct);
}

/// <summary>One replica a request may go to, with its score: in-process (<see cref="Local"/>) or on another node (<see cref="Remote"/>).</summary>
/// <param name="Id">The replica's name.</param>
/// <param name="Local">The in-process replica, or null.</param>
/// <param name="Remote">The remote replica, or null.</param>
/// <param name="Score">Its score: higher is better.</param>
public sealed record ReplicaCandidate(string Id, Replica? Local, RemoteReplica? Remote, double Score);

/// <summary>Where a request may be served: its model, and the replicas its policy allows, best first.</summary>
/// <param name="Model">The model, as the registry resolved it for the caller.</param>
/// <param name="Candidates">The allowed replicas, best first (never empty).</param>
public sealed record ServingPlan(RegisteredModel Model, IReadOnlyList<ReplicaCandidate> Candidates);

/// <summary>
/// Sends each request to a replica. First residency: a model is loaded only on a replica whose
/// location its policy allows (jurisdiction, operator, on-prem), and when no replica is allowed the
/// request is refused with 403 naming the policy and each replica's reason (the host audits every
/// 403). The replicas are this process's engines and, in a cluster, the other live nodes
/// (<see cref="IRemoteReplicas"/>). Among the allowed replicas it scores, as SGLang's cache-aware
/// router and llm-d's scorers do (decisions 0009 and 0025): a replica that already holds the base
/// model (loading one costs seconds) and has served the adapter before, then the one the request's
/// prefix hashes to (rendezvous hashing, so equal prefixes meet the same prefix cache), less the
/// replica's queue (running and waiting sequences, relative to its batch). A remote replica is scored
/// by what its node publishes (the models it holds and served, its queues), and by what forwarding
/// there taught this router where the node has not answered (which models it served, how many
/// requests are in flight to it); forwarding costs a hop, so a remote replica pays <see cref="ForwardingCost"/>.
/// </summary>
public sealed class ServingRouter : IAsyncDisposable
{
    /// <summary>
    /// What forwarding to another node costs in score: more than prefix affinity (a cold replica here
    /// beats a cold one elsewhere), less than a loaded base model (a node that holds the model beats
    /// loading it here, which costs seconds).
    /// </summary>
    public const double ForwardingCost = 1.5;

    private readonly IReadOnlyList<Replica> _replicas;
    private readonly ModelRegistry _registry;
    private readonly Func<string, ResidencyPolicy> _policies;
    private readonly IErasureRepository? _erasures;
    private readonly IRemoteReplicas? _remotes;
    private readonly ConcurrentDictionary<string, RemoteState> _learnt = new(StringComparer.Ordinal);

    /// <summary>Creates the router over its replicas.</summary>
    /// <param name="replicas">At least one in-process replica.</param>
    /// <param name="registry">Where models (and their policies) are looked up.</param>
    /// <param name="policies">Resolves a policy name (or a derived <c>a&amp;b</c> name) to the policy.</param>
    /// <param name="erasures">Which models an erasure tainted, and which of those an admin allowed anyway; none are refused when null.</param>
    /// <param name="remotes">The replicas on other nodes; none when null (the embedded default).</param>
    public ServingRouter(IReadOnlyList<Replica> replicas, ModelRegistry registry, Func<string, ResidencyPolicy> policies, IErasureRepository? erasures = null, IRemoteReplicas? remotes = null)
    {
        ArgumentNullException.ThrowIfNull(replicas);
        if (replicas.Count == 0)
        {
            throw new ArgumentException("A router needs at least one replica.", nameof(replicas));
        }

        _replicas = replicas;
        _registry = registry;
        _policies = policies;
        _erasures = erasures;
        _remotes = remotes;
    }

    /// <summary>The in-process replicas.</summary>
    public IReadOnlyList<Replica> Replicas => _replicas;

    /// <summary>True when requests may be forwarded to replicas on other nodes (cluster mode).</summary>
    public bool MayForward => _remotes is not null;

    /// <summary>
    /// Resolves <paramref name="modelId"/> for <paramref name="workspaceId"/>, picks an in-process replica
    /// its policy allows, and acquires the model there (never another node's).
    /// </summary>
    /// <param name="workspaceId">The caller's workspace.</param>
    /// <param name="modelId">The model id or alias.</param>
    /// <param name="affinityKey">What identifies the request's prefix (its first message), for cache affinity.</param>
    /// <param name="ct">Cancellation.</param>
    /// <exception cref="NotFoundException">No such model in the caller's view.</exception>
    /// <exception cref="ForbiddenException">No replica runs where the model's policy allows.</exception>
    /// <exception cref="UnavailableForLegalReasonsException">The model was trained on erased data and no override allows serving it.</exception>
    public async Task<(ServedModel Model, Replica Replica)> AcquireAsync(string workspaceId, string modelId, string affinityKey, CancellationToken ct)
    {
        var plan = await PlanAsync(workspaceId, modelId, affinityKey, localOnly: true, ct).ConfigureAwait(false);
        var best = plan.Candidates[0].Local!;
        return (await AcquireAsync(plan, best, ct).ConfigureAwait(false), best);
    }

    /// <summary>Acquires <paramref name="plan"/>'s model on the in-process <paramref name="replica"/>.</summary>
    /// <param name="plan">The plan the replica was chosen from.</param>
    /// <param name="replica">One of its local candidates.</param>
    /// <param name="ct">Cancellation.</param>
    public Task<ServedModel> AcquireAsync(ServingPlan plan, Replica replica, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(replica);
        return replica.Server.AcquireAsync(plan.Model, ct);
    }

    /// <summary>
    /// Resolves <paramref name="modelId"/> for <paramref name="workspaceId"/> and lists the replicas, here
    /// and (unless <paramref name="localOnly"/>) on the other live nodes, that its policy allows, best first.
    /// </summary>
    /// <param name="workspaceId">The caller's workspace.</param>
    /// <param name="modelId">The model id or alias.</param>
    /// <param name="affinityKey">What identifies the request's prefix (its first message), for cache affinity.</param>
    /// <param name="localOnly">
    /// Only this process's replicas: a request another node forwarded here is served here or refused,
    /// never forwarded again (no loops), and the policy is judged again against this node's location.
    /// </param>
    /// <param name="ct">Cancellation.</param>
    /// <exception cref="NotFoundException">No such model in the caller's view.</exception>
    /// <exception cref="ForbiddenException">No replica runs where the model's policy allows; the message names the policy and each replica's reason.</exception>
    /// <exception cref="UnavailableForLegalReasonsException">The model was trained on erased data and no override allows serving it.</exception>
    public async Task<ServingPlan> PlanAsync(string workspaceId, string modelId, string affinityKey, bool localOnly, CancellationToken ct)
    {
        var model = await _registry.FindAsync(workspaceId, modelId, ct).ConfigureAwait(false) ?? throw new NotFoundException("model", modelId);
        if (_erasures is not null && model.Kind == ModelKind.FineTuned
            && await _erasures.TaintOfAsync(model.Id, ct).ConfigureAwait(false) is { } taint
            && await _erasures.ServingOverrideOfAsync(model.Id, ct).ConfigureAwait(false) is null)
        {
            throw new UnavailableForLegalReasonsException(
                $"Model '{model.Id}' is tainted: it was trained on data erased by erasure '{taint.ErasureId}' (GET /api/v1/erasure/{taint.ErasureId}), so it is not served. "
                + $"Retrain it on the rebuilt data, or an admin may allow serving it with POST /api/v1/models/{model.Id}/serving-override {{\"reason\": ...}} (audited).");
        }

        IReadOnlyList<RemoteReplica> remotes = localOnly || _remotes is null ? [] : await _remotes.CurrentAsync(ct).ConfigureAwait(false);
        return Plan(model, _policies(model.Policy), remotes, affinityKey, localOnly);
    }

    /// <summary>
    /// Notes that a request for <paramref name="model"/> is being forwarded to <paramref name="remote"/>:
    /// its queue as this router knows it grows until the returned lease is disposed, and once
    /// <see cref="RemoteForwarding.Served"/> is called the router knows the node holds the model.
    /// </summary>
    /// <param name="remote">The node.</param>
    /// <param name="model">The model forwarded.</param>
    public RemoteForwarding Forwarding(RemoteReplica remote, RegisteredModel model)
    {
        ArgumentNullException.ThrowIfNull(remote);
        ArgumentNullException.ThrowIfNull(model);
        var state = _learnt.GetOrAdd(remote.Id, static _ => new RemoteState());
        Interlocked.Increment(ref state.InFlight);
        return new RemoteForwarding(state, model);
    }

    private ServingPlan Plan(RegisteredModel model, ResidencyPolicy policy, IReadOnlyList<RemoteReplica> remotes, string affinityKey, bool localOnly)
    {
        var allowed = new List<(string Id, Replica? Local, RemoteReplica? Remote)>(_replicas.Count + remotes.Count);
        var reasons = new List<string>();
        var everywhere = _replicas.Select(r => (r.Id, r.Location, Local: (Replica?)r, Remote: (RemoteReplica?)null))
            .Concat(remotes.Select(r => (r.Id, r.Location, Local: (Replica?)null, Remote: (RemoteReplica?)r)));
        foreach (var (id, location, local, remote) in everywhere)
        {
            var decision = policy.Evaluate(location);
            if (decision.Allowed)
            {
                allowed.Add((id, local, remote));
            }
            else
            {
                reasons.Add($"{id}: {decision.Reason}");
            }
        }

        if (allowed.Count == 0)
        {
            throw new ForbiddenException(
                $"Model '{model.Id}' has residency policy '{policy.Name}', and no serving replica runs where it allows ({string.Join("; ", reasons)})"
                + (localOnly && _remotes is not null ? "; the request was forwarded here by another node, so only this node's replicas were considered." : "."),
                "residency_refused");
        }

        // Rendezvous over every replica a request could go to, so that the affinity of a prefix
        // moves only when its winner comes or goes.
        var winner = allowed.Count + reasons.Count > 1 ? Winner(affinityKey, remotes) : null;
        var candidates = new List<ReplicaCandidate>(allowed.Count);
        foreach (var (id, local, remote) in allowed)
        {
            var score = local is not null ? Score(local, model) : Score(remote!, model);
            if (id == winner)
            {
                score += 1;
            }

            candidates.Add(new ReplicaCandidate(id, local, remote, score));
        }

        // Stable: equal scores keep the configured order, local replicas first.
        return new ServingPlan(model, [.. candidates.OrderByDescending(c => c.Score)]);
    }

    private double Score(Replica replica, RegisteredModel model)
    {
        var score = 0.0;
        var baseId = model.Kind == ModelKind.Base ? model.Id : model.Root!;
        if (replica.Server.Holds(baseId, out var loaded))
        {
            score += 4;
            if (model.Kind == ModelKind.FineTuned && loaded.HasServed(model.Id))
            {
                score += 2;
            }

            var metrics = loaded.Engine.Metrics;
            score -= (double)(metrics.RunningSequences + metrics.WaitingSequences) / replica.Server.Options.Engine.MaxRunningSequences;
        }

        return score;
    }

    /// <summary>
    /// What this process's replicas hold and their queues, merged by base model: what this node
    /// publishes to the other nodes' routers.
    /// </summary>
    public IReadOnlyList<HeldModel> Describe() =>
        [.. _replicas.SelectMany(r => r.Server.Describe())
            .GroupBy(h => h.BaseModel, StringComparer.Ordinal)
            .Select(g => new HeldModel(
                g.Key,
                [.. g.SelectMany(h => h.Served).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)],
                g.Sum(h => h.Running),
                g.Sum(h => h.Waiting),
                g.Sum(h => h.MaxRunning)))];

    // A remote node: the same terms as a local replica's, from what the node published; where it has
    // not, as far as forwarding there taught them, its batch limit taken to be this node's (one shared
    // configuration). Requests this router has in flight to it count at least as its queue, since a
    // publication may be older than the last few forwards.
    private double Score(RemoteReplica remote, RegisteredModel model)
    {
        var score = -ForwardingCost;
        var baseId = model.Kind == ModelKind.Base ? model.Id : model.Root!;
        _learnt.TryGetValue(remote.Id, out var state);
        var inFlight = state is null ? 0 : Volatile.Read(ref state.InFlight);
        var limit = _replicas[0].Server.Options.Engine.MaxRunningSequences;
        if (remote.Published is { } published)
        {
            if (published.FirstOrDefault(h => h.BaseModel == baseId) is not { } held)
            {
                return score - (double)inFlight / limit;
            }

            score += 4;
            if (model.Kind == ModelKind.FineTuned && held.Served.Contains(model.Id))
            {
                score += 2;
            }

            return score - (double)Math.Max(held.Running + held.Waiting, inFlight) / Math.Max(1, held.MaxRunning);
        }

        if (state is null)
        {
            return score;
        }

        if (state.Served.ContainsKey(baseId))
        {
            score += 4;
            if (model.Kind == ModelKind.FineTuned && state.Served.ContainsKey(model.Id))
            {
                score += 2;
            }
        }

        score -= (double)inFlight / limit;
        return score;
    }

    private string? Winner(string key, IReadOnlyList<RemoteReplica> remotes)
    {
        string? winner = null;
        ulong top = 0;
        void Consider(string id)
        {
            var h = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(id + "\n" + key));
            if (winner is null || h > top)
            {
                winner = id;
                top = h;
            }
        }

        foreach (var replica in _replicas)
        {
            Consider(replica.Id);
        }

        foreach (var remote in remotes)
        {
            Consider(remote.Id);
        }

        return winner;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.Server.DisposeAsync().ConfigureAwait(false);
        }
    }

    internal sealed class RemoteState
    {
        public readonly ConcurrentDictionary<string, byte> Served = new(StringComparer.Ordinal);
        public int InFlight;
    }
}

/// <summary>A request in flight to a remote replica, as the router counts it; dispose when it ends.</summary>
public sealed class RemoteForwarding : IDisposable
{
    private readonly ServingRouter.RemoteState _state;
    private readonly RegisteredModel _model;
    private int _disposed;

    internal RemoteForwarding(ServingRouter.RemoteState state, RegisteredModel model)
    {
        _state = state;
        _model = model;
    }

    /// <summary>The node answered: it now holds the model's base (and the adapter of a fine-tuned one).</summary>
    public void Served()
    {
        _state.Served[_model.Kind == ModelKind.Base ? _model.Id : _model.Root!] = 0;
        _state.Served[_model.Id] = 0;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            Interlocked.Decrement(ref _state.InFlight);
        }
    }
}
