using System.Collections.Concurrent;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;

namespace Atelier.Catalog;

/// <summary>Which residency policies one workspace may use.</summary>
/// <param name="DefaultPolicy">The policy its uploads and new artifacts get when none is named.</param>
/// <param name="AllowedPolicies">
/// Its members may choose these, or any policy no looser than one of them
/// (<see cref="ResidencyPolicy.IsNoLooserThan"/>); the default is always among them.
/// </param>
/// <param name="Explicit">False while the operator has not set them and the installation's defaults apply.</param>
public sealed record WorkspacePolicies(string DefaultPolicy, IReadOnlyList<string> AllowedPolicies, bool Explicit);

/// <summary>
/// The stored part of residency governance: the operator's policies (never changed once defined)
/// and each governed workspace's allowed policies. The rules are <see cref="PolicyCatalog"/>'s.
/// </summary>
public interface IPolicyRepository
{
    /// <summary>Every policy the operator defined.</summary>
    Task<IReadOnlyList<ResidencyPolicy>> ListDefinedAsync(CancellationToken cancellationToken = default);

    /// <summary>Stores a new policy; false (and nothing changed) when one with that name is stored.</summary>
    Task<bool> TryDefineAsync(ResidencyPolicy policy, string actor, long createdAt, CancellationToken cancellationToken = default);

    /// <summary>The policies the operator set for the workspace, or null while it has set none.</summary>
    Task<WorkspacePolicies?> GetWorkspacePoliciesAsync(string workspaceId, CancellationToken cancellationToken = default);

    /// <summary>Sets (or replaces) a workspace's default and allowed policies; false when there is no such workspace.</summary>
    Task<bool> SetWorkspacePoliciesAsync(string workspaceId, string defaultPolicy, IReadOnlyList<string> allowedPolicies, CancellationToken cancellationToken = default);
}

/// <summary>
/// The residency policies of an installation and which of them each workspace may use. Policies
/// come from <c>config.json</c> and from the operator (<c>POST /api/v1/policies</c>); a name, once
/// defined, never changes meaning, since stored artifacts refer to policies by name and a changed
/// definition would loosen them after the fact. The operator sets each workspace's allowed
/// policies and its default; until then a workspace may use the installation's default policy
/// and anything stricter.
/// </summary>
public sealed class PolicyCatalog
{
    private readonly IPolicyRepository _repository;
    private readonly IReadOnlyList<ResidencyPolicy> _configured;
    private readonly string _installationDefault;
    private readonly TimeProvider _clock;
    private readonly ConcurrentDictionary<string, ResidencyPolicy> _defined = new(StringComparer.Ordinal);
    private readonly Lock _defineLock = new();
    private volatile IReadOnlyList<ResidencyPolicy> _all = [];

    private PolicyCatalog(IPolicyRepository repository, IReadOnlyList<ResidencyPolicy> configured, string installationDefault, TimeProvider clock)
    {
        _repository = repository;
        _configured = configured;
        _installationDefault = installationDefault;
        _clock = clock;
        foreach (var policy in configured)
        {
            _defined[policy.Name] = policy;
        }
    }

    /// <summary>Loads the operator's policies next to the configured ones.</summary>
    /// <param name="repository">Where the operator's policies and the workspaces' governance are stored.</param>
    /// <param name="configured">Policies from <c>config.json</c>.</param>
    /// <param name="installationDefault">The policy of a workspace the operator has not governed.</param>
    /// <param name="clock">The clock.</param>
    /// <param name="cancellationToken">Cancels the load.</param>
    public static async Task<PolicyCatalog> LoadAsync(IPolicyRepository repository, IReadOnlyList<ResidencyPolicy> configured, string installationDefault, TimeProvider clock, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(repository);
        ArgumentNullException.ThrowIfNull(configured);
        var catalog = new PolicyCatalog(repository, configured, installationDefault, clock);
        foreach (var policy in await repository.ListDefinedAsync(cancellationToken).ConfigureAwait(false))
        {
            // A configured policy keeps its meaning over a stored one of the same name.
            catalog._defined.TryAdd(policy.Name, policy);
        }

        catalog._all = catalog.Snapshot();
        return catalog;
    }

    /// <summary>Every defined policy: the configured ones first, then the operator's, by name.</summary>
    public IReadOnlyList<ResidencyPolicy> All => _all;

    /// <summary>True when the operator (not <c>config.json</c>) defined <paramref name="name"/>.</summary>
    public bool IsOperatorDefined(string name) => _defined.ContainsKey(name) && !IsConfigured(name);

    /// <summary>The policy named <paramref name="name"/>, or null.</summary>
    public ResidencyPolicy? Find(string name) => _defined.GetValueOrDefault(name);

    /// <summary>
    /// The policy a stored name stands for: a defined policy, or for a derived name (parts joined
    /// with <c>&amp;</c>) the intersection of its parts.
    /// </summary>
    /// <exception cref="InvalidOperationException">A part names no defined policy.</exception>
    public ResidencyPolicy Resolve(string name) =>
        ResidencyPolicy.Resolve(name, part => Find(part)
            ?? throw new InvalidOperationException($"Residency policy '{part}' is not defined; defined: {string.Join(", ", _defined.Keys.Order(StringComparer.Ordinal))}."));

    /// <summary>Defines a new policy.</summary>
    /// <exception cref="ConflictException">A policy with that name exists (names never change meaning).</exception>
    public async Task<ResidencyPolicy> DefineAsync(ResidencyPolicy policy, string actor, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(policy);
        if (_defined.ContainsKey(policy.Name))
        {
            throw new ConflictException($"A residency policy named '{policy.Name}' exists; a policy's definition never changes, since artifacts refer to it by name. Define a new one under another name.");
        }

        if (!await _repository.TryDefineAsync(policy, actor, _clock.GetUtcNow().ToUnixTimeSeconds(), cancellationToken).ConfigureAwait(false))
        {
            throw new ConflictException($"A residency policy named '{policy.Name}' exists.");
        }

        lock (_defineLock)
        {
            _defined[policy.Name] = policy;
            _all = Snapshot();
        }

        return policy;
    }

    /// <summary>The policies workspace <paramref name="workspaceId"/> may use.</summary>
    public async Task<WorkspacePolicies> ForWorkspaceAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await _repository.GetWorkspacePoliciesAsync(workspaceId, cancellationToken).ConfigureAwait(false)
            ?? new WorkspacePolicies(_installationDefault, [_installationDefault], Explicit: false);

    /// <summary>Sets which policies a workspace may use and its default.</summary>
    /// <exception cref="BadRequestException">A name is not defined, or the default is not among the allowed.</exception>
    /// <exception cref="NotFoundException">No such workspace.</exception>
    public async Task<WorkspacePolicies> GovernAsync(string workspaceId, string defaultPolicy, IReadOnlyList<string> allowedPolicies, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(allowedPolicies);
        var allowed = allowedPolicies.Append(defaultPolicy).Distinct(StringComparer.Ordinal).ToArray();
        foreach (var name in allowed)
        {
            if (!_defined.ContainsKey(name))
            {
                throw new BadRequestException($"No residency policy '{name}' is defined; defined: {string.Join(", ", _defined.Keys.Order(StringComparer.Ordinal))}.", "invalid_policy");
            }
        }

        if (!await _repository.SetWorkspacePoliciesAsync(workspaceId, defaultPolicy, allowed, cancellationToken).ConfigureAwait(false))
        {
            throw new NotFoundException("workspace", workspaceId);
        }

        return new WorkspacePolicies(defaultPolicy, allowed, Explicit: true);
    }

    /// <summary>
    /// The policy a new artifact of workspace <paramref name="workspaceId"/> gets: the workspace's
    /// default when <paramref name="requested"/> is null, otherwise the requested one if the
    /// workspace may use it.
    /// </summary>
    /// <exception cref="ValidationFailedException">No policy has that name (field <c>policy</c>).</exception>
    /// <exception cref="ForbiddenException">The policy is looser than the workspace allows.</exception>
    public async Task<string> ChooseAsync(string workspaceId, string? requested, CancellationToken cancellationToken = default)
    {
        var governed = await ForWorkspaceAsync(workspaceId, cancellationToken).ConfigureAwait(false);
        if (requested is null)
        {
            return governed.DefaultPolicy;
        }

        foreach (var part in ResidencyPolicy.PartsOf(requested))
        {
            if (Find(part) is null)
            {
                var message = $"No residency policy '{part}' is defined; defined: {string.Join(", ", _defined.Keys.Order(StringComparer.Ordinal))}.";
                throw new ValidationFailedException(message, [new Problem(message, Field: "policy")], 1, "invalid_policy");
            }
        }

        return Refusal(governed, requested) is { } refusal ? throw new ForbiddenException(refusal, "policy_not_allowed") : requested;
    }

    /// <summary>
    /// Why workspace <paramref name="workspaceId"/> may not use the policy named
    /// <paramref name="name"/> (which may be derived), or null when it may: the policy must be no
    /// looser than one of the workspace's allowed policies.
    /// </summary>
    public async Task<string?> RefusalAsync(string workspaceId, string name, CancellationToken cancellationToken = default) =>
        Refusal(await ForWorkspaceAsync(workspaceId, cancellationToken).ConfigureAwait(false), name);

    /// <summary>Why a workspace governed by <paramref name="governed"/> may not use <paramref name="name"/>, or null when it may.</summary>
    public string? Refusal(WorkspacePolicies governed, string name)
    {
        ArgumentNullException.ThrowIfNull(governed);
        ResidencyPolicy requested;
        try
        {
            requested = Resolve(name);
        }
        catch (InvalidOperationException e)
        {
            return e.Message;
        }

        foreach (var allowedName in governed.AllowedPolicies)
        {
            if (Find(allowedName) is { } allowed && requested.IsNoLooserThan(allowed))
            {
                return null;
            }
        }

        return $"Residency policy '{name}' is looser than this workspace allows: the operator allows [{string.Join(", ", governed.AllowedPolicies)}] and anything stricter.";
    }

    private ResidencyPolicy[] Snapshot() =>
        [.. _configured, .. _defined.Values.Where(p => !IsConfigured(p.Name)).OrderBy(p => p.Name, StringComparer.Ordinal)];

    private bool IsConfigured(string name) => _configured.Any(c => c.Name == name);
}
