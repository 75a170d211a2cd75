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
/// Sends each request to a replica. First residency: a model is loaded only on a replica whose
/// location its policy allows (jurisdiction, operator, on-prem), and when no configured replica is
/// allowed the request is refused with 403 naming the policy (the host audits every 403). Among the
/// allowed replicas it scores, as SGLang's cache-aware router and llm-d's scorers do: a replica that
/// already holds the base model (loading one costs seconds) and has served the adapter before, then
/// the one the request's prefix hashes to (rendezvous hashing, so equal prefixes meet the same prefix
/// cache), less the replica's queue (running and waiting sequences, relative to its batch).
/// </summary>
public sealed class ServingRouter : IAsyncDisposable
{
    private readonly IReadOnlyList<Replica> _replicas;
    private readonly ModelRegistry _registry;
    private readonly Func<string, ResidencyPolicy> _policies;
    private readonly IErasureRepository? _erasures;

    /// <summary>Creates the router over its replicas.</summary>
    /// <param name="replicas">At least one replica.</param>
    /// <param name="registry">Where models (and their policies) are looked up.</param>
    /// <param name="policies">Resolves a policy name (or a derived <c>a&amp;b</c> name) to the policy.</param>
    /// <param name="erasures">Which models an erasure tainted, and which of those an admin allowed anyway; none are refused when null.</param>
    public ServingRouter(IReadOnlyList<Replica> replicas, ModelRegistry registry, Func<string, ResidencyPolicy> policies, IErasureRepository? erasures = null)
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
    }

    /// <summary>The replicas.</summary>
    public IReadOnlyList<Replica> Replicas => _replicas;

    /// <summary>
    /// Resolves <paramref name="modelId"/> for <paramref name="workspaceId"/>, picks a replica its policy
    /// allows, and acquires the model there.
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
        var model = await _registry.FindAsync(workspaceId, modelId, ct).ConfigureAwait(false) ?? throw new NotFoundException("model", modelId);
        if (_erasures is not null && model.Kind == ModelKind.FineTuned
            && await _erasures.TaintOfAsync(model.Id, ct).ConfigureAwait(false) is { } taint
            && await _erasures.ServingOverrideOfAsync(model.Id, ct).ConfigureAwait(false) is null)
        {
            throw new UnavailableForLegalReasonsException(
                $"Model '{model.Id}' is tainted: it was trained on data erased by erasure '{taint.ErasureId}' (GET /api/v1/erasure/{taint.ErasureId}), so it is not served. "
                + $"Retrain it on the rebuilt data, or an admin may allow serving it with POST /api/v1/models/{model.Id}/serving-override {{\"reason\": ...}} (audited).");
        }

        var policy = _policies(model.Policy);
        var allowed = new List<Replica>(_replicas.Count);
        var reasons = new List<string>();
        foreach (var replica in _replicas)
        {
            var decision = policy.Evaluate(replica.Location);
            if (decision.Allowed)
            {
                allowed.Add(replica);
            }
            else
            {
                reasons.Add($"{replica.Id}: {decision.Reason}");
            }
        }

        if (allowed.Count == 0)
        {
            throw new ForbiddenException(
                $"Model '{model.Id}' has residency policy '{policy.Name}', and no serving replica runs where it allows ({string.Join("; ", reasons)}).",
                "residency_refused");
        }

        var best = allowed.MaxBy(r => Score(r, model, affinityKey))!;
        return (await best.Server.AcquireAsync(model, ct).ConfigureAwait(false), best);
    }

    private double Score(Replica replica, RegisteredModel model, string affinityKey)
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

        // Rendezvous: the replica whose hash with the key is highest wins the key's affinity.
        if (_replicas.Count > 1 && Winner(affinityKey) == replica)
        {
            score += 1;
        }

        return score;
    }

    private Replica Winner(string key)
    {
        Replica? winner = null;
        ulong top = 0;
        foreach (var replica in _replicas)
        {
            var h = XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(replica.Id + "\n" + key));
            if (winner is null || h > top)
            {
                winner = replica;
                top = h;
            }
        }

        return winner!;
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        foreach (var replica in _replicas)
        {
            await replica.Server.DisposeAsync().ConfigureAwait(false);
        }
    }
}
