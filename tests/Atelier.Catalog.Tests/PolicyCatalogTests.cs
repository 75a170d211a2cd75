using Atelier.Core.Errors;
using Atelier.Core.Residency;

namespace Atelier.Catalog.Tests;

/// <summary>The policy catalog's rules, over a repository in memory: what may be chosen, refused, governed.</summary>
public sealed class PolicyCatalogTests
{
    private static readonly ResidencyPolicy Eu = new() { Name = "eu", AllowedJurisdictions = ["EU"] };
    private static readonly ResidencyPolicy Anywhere = new() { Name = "anywhere", AllowedJurisdictions = ["*"] };
    private static readonly ResidencyPolicy France = new() { Name = "fr", AllowedJurisdictions = ["FR"] };

    private static Task<PolicyCatalog> LoadAsync(InMemoryPolicies? repository = null) =>
        PolicyCatalog.LoadAsync(repository ?? new InMemoryPolicies(), [Eu, Anywhere], "eu", TimeProvider.System);

    [Fact]
    public async Task AnUngovernedWorkspace_GetsTheInstallationDefault_AndAnythingNoLooser()
    {
        var policies = await LoadAsync();
        await policies.DefineAsync(France, "key:op");
        Assert.Equal("eu", await policies.ChooseAsync("ws_a", null));
        Assert.Equal("fr", await policies.ChooseAsync("ws_a", "fr"));
        Assert.Equal("eu&fr", await policies.ChooseAsync("ws_a", "eu&fr"));
        var looser = await Assert.ThrowsAsync<ForbiddenException>(() => policies.ChooseAsync("ws_a", "anywhere"));
        Assert.Contains("looser", looser.Message, StringComparison.Ordinal);
        var unknown = await Assert.ThrowsAsync<ValidationFailedException>(() => policies.ChooseAsync("ws_a", "eu&mars"));
        Assert.Contains("'mars'", unknown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Governing_ChangesTheDefaultAndWhatIsAllowed_OnlyWithDefinedPolicies()
    {
        var repository = new InMemoryPolicies();
        var policies = await LoadAsync(repository);
        await Assert.ThrowsAsync<BadRequestException>(() => policies.GovernAsync("ws_a", "eu", ["nowhere"]));
        Assert.Empty(repository.Governed);

        var governed = await policies.GovernAsync("ws_a", "anywhere", []);
        Assert.Equal(["anywhere"], governed.AllowedPolicies);
        Assert.Equal("anywhere", await policies.ChooseAsync("ws_a", null));
        Assert.Null(await policies.RefusalAsync("ws_a", "eu"));
        Assert.Equal("eu", await policies.ChooseAsync("ws_b", null));
        Assert.NotNull(await policies.RefusalAsync("ws_b", "anywhere"));
        await Assert.ThrowsAsync<NotFoundException>(() => policies.GovernAsync("ws_missing", "eu", []));
    }

    [Fact]
    public async Task ANameNeverChangesMeaning()
    {
        var repository = new InMemoryPolicies();
        var policies = await LoadAsync(repository);
        await Assert.ThrowsAsync<ConflictException>(() => policies.DefineAsync(Eu with { AllowedJurisdictions = ["*"] }, "key:op"));
        await policies.DefineAsync(France, "key:op");
        await Assert.ThrowsAsync<ConflictException>(() => policies.DefineAsync(France with { AllowedJurisdictions = ["US"] }, "key:op"));
        Assert.Equal(["fr"], repository.Defined.Keys);
        Assert.Equal(["eu", "anywhere", "fr"], policies.All.Select(p => p.Name));
        Assert.False(policies.IsOperatorDefined("eu"));
        Assert.True(policies.IsOperatorDefined("fr"));

        // Another process that defined the same name first wins: this one refuses, and keeps none.
        var shared = new InMemoryPolicies();
        var late = await LoadAsync(shared);
        await shared.TryDefineAsync(France with { AllowedJurisdictions = ["US"] }, "key:other", 1);
        await Assert.ThrowsAsync<ConflictException>(() => late.DefineAsync(France, "key:op"));
        Assert.Null(late.Find("fr"));
    }

    private sealed class InMemoryPolicies : IPolicyRepository
    {
        public Dictionary<string, ResidencyPolicy> Defined { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, WorkspacePolicies> Governed { get; } = new(StringComparer.Ordinal);

        public Task<IReadOnlyList<ResidencyPolicy>> ListDefinedAsync(CancellationToken cancellationToken = default) =>
            Task.FromResult<IReadOnlyList<ResidencyPolicy>>([.. Defined.Values]);

        public Task<bool> TryDefineAsync(ResidencyPolicy policy, string actor, long createdAt, CancellationToken cancellationToken = default) =>
            Task.FromResult(Defined.TryAdd(policy.Name, policy));

        public Task<WorkspacePolicies?> GetWorkspacePoliciesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
            Task.FromResult(Governed.GetValueOrDefault(workspaceId));

        public Task<bool> SetWorkspacePoliciesAsync(string workspaceId, string defaultPolicy, IReadOnlyList<string> allowedPolicies, CancellationToken cancellationToken = default)
        {
            if (workspaceId == "ws_missing")
            {
                return Task.FromResult(false);
            }

            Governed[workspaceId] = new WorkspacePolicies(defaultPolicy, allowedPolicies, Explicit: true);
            return Task.FromResult(true);
        }
    }
}
