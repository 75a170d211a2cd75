using Atelier.Catalog;
using Atelier.Core.Errors;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IJobRepository"/> must do.</summary>
public abstract class JobRepositoryContract : CatalogContract
{
    [Fact]
    public async Task Insert_StoresANotStartedJob_WithItsFirstStatusEvent_InItsWorkspaceOnly()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        var job = Job(a, "job-1", status: "QUEUED", createdAt: 900, suffix: "mine");
        await catalog.Jobs.InsertAsync(job);

        var stored = await catalog.Jobs.GetAsync(a, "job-1");
        Assert.Equal(job, stored);
        Assert.False(stored!.Started);
        Assert.Equal(0, stored.Attempt);
        Assert.Null(await catalog.Jobs.GetAsync(b, "job-1"));
        Assert.Equal(job, await catalog.Jobs.GetByIdAsync("job-1"));
        Assert.Null(await catalog.Jobs.GetByIdAsync("job-missing"));
        Assert.Equal(0, (await catalog.Jobs.ListAsync(b, new JobFilter(), 0, 10)).Total);

        var first = Assert.Single(await catalog.Jobs.EventsAsync("job-1"));
        Assert.Equal(new JobEventRecord(1, "status-updated", """{"status":"QUEUED"}""", 900), first);
    }

    [Fact]
    public async Task List_FiltersPagesAndCountsNewestFirst()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "j-1", model: "small", status: "QUEUED", createdAt: 100, createdBy: "key:a"));
        await catalog.Jobs.InsertAsync(Job(ws, "j-2", model: "large", status: "QUEUED", createdAt: 200, suffix: "fr"));
        await catalog.Jobs.InsertAsync(Job(ws, "j-3", model: "small", status: "QUEUED", createdAt: 300, createdBy: "key:a", suffix: "fr"));
        await catalog.Jobs.TransitionAsync("j-3", ["QUEUED"], "CANCELLED");

        Assert.Equal(("j-3,j-2,j-1", 3L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter(), 0, 10)));
        Assert.Equal(("j-3,j-1", 2L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { Model = "small" }, 0, 10)));
        Assert.Equal(("j-3", 1L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { Status = "CANCELLED" }, 0, 10)));
        Assert.Equal(("j-3,j-1", 2L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { CreatedBy = "key:a" }, 0, 10)));
        Assert.Equal(("j-3,j-2", 2L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { Suffix = "fr" }, 0, 10)));
        Assert.Equal(("j-2", 1L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { CreatedAfter = 100, CreatedBefore = 300 }, 0, 10)));
        Assert.Equal(("j-1", 3L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter(), 1, 2)));
        Assert.Equal(("j-1", 1L), Ids(await catalog.Jobs.ListAsync(ws, new JobFilter { Model = "small", CreatedBy = "key:a", Status = "QUEUED" }, 0, 10)));

        static (string, long) Ids(JobPage page) => (string.Join(",", page.Page.Select(j => j.Id)), page.Total);
    }

    [Fact]
    public async Task Transition_HappensOnlyFromAnAllowedStatus_AndRecordsItsEvent()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "QUEUED", createdAt: 900));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_100);
        Assert.False(await catalog.Jobs.TransitionAsync("job-1", ["RUNNING", "VALIDATED"], "SUCCESS"));
        Assert.Equal("QUEUED", (await catalog.Jobs.GetByIdAsync("job-1"))?.Status);
        Assert.Single(await catalog.Jobs.EventsAsync("job-1"));

        Assert.True(await catalog.Jobs.TransitionAsync("job-1", ["QUEUED", "RUNNING"], "VALIDATING"));
        Assert.True(await catalog.Jobs.TransitionAsync("job-1", ["VALIDATING"], "FAILED_VALIDATION", "no \"rows\""));
        Assert.False(await catalog.Jobs.TransitionAsync("job-1", ["VALIDATING"], "VALIDATED"));
        Assert.False(await catalog.Jobs.TransitionAsync("job-missing", ["QUEUED"], "VALIDATING"));

        var job = await catalog.Jobs.GetByIdAsync("job-1");
        Assert.Equal(("FAILED_VALIDATION", "no \"rows\"", 1_100L), (job?.Status, job?.Error, job?.ModifiedAt));
        var events = await catalog.Jobs.EventsAsync("job-1");
        Assert.Equal([1L, 2, 3], events.Select(e => e.Seq));
        Assert.Equal("""{"status":"VALIDATING"}""", events[1].DataJson);
        Assert.Equal(1_100, events[1].CreatedAt);
        using var error = System.Text.Json.JsonDocument.Parse(events[2].DataJson!);
        Assert.Equal("FAILED_VALIDATION", error.RootElement.GetProperty("status").GetString());
        Assert.Equal("no \"rows\"", error.RootElement.GetProperty("error").GetString());

        // A later transition without an error keeps the recorded one.
        Assert.True(await catalog.Jobs.TransitionAsync("job-1", ["FAILED_VALIDATION"], "CANCELLED"));
        Assert.Equal("no \"rows\"", (await catalog.Jobs.GetByIdAsync("job-1"))?.Error);
    }

    [Fact]
    public async Task ConcurrentTransitions_FromOneStatus_ExactlyOneWins()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "RUNNING"));

        // The grain's end of run and the API's cancel race: only one may move the job on.
        var targets = Enumerable.Range(0, 16).Select(i => i % 2 == 0 ? "SUCCESS" : "CANCELLED").ToArray();
        using var start = new ManualResetEventSlim();
        var racers = targets.Select(to => Task.Run(async () =>
        {
            start.Wait();
            return (To: to, Won: await catalog.Jobs.TransitionAsync("job-1", ["RUNNING"], to));
        })).ToArray();
        start.Set();
        var results = await Task.WhenAll(racers);

        var winner = Assert.Single(results, r => r.Won);
        Assert.Equal(winner.To, (await catalog.Jobs.GetByIdAsync("job-1"))?.Status);
        var events = await catalog.Jobs.EventsAsync("job-1");
        Assert.Equal(2, events.Count);
        Assert.Equal($$"""{"status":"{{winner.To}}"}""", events[1].DataJson);
    }

    [Fact]
    public async Task Events_AreNumberedInTheOrderTheyWereAdded_EvenWhenAddedConcurrently()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "RUNNING"));
        await catalog.Jobs.InsertAsync(Job(ws, "job-2", status: "RUNNING"));
        await catalog.Jobs.AddEventAsync("job-1", "recovered", """{"detail":"one"}""");
        await catalog.Jobs.AddEventAsync("job-2", "other", null);
        await catalog.Jobs.AddEventAsync("job-1", "note", null);

        Assert.Equal(["status-updated", "recovered", "note"], (await catalog.Jobs.EventsAsync("job-1")).Select(e => e.Name));
        Assert.Equal([1L, 2, 3], (await catalog.Jobs.EventsAsync("job-1")).Select(e => e.Seq));
        Assert.Null((await catalog.Jobs.EventsAsync("job-1"))[2].DataJson);
        Assert.Equal([1L, 2], (await catalog.Jobs.EventsAsync("job-2")).Select(e => e.Seq));

        await Task.WhenAll(Enumerable.Range(0, 12).Select(i => Task.Run(() => catalog.Jobs.AddEventAsync("job-2", "e" + i, null))));
        Assert.Equal(Enumerable.Range(1, 14).Select(i => (long)i), (await catalog.Jobs.EventsAsync("job-2")).Select(e => e.Seq));
        Assert.Empty(await catalog.Jobs.EventsAsync("job-missing"));
    }

    [Fact]
    public async Task Checkpoints_AreNewestFirst_ReplacedPerStep_AndMarkedWhenRetentionDeletesThem()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "RUNNING"));
        await catalog.Jobs.InsertAsync(Job(ws, "job-2", status: "RUNNING"));
        await catalog.Jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(10, "ck-10", 1.5, null, null, 1_010, Retained: false), 1_000);
        await catalog.Jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(30, "ck-30", 0.5, 0.7, 0.9, 1_030, Retained: true), 3_000);
        await catalog.Jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(20, "ck-20", 1.0, 1.2, null, 1_020, Retained: true), 2_000);

        // Stored checkpoints are retained whatever the record said; a step written again is replaced.
        await catalog.Jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(20, "ck-20b", 0.9, 1.1, null, 1_021, Retained: true), 2_100);
        Assert.Equal(
            [
                new JobCheckpointRecord(30, "ck-30", 0.5, 0.7, 0.9, 1_030, true),
                new JobCheckpointRecord(20, "ck-20b", 0.9, 1.1, null, 1_021, true),
                new JobCheckpointRecord(10, "ck-10", 1.5, null, null, 1_010, true),
            ],
            await catalog.Jobs.CheckpointsAsync("job-1"));
        var job = await catalog.Jobs.GetByIdAsync("job-1");
        Assert.Equal((2_100L, 1_021L), (job?.TrainedTokens, job?.ModifiedAt));
        Assert.Empty(await catalog.Jobs.CheckpointsAsync("job-2"));

        await catalog.Jobs.MarkCheckpointsDeletedAsync("job-1", [10, 20, 99]);
        Assert.Equal([(30L, true), (20L, false), (10L, false)], (await catalog.Jobs.CheckpointsAsync("job-1")).Select(c => (c.StepNumber, c.Retained)));
    }

    [Fact]
    public async Task TheJobsFields_AreSetOneByOne()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "QUEUED", createdAt: 900));
        await catalog.Jobs.InsertAsync(Job(ws, "job-2", status: "QUEUED", createdAt: 900));
        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_200);
        await catalog.Jobs.MarkStartedAsync("job-1");
        await catalog.Jobs.SetMetadataAsync("job-1", """{"steps":4}""");
        await catalog.Jobs.MarkPlacedAsync("job-1", "node-a");
        await catalog.Jobs.MarkPlacedAsync("job-1", "node-b");
        await catalog.Jobs.SetResultAsync("job-1", "ft:base:mine", 4_096);

        var job = await catalog.Jobs.GetByIdAsync("job-1");
        Assert.Equal(
            (true, """{"steps":4}""", "node-b", 2, "ft:base:mine", 4_096L, 1_200L),
            (job!.Started, job.MetadataJson, job.Node, job.Attempt, job.FineTunedModel, job.TrainedTokens, job.ModifiedAt));
        Assert.Equal(Job(ws, "job-2", status: "QUEUED", createdAt: 900), await catalog.Jobs.GetByIdAsync("job-2"));
    }

    [Fact]
    public async Task Unfinished_AreTheJobsNotInAFinalStatus_OldestFirst()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        string[] unfinished = ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "CANCELLATION_REQUESTED"];
        string[] final = ["SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"];
        var t = 0;
        foreach (var status in unfinished.Concat(final))
        {
            t++;
            await catalog.Jobs.InsertAsync(Job(t % 2 == 0 ? a : b, "job-" + status, status: status, createdAt: 1_000 - t));
        }

        Assert.Equal(unfinished.Reverse().Select(s => "job-" + s), (await catalog.Jobs.UnfinishedAsync()).Select(j => j.Id));
    }

    [Fact]
    public async Task Insert_IntoAnUnknownWorkspace_OrWithATakenId_IsAConflict()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await Assert.ThrowsAsync<ConflictException>(() => catalog.Jobs.InsertAsync(Job("no-such-workspace", "job-1")));
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "QUEUED"));
        await Assert.ThrowsAsync<ConflictException>(() => catalog.Jobs.InsertAsync(Job(ws, "job-1", status: "RUNNING")));

        // The refused insert wrote no event either.
        Assert.Single(await catalog.Jobs.EventsAsync("job-1"));
    }
}
