using Atelier.Catalog;
using Atelier.Core.Errors;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IDatasetRepository"/> must do.</summary>
public abstract class DatasetRepositoryContract : CatalogContract
{
    [Fact]
    public async Task Insert_ThenGet_InItsWorkspaceOnly_AndByIdForTheBuilder()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        var queued = Dataset(a, "ds-1", """{"training_files":["f-1"]}""", createdAt: 900, status: "queued");
        await catalog.Datasets.InsertAsync(queued);

        Assert.Equal(queued, await catalog.Datasets.GetAsync(a, "ds-1"));
        Assert.Null(await catalog.Datasets.GetAsync(b, "ds-1"));
        Assert.Equal(queued, await catalog.Datasets.GetForBuilderAsync("ds-1"));
        Assert.Null(await catalog.Datasets.GetForBuilderAsync("ds-missing"));
        Assert.Empty(await catalog.Datasets.ListAsync(b, 0, 10));
        Assert.Null(await catalog.Datasets.DeleteAsync(b, "ds-1"));
        Assert.NotNull(await catalog.Datasets.GetAsync(a, "ds-1"));
    }

    [Fact]
    public async Task List_PagesNewestFirst()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        for (var i = 1; i <= 5; i++)
        {
            await catalog.Datasets.InsertAsync(Dataset(ws, $"ds-{i}", "{}", createdAt: i * 10));
        }

        Assert.Equal(["ds-5", "ds-4"], (await catalog.Datasets.ListAsync(ws, 0, 2)).Select(d => d.Id));
        Assert.Equal(["ds-3", "ds-2"], (await catalog.Datasets.ListAsync(ws, 1, 2)).Select(d => d.Id));
        Assert.Equal(["ds-1"], (await catalog.Datasets.ListAsync(ws, 2, 2)).Select(d => d.Id));
        Assert.Empty(await catalog.Datasets.ListAsync(ws, 3, 2));
    }

    [Fact]
    public async Task ABuild_RunsRecordsProgressAndFinishes_AndUnfinishedListsWhatMustRunAgain()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-1", "{}", createdAt: 10, status: "queued"));
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-2", "{}", createdAt: 20, status: "queued"));
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-done", "{}", createdAt: 5, status: "succeeded"));
        Assert.Equal(["ds-1", "ds-2"], (await catalog.Datasets.UnfinishedAsync()).Select(d => d.Id));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(2_000);
        await catalog.Datasets.MarkRunningAsync("ds-1");
        await catalog.Datasets.UpdateProgressAsync("ds-1", """{"rows":3}""");

        // A restart marks it running again; it keeps its first start time.
        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(2_100);
        await catalog.Datasets.MarkRunningAsync("ds-1");
        var running = await catalog.Datasets.GetAsync(ws, "ds-1");
        Assert.Equal("running", running?.Status);
        Assert.Equal(2_000, running?.StartedAt);
        Assert.Equal("""{"rows":3}""", running?.ProgressJson);
        Assert.Equal(["ds-1", "ds-2"], (await catalog.Datasets.UnfinishedAsync()).Select(d => d.Id));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(2_200);
        await catalog.Datasets.FinishAsync("ds-1", "succeeded", """{"shards":1}""", null);
        await catalog.Datasets.FinishAsync("ds-2", "failed", null, "no rows");
        var succeeded = await catalog.Datasets.GetAsync(ws, "ds-1");
        Assert.Equal(("succeeded", """{"shards":1}""", (string?)null, (long?)2_200), (succeeded?.Status, succeeded?.SummaryJson, succeeded?.Error, succeeded?.FinishedAt));
        var failed = await catalog.Datasets.GetAsync(ws, "ds-2");
        Assert.Equal(("failed", (string?)null, "no rows"), (failed?.Status, failed?.SummaryJson, failed?.Error));
        Assert.Empty(await catalog.Datasets.UnfinishedAsync());

        // A finished build is not made running again by a late start.
        await catalog.Datasets.MarkRunningAsync("ds-2");
        Assert.Equal("failed", (await catalog.Datasets.GetAsync(ws, "ds-2"))?.Status);
    }

    [Fact]
    public async Task Delete_OfADatasetSomethingDerivesFrom_IsRefusedAndRemovesNothing()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-1", "{}"));
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-dedup", """{"source_dataset":"ds-1"}"""));
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", requestJson: """{"dataset_id":"ds-1"}"""));

        var refused = await Assert.ThrowsAsync<ConflictException>(() => catalog.Datasets.DeleteAsync(ws, "ds-1"));
        Assert.Equal([new("dataset", "ds-dedup"), new("fine_tuning_job", "job-1")], refused.Derived);
        Assert.NotNull(await catalog.Datasets.GetAsync(ws, "ds-1"));

        // Nothing derives from the dedup version: it goes, once.
        Assert.Equal("ds-dedup", (await catalog.Datasets.DeleteAsync(ws, "ds-dedup"))?.Id);
        Assert.Null(await catalog.Datasets.DeleteAsync(ws, "ds-dedup"));
        Assert.Null(await catalog.Datasets.GetAsync(ws, "ds-dedup"));
    }

    [Fact]
    public async Task Insert_IntoAnUnknownWorkspace_IsAConflict()
    {
        var catalog = await OpenCatalogAsync();
        await Assert.ThrowsAsync<ConflictException>(() => catalog.Datasets.InsertAsync(Dataset("no-such-workspace", "ds-1", "{}")));
        Assert.Null(await catalog.Datasets.GetForBuilderAsync("ds-1"));
    }

    [Fact]
    public async Task ABuildsLease_HoldsAgainstOtherNodes_UntilItExpires_AndFinishingClearsIt()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-1", "{}", status: "queued"));

        Assert.True(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-a", leaseUntil: 1_120, now: 1_000));
        var claimed = await catalog.Datasets.GetForBuilderAsync("ds-1");
        Assert.Equal(("node-a", (long?)1_120), (claimed?.BuildOwner, claimed?.BuildLeaseUntil));

        // Another node is refused while the lease holds, up to its last second; the owner may claim again (a restart).
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-b", leaseUntil: 1_130, now: 1_010));
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-b", leaseUntil: 1_239, now: 1_119));
        Assert.True(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-a", leaseUntil: 1_150, now: 1_030));
        Assert.Equal(1_150, (await catalog.Datasets.GetForBuilderAsync("ds-1"))?.BuildLeaseUntil);

        // Renewal is the owner's alone.
        Assert.False(await catalog.Datasets.RenewBuildLeaseAsync("ds-1", "node-b", 1_500));
        Assert.True(await catalog.Datasets.RenewBuildLeaseAsync("ds-1", "node-a", 1_200));
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-b", leaseUntil: 1_300, now: 1_180));

        // The owner stopped renewing (it died): once the lease has run out, another node takes the build over,
        // and the former owner can neither renew nor claim it back.
        Assert.True(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-b", leaseUntil: 1_320, now: 1_200));
        var taken = await catalog.Datasets.GetForBuilderAsync("ds-1");
        Assert.Equal(("node-b", (long?)1_320), (taken?.BuildOwner, taken?.BuildLeaseUntil));
        Assert.False(await catalog.Datasets.RenewBuildLeaseAsync("ds-1", "node-a", 1_400));
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-a", leaseUntil: 1_400, now: 1_210));

        // Finishing releases the build; a finished build is claimed by nobody and its lease is not renewed.
        await catalog.Datasets.FinishAsync("ds-1", "succeeded", "{}", null);
        var finished = await catalog.Datasets.GetForBuilderAsync("ds-1");
        Assert.Equal(("succeeded", (string?)null, (long?)null), (finished?.Status, finished?.BuildOwner, finished?.BuildLeaseUntil));
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-1", "node-a", leaseUntil: 9_000, now: 8_000));
        Assert.False(await catalog.Datasets.RenewBuildLeaseAsync("ds-1", "node-b", 9_000));
        Assert.False(await catalog.Datasets.TryClaimBuildAsync("ds-missing", "node-a", leaseUntil: 9_000, now: 8_000));
    }

    [Fact]
    public async Task NodesClaimingOneBuildAtOnce_ExactlyOneWins()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        const int Nodes = 16;
        for (var round = 0; round < 4; round++)
        {
            var id = $"ds-{round}";
            await catalog.Datasets.InsertAsync(Dataset(ws, id, "{}", status: round % 2 == 0 ? "queued" : "running"));
            // Released together, so the claims overlap (on PostgreSQL, each on a connection of its own).
            var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var claims = Enumerable.Range(0, Nodes).Select(n => Task.Run(async () =>
            {
                await start.Task;
                return await catalog.Datasets.TryClaimBuildAsync(id, $"node-{n}", leaseUntil: 1_120, now: 1_000);
            })).ToArray();
            start.SetResult();
            var won = await Task.WhenAll(claims);

            Assert.Single(won, w => w);
            var owner = (await catalog.Datasets.GetForBuilderAsync(id))?.BuildOwner;
            Assert.Equal($"node-{Array.IndexOf(won, true)}", owner);
        }
    }
}
