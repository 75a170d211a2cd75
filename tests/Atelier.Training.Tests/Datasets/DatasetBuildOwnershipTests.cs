using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Residency;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;
using Atelier.Registry;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Atelier.Training.Datasets;
using Microsoft.Extensions.Logging.Abstractions;

namespace Atelier.Training.Tests.Datasets;

/// <summary>
/// Two dataset build services over one catalog, as two nodes of a cluster: a build is built by the
/// node holding its lease, and only when that node stops renewing does the other take it over.
/// </summary>
public sealed class DatasetBuildOwnershipTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task OneNodeBuilds_AndWhenItStopsRenewing_TheOtherTakesOverAfterTheLease_AndTheBuildSucceedsOnce()
    {
        var dir = TestCleanup.CreateDirectory("atelier-build-owner");
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_000_000));
        var catalog = SqliteCatalog.Open(Path.Combine(dir, "catalog.db"), clock);
        var ws = (await new ApiKeyStore(catalog.Keys, clock).EnsureWorkspaceAsync("a")).Id;
        var policies = await PolicyCatalog.LoadAsync(catalog.Policies, [new ResidencyPolicy { Name = "default", AllowedJurisdictions = ["*"] }], "default", clock);
        var shared = new LocationDescriptor { Id = "shared", Uri = "shared", Country = "FR", Blocs = ["EU"], OnPrem = true };
        using var audit = new AuditLog(Path.Combine(dir, "audit"), TimeProvider.System);
        var guard = new PlacementGuard(new StorageLocations([(shared, (IBlobStore)new LocalDirectoryBlobStore("shared", Path.Combine(dir, "shared")))]), audit);
        var registry = new ModelRegistry(new SqliteModelRepository(catalog.Database), guard, clock);
        await catalog.Datasets.InsertAsync(new DatasetRecord
        {
            Id = "ds-1",
            WorkspaceId = ws,
            Name = "copy",
            Status = "queued",
            RequestJson = """{"operation":"test-copy"}""",
            Policy = "default",
            LocationId = "shared",
            CreatedAt = 1_000_000,
            CreatedBy = "key:test",
        });

        var nodeA = new Node("node-a", catalog.Datasets);
        var nodeB = new Node("node-b", catalog.Datasets);
        using var a = nodeA.Service(dir, catalog, policies, guard, registry, clock);
        using var b = nodeB.Service(dir, catalog, policies, guard, registry, clock);

        // Node A starts first and claims the build; node B, started while A holds it, leaves it alone.
        await a.StartAsync(CancellationToken.None);
        await nodeA.Builder.Entered.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal("node-a", (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.BuildOwner);
        await b.StartAsync(CancellationToken.None);
        await Waits.UntilAsync(() => Task.FromResult(clock.PendingTimers == 3), () => $"A's renewal and poll and B's poll armed ({clock.PendingTimers})");

        // A renews every third of the lease; a whole lease after it started, B polls and still finds the
        // build held. After each step the test waits for the three timers (A's renewal and poll, B's
        // poll) to be armed again, so no step outruns a renewal.
        for (var step = 1; step <= 3; step++)
        {
            var expected = clock.GetUtcNow().ToUnixTimeSeconds() + (long)(Lease / 3).TotalSeconds + (long)Lease.TotalSeconds;
            clock.Advance(Lease / 3);
            await Waits.UntilAsync(async () => (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.BuildLeaseUntil >= expected, () => $"node A's renewal {step}");
            await Waits.UntilAsync(() => Task.FromResult(clock.PendingTimers == 3), () => $"the timers re-armed after step {step} ({clock.PendingTimers})");
        }

        Assert.True(nodeB.Catalog.Scans >= 2, $"node B scanned {nodeB.Catalog.Scans} times");
        Assert.False(nodeB.Builder.Entered.Task.IsCompleted);
        Assert.DoesNotContain(true, nodeB.Catalog.Claims);
        Assert.Equal("node-a", (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.BuildOwner);

        // A dies mid-build: it stops renewing and leaves the build running under its lapsing lease.
        await a.StopAsync(CancellationToken.None);
        var abandoned = await catalog.Datasets.GetForBuilderAsync("ds-1");
        Assert.Equal(("running", "node-a"), (abandoned?.Status, abandoned?.BuildOwner));

        // Once the lease has run out, B's next poll takes the build over, without a restart.
        await Waits.UntilAsync(
            () =>
            {
                clock.Advance(Lease / 3);
                return Task.FromResult(nodeB.Builder.Entered.Task.IsCompleted);
            },
            () => "node B taking the build over");
        Assert.Equal("node-b", (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.BuildOwner);
        nodeB.Builder.Release.SetResult();
        await Waits.UntilAsync(async () => (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.Status != "running", () => "the build to finish");

        var done = await catalog.Datasets.GetForBuilderAsync("ds-1");
        Assert.Equal(("succeeded", (string?)null, (string?)null), (done?.Status, done?.Error, done?.BuildOwner));
        Assert.Equal(0, nodeA.Builder.Completed);
        Assert.Equal(1, nodeB.Builder.Completed);
        Assert.True(JsonNode.Parse(done!.SummaryJson!)!["test_copy"]!["copied"]!.GetValue<bool>());

        // B polls on: the finished build is not built again.
        var scans = nodeB.Catalog.Scans;
        await Waits.UntilAsync(
            () =>
            {
                clock.Advance(Lease / 3);
                return Task.FromResult(nodeB.Catalog.Scans > scans);
            },
            () => "node B's next poll");
        Assert.Equal(1, nodeB.Builder.Completed);
        await b.StopAsync(CancellationToken.None);
    }

    private sealed class Node(string name, IDatasetRepository datasets)
    {
        public RecordingDatasets Catalog { get; } = new(datasets);

        public GatedBuilder Builder { get; } = new();

        public DatasetBuildService Service(string dir, SqliteCatalog catalog, PolicyCatalog policies, PlacementGuard guard, ModelRegistry registry, TimeProvider clock) => new(
            new DatasetBuildServiceOptions { StagingDirectory = Path.Combine(dir, name, "staging"), Node = name, LeaseLength = Lease },
            Catalog,
            catalog.Files,
            policies,
            guard,
            registry,
            Builder,
            clock,
            NullLogger<DatasetBuildService>.Instance);
    }

    /// <summary>A derived build that waits for the test, then builds a small version.</summary>
    private sealed class GatedBuilder : IDerivedDatasetBuilder
    {
        private int _completed;

        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Release { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int Completed => Volatile.Read(ref _completed);

        public string Operation => "test-copy";

        public string SummaryProperty => "test_copy";

        public async Task<(DatasetBuildResult Result, JsonObject Summary)> BuildAsync(DatasetRecord dataset, string staging, string output, IProgress<DatasetBuildProgress> progress, CancellationToken cancel)
        {
            Entered.TrySetResult();
            await Release.Task.WaitAsync(cancel);
            var lines = string.Join("\n", Enumerable.Range(0, 24).Select(i => JsonSerializer.Serialize(new
            {
                messages = new object[] { new { role = "user", content = $"Say word {i}." }, new { role = "assistant", content = $"word {i} word." } },
            }))) + "\n";
            var input = new DatasetInput("train.jsonl", () => new MemoryStream(Encoding.UTF8.GetBytes(lines)), DataFormat.FineTuneJsonl);
            var result = await DatasetBuilder.BuildAsync(new DatasetBuildRequest { Training = [input], Tokenizer = TiktokenTextTokenizer.CreateO200kBase() }, output, progress, cancel);
            Interlocked.Increment(ref _completed);
            return (result, new JsonObject { ["copied"] = true });
        }
    }

    /// <summary>The catalog as one node sees it, counting its scans for unfinished builds and its claims.</summary>
    private sealed class RecordingDatasets(IDatasetRepository inner) : IDatasetRepository
    {
        private int _scans;

        public int Scans => Volatile.Read(ref _scans);

        public ConcurrentQueue<bool> Claims { get; } = new();

        public async Task<IReadOnlyList<DatasetRecord>> UnfinishedAsync(CancellationToken cancellationToken = default)
        {
            var unfinished = await inner.UnfinishedAsync(cancellationToken);
            Interlocked.Increment(ref _scans);
            return unfinished;
        }

        public async Task<bool> TryClaimBuildAsync(string id, string node, long leaseUntil, long now, CancellationToken cancellationToken = default)
        {
            var claimed = await inner.TryClaimBuildAsync(id, node, leaseUntil, now, cancellationToken);
            Claims.Enqueue(claimed);
            return claimed;
        }

        public Task InsertAsync(DatasetRecord dataset, CancellationToken cancellationToken = default) => inner.InsertAsync(dataset, cancellationToken);

        public Task<DatasetRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) => inner.GetAsync(workspaceId, id, cancellationToken);

        public Task<DatasetRecord?> GetForBuilderAsync(string id, CancellationToken cancellationToken = default) => inner.GetForBuilderAsync(id, cancellationToken);

        public Task<IReadOnlyList<DatasetRecord>> ListAsync(string workspaceId, int page, int pageSize, CancellationToken cancellationToken = default) => inner.ListAsync(workspaceId, page, pageSize, cancellationToken);

        public Task MarkRunningAsync(string id, CancellationToken cancellationToken = default) => inner.MarkRunningAsync(id, cancellationToken);

        public Task UpdateProgressAsync(string id, string progressJson, CancellationToken cancellationToken = default) => inner.UpdateProgressAsync(id, progressJson, cancellationToken);

        public Task<bool> RenewBuildLeaseAsync(string id, string node, long leaseUntil, CancellationToken cancellationToken = default) => inner.RenewBuildLeaseAsync(id, node, leaseUntil, cancellationToken);

        public Task FinishAsync(string id, string status, string? summaryJson, string? error, CancellationToken cancellationToken = default) => inner.FinishAsync(id, status, summaryJson, error, cancellationToken);

        public Task<DatasetRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default) => inner.DeleteAsync(workspaceId, id, cancellationToken);
    }
}
