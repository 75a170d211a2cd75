using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Inference.Serving;
using Atelier.Modeling.Mistral;
using Atelier.Registry;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Atelier.Testing;
using Microsoft.Extensions.Logging.Abstractions;

namespace Atelier.Inference.Tests.Serving;

/// <summary>
/// The router's choice among this process's replica and other nodes' (decisions 0009 and 0025), on a
/// real registry: residency first, then what is loaded, learnt or in flight, with a hop's cost for a
/// remote node; a request forwarded here is judged against this node alone.
/// </summary>
public sealed class ServingRouterTests : IAsyncLifetime
{
    private static readonly ResidencyPolicy EuOnly = new() { Name = "eu-only", AllowedJurisdictions = ["EU"] };
    private static readonly ResidencyPolicy Anywhere = new() { Name = "anywhere", AllowedJurisdictions = ["*"] };
    private static readonly LocationDescriptor Paris = new() { Id = "paris", Uri = "blobs/paris", Country = "FR", Blocs = ["EU"], OnPrem = true };
    private static readonly LocationDescriptor Virginia = new() { Id = "virginia", Uri = "blobs/virginia", Country = "US", OnPrem = true };

    private readonly string _data = TestCleanup.CreateDirectory("atelier-router");
    private readonly CatalogDatabase _catalog;
    private readonly AuditLog _audit;
    private readonly ModelRegistry _registry;
    private readonly List<ModelServer> _servers = [];

    public ServingRouterTests()
    {
        _catalog = new CatalogDatabase(Path.Combine(_data, "catalog.db"));
        _audit = new AuditLog(Path.Combine(_data, "audit"), TimeProvider.System);
        var guard = new PlacementGuard(new StorageLocations([Paris, Virginia], _data), _audit);
        _registry = new ModelRegistry(new SqliteModelRepository(_catalog), guard, TimeProvider.System, Path.Combine(_data, "cache"), new ModelImportRoots([_data]));
    }

    public async Task InitializeAsync()
    {
        foreach (var (id, policy) in new[] { ("tiny-eu", EuOnly), ("tiny-any", Anywhere) })
        {
            var dir = Path.Combine(_data, "import", id);
            TinyModelWriter.Write(dir, seed: 3);
            await _registry.ImportBaseModelAsync(new BaseModelImport { SourceDirectory = dir, Id = id }, policy, "paris", "key:admin", "default", CancellationToken.None);
        }
    }

    public async Task DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _audit.Dispose();
        TestCleanup.Delete(_data);
    }

    private ServingRouter Router(string localId, LocationDescriptor local, params RemoteReplica[] remotes)
    {
        var server = new ModelServer(_registry, new ServingOptions(), NullLogger<ModelServer>.Instance);
        _servers.Add(server);
        return new ServingRouter([new Replica(localId, local, server)], _registry, name => name == EuOnly.Name ? EuOnly : Anywhere, remotes: new Nodes(remotes));
    }

    private static RemoteReplica Node(string id, LocationDescriptor location) => new(id, location, new Uri($"http://127.0.0.1:1/{id}/"));

    [Fact]
    public async Task AnEuOnlyModelOnAUsNode_GoesToTheEuNode_AndTheUsReplicaIsNoCandidate()
    {
        var router = Router("us", Virginia, Node("eu", Paris), Node("us-2", Virginia));
        var plan = await router.PlanAsync("default", "tiny-eu", "hello", localOnly: false, CancellationToken.None);
        var only = Assert.Single(plan.Candidates);
        Assert.Equal("eu", only.Id);
        Assert.NotNull(only.Remote);
    }

    [Fact]
    public async Task AModelAllowedEverywhere_ColdEverywhere_StaysOnTheLocalReplica_WhateverItsPrefix()
    {
        var router = Router("us", Virginia, Node("eu", Paris), Node("eu-2", Paris));
        for (var i = 0; i < 32; i++)
        {
            var plan = await router.PlanAsync("default", "tiny-any", $"prefix {i}", localOnly: false, CancellationToken.None);
            Assert.Equal(3, plan.Candidates.Count);
            Assert.Equal("us", plan.Candidates[0].Id);
        }
    }

    [Fact]
    public async Task ANodeLearntToHoldTheModel_BeatsLoadingItHere_UntilItsQueueIsFuller()
    {
        var eu = Node("eu", Paris);
        var eu2 = Node("eu-2", Paris);
        var router = Router("us", Virginia, eu, eu2);
        var model = (await _registry.FindAsync("default", "tiny-any", CancellationToken.None))!;
        using (var first = router.Forwarding(eu, model))
        {
            first.Served();
        }

        var plan = await router.PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("eu", plan.Candidates[0].Id);

        // eu-2 holds it too; eu has 64 requests in flight (a full batch), so eu-2 wins.
        using (var second = router.Forwarding(eu2, model))
        {
            second.Served();
        }

        var busy = Enumerable.Range(0, 64).Select(_ => router.Forwarding(eu, model)).ToList();
        plan = await router.PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("eu-2", plan.Candidates[0].Id);
        busy.ForEach(f => f.Dispose());
    }

    [Fact]
    public async Task ANodeThatPublishesTheModel_BeatsLoadingItHere_ThoughThisRouterNeverForwardedThere_UntilItsPublishedQueueIsFuller()
    {
        HeldModel Held(int running, int waiting) => new("tiny-any", [], running, waiting, 64);
        var plan = await Router("us", Virginia, Node("eu", Paris), Node("eu-2", Paris) with { Published = [Held(0, 0)] })
            .PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("eu-2", plan.Candidates[0].Id);

        // Both hold it; eu-2's batch is full and 64 more wait, so eu wins.
        plan = await Router("us", Virginia, Node("eu", Paris) with { Published = [Held(3, 0)] }, Node("eu-2", Paris) with { Published = [Held(64, 64)] })
            .PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("eu", plan.Candidates[0].Id);

        // A node that publishes other models only is as cold as one never heard of: this replica wins.
        plan = await Router("us", Virginia, Node("eu", Paris) with { Published = [new HeldModel("tiny-eu", [], 0, 0, 64)] })
            .PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("us", plan.Candidates[0].Id);
    }

    [Fact]
    public async Task WhatARouterPublishes_IsWhatItsReplicasHold_WithTheirQueues()
    {
        var router = Router("eu", Paris);
        Assert.Empty(router.Describe());
        await router.AcquireAsync("default", "tiny-any", "hello", CancellationToken.None);
        var held = Assert.Single(router.Describe());
        Assert.Equal("tiny-any", held.BaseModel);
        Assert.Empty(held.Served);
        Assert.Equal(0, held.Running + held.Waiting);
        Assert.Equal(new InferenceEngineOptions().MaxRunningSequences, held.MaxRunning);

        // Another node that reads this publication scores this node as holding the model.
        var other = Router("eu-2", Paris, Node("eu", Paris) with { Published = router.Describe() });
        var plan = await other.PlanAsync("default", "tiny-any", "hello", localOnly: false, CancellationToken.None);
        Assert.Equal("eu", plan.Candidates[0].Id);
    }

    [Fact]
    public async Task AModelLoadedHere_IsServedHere_ThoughAnotherNodeIsAllowed()
    {
        var router = Router("eu", Paris, Node("eu-2", Paris));
        await router.AcquireAsync("default", "tiny-any", "hello", CancellationToken.None);
        for (var i = 0; i < 16; i++)
        {
            var plan = await router.PlanAsync("default", "tiny-any", $"prefix {i}", localOnly: false, CancellationToken.None);
            Assert.Equal("eu", plan.Candidates[0].Id);
            Assert.NotNull(plan.Candidates[0].Local);
        }
    }

    [Fact]
    public async Task NoAllowedReplicaAnywhere_Is403NamingThePolicyAndEachReplicasReason()
    {
        var router = Router("us", Virginia, Node("us-2", Virginia));
        var refused = await Assert.ThrowsAsync<ForbiddenException>(() => router.PlanAsync("default", "tiny-eu", "hello", localOnly: false, CancellationToken.None));
        Assert.Contains("'eu-only'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("us: location jurisdiction US", refused.Message, StringComparison.Ordinal);
        Assert.Contains("us-2: location jurisdiction US", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARequestForwardedHere_IsJudgedAgainstThisNodeAlone_AndNeverSentOn()
    {
        var router = Router("us", Virginia, Node("eu", Paris));
        var refused = await Assert.ThrowsAsync<ForbiddenException>(() => router.PlanAsync("default", "tiny-eu", "hello", localOnly: true, CancellationToken.None));
        Assert.Contains("'eu-only'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("forwarded here by another node", refused.Message, StringComparison.Ordinal);

        var plan = await router.PlanAsync("default", "tiny-any", "hello", localOnly: true, CancellationToken.None);
        Assert.Equal("us", Assert.Single(plan.Candidates).Id);
    }

    // The other nodes as membership would list them: a fixed set here.
    private sealed class Nodes(IReadOnlyList<RemoteReplica> remotes) : IRemoteReplicas
    {
        public ValueTask<IReadOnlyList<RemoteReplica>> CurrentAsync(CancellationToken ct) => ValueTask.FromResult(remotes);
    }
}
