using Atelier.Core.Errors;
using Npgsql;

namespace Atelier.Catalog.PostgreSql.Tests;

/// <summary>
/// Races that SQLite's single writer hid, between two nodes: two catalogs, each with its own
/// connection pool, on one database.
/// </summary>
public sealed class PostgreSqlRaceTests : IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    private async Task<(PostgreSqlCatalog A, PostgreSqlCatalog B)> TwoNodesAsync(string purpose)
    {
        var (a, b, _) = await TwoNodesAndTheirDatabaseAsync(purpose);
        return (a, b);
    }

    private async Task<(PostgreSqlCatalog A, PostgreSqlCatalog B, string ConnectionString)> TwoNodesAndTheirDatabaseAsync(string purpose)
    {
        var connectionString = await _catalogs.CreateDatabaseAsync(purpose);
        return (await _catalogs.OpenExistingAsync(connectionString), await _catalogs.OpenExistingAsync(connectionString), connectionString);
    }

    [Fact]
    public async Task StartAndCancel_OfOneJob_OnTwoNodes_ExactlyOneWins()
    {
        var (a, b) = await TwoNodesAsync("startcancel");
        await a.Keys.EnsureWorkspaceAsync("ws_1", "team", 1);
        const int Jobs = 24;
        for (var i = 0; i < Jobs; i++)
        {
            await a.Jobs.InsertAsync(Job($"job-{i}"));
        }

        // Node a's scheduler starts each job while node b's API cancels it.
        using var go = new ManualResetEventSlim();
        var starts = Enumerable.Range(0, Jobs).Select(i => Task.Run(async () => { go.Wait(); return await a.Jobs.TransitionAsync($"job-{i}", ["QUEUED"], "RUNNING"); })).ToArray();
        var cancels = Enumerable.Range(0, Jobs).Select(i => Task.Run(async () => { go.Wait(); return await b.Jobs.TransitionAsync($"job-{i}", ["QUEUED"], "CANCELLED"); })).ToArray();
        go.Set();
        var started = await Task.WhenAll(starts);
        var cancelled = await Task.WhenAll(cancels);

        for (var i = 0; i < Jobs; i++)
        {
            Assert.True(started[i] ^ cancelled[i], $"job-{i}: started {started[i]}, cancelled {cancelled[i]}");
            var job = await b.Jobs.GetByIdAsync($"job-{i}");
            Assert.Equal(started[i] ? "RUNNING" : "CANCELLED", job?.Status);
            var events = await a.Jobs.EventsAsync($"job-{i}");
            Assert.Equal([1L, 2], events.Select(e => e.Seq));
            Assert.Equal($$"""{"status":"{{job?.Status}}"}""", events[1].DataJson);
        }
    }

    [Fact]
    public async Task EventsAddedOnTwoNodes_AreNumberedWithoutGapsOrRepeats()
    {
        var (a, b) = await TwoNodesAsync("events");
        await a.Keys.EnsureWorkspaceAsync("ws_1", "team", 1);
        await a.Jobs.InsertAsync(Job("job-1"));
        await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).Jobs.AddEventAsync("job-1", "e" + i, null))));
        Assert.Equal(Enumerable.Range(1, 21).Select(i => (long)i), (await b.Jobs.EventsAsync("job-1")).Select(e => e.Seq));
    }

    [Fact]
    public async Task VersionsRegisteredOnTwoNodes_GetDistinctNumbers_AndAliasMovesStayOneChain()
    {
        var (a, b) = await TwoNodesAsync("versions");
        var added = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).ModelVersions.AddVersionAsync("ws_1", "m:a", $"ft-{i}", null, i, "key:1"))));
        Assert.Equal(Enumerable.Range(1, 20), added.Select(v => v.Version).Order());

        var moves = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).ModelVersions.MoveAliasAsync("ws_1", "m:a", "prod", 1 + (i % 4), $"key:{i}", "ws_1", null, 100 + i))));
        var history = await a.ModelVersions.AliasHistoryAsync("ws_1", "m:a", "prod");
        Assert.Equal(moves.Count(m => m.Status == AliasMoveStatus.Moved), history.Count);
        Assert.Equal(Enumerable.Range(1, history.Count).Select(i => (long)i), history.Select(h => h.Sequence));
        for (var i = 1; i < history.Count; i++)
        {
            Assert.Equal(history[i - 1].ToVersion, history[i].FromVersion);
        }
    }

    [Fact]
    public async Task OneWorkspaceNameEnsuredOnTwoNodes_IsOneWorkspace()
    {
        var (a, b) = await TwoNodesAsync("workspaces");
        var all = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).Keys.EnsureWorkspaceAsync($"ws_{i}", "team", i))));
        Assert.Single(all.Distinct());
        Assert.Single(await b.Keys.ListWorkspacesAsync());
    }

    [Fact]
    public async Task ADeletion_WaitsForADatasetBeingRecorded_AndThenSeesIt()
    {
        var (a, _, database) = await TwoNodesAndTheirDatabaseAsync("lineage");
        await a.Keys.EnsureWorkspaceAsync("ws_1", "team", 1);
        await a.Files.InsertAsync(new FileRecord
        {
            Id = "f-1",
            WorkspaceId = "ws_1",
            Filename = "t.jsonl",
            Purpose = "fine-tune",
            Bytes = 1,
            CreatedAt = 1,
            SampleType = "instruct",
            Signature = "00",
            Policy = "default",
            LocationId = "local",
            BlobKey = "file/f-1",
            CreatedBy = "key:test",
        });

        // Node b is in the middle of recording a dataset that uses f-1: its transaction holds the
        // lineage lock as the repository takes it, its row written but not committed.
        await using var recording = new NpgsqlConnection(database);
        await recording.OpenAsync();
        await using var transaction = await recording.BeginTransactionAsync();
        await PostgreSqlLineageRepository.LockForUseAsync(recording, transaction, "ws_1", CancellationToken.None);
        await using (var insert = new NpgsqlCommand(
            """
            INSERT INTO datasets(id, workspace_id, name, status, request_json, policy, location_id, created_at, created_by)
            VALUES ('ds-1', 'ws_1', 'd', 'queued', '{"training_files":["f-1"]}', 'default', 'local', 2, 'key:test')
            """,
            recording,
            transaction))
        {
            await insert.ExecuteNonQueryAsync();
        }

        // Node a deletes the file: it must wait for b (without the lock it would find no use yet,
        // delete, and leave b's dataset naming a file that is gone).
        var delete = a.Files.DeleteAsync("ws_1", "f-1");
        await WaitUntilASessionWaitsOnAnAdvisoryLockAsync(database);
        Assert.False(delete.IsCompleted);
        await transaction.CommitAsync();

        var refused = await Assert.ThrowsAsync<ConflictException>(() => delete);
        Assert.Equal([new("dataset", "ds-1")], refused.Derived);
        Assert.NotNull(await a.Files.GetAsync("ws_1", "f-1"));
    }

    private static async Task WaitUntilASessionWaitsOnAnAdvisoryLockAsync(string database)
    {
        await using var observer = new NpgsqlConnection(database);
        await observer.OpenAsync();
        for (var waited = 0; waited < 600; waited++)
        {
            await using var command = new NpgsqlCommand("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted", observer);
            if ((long)(await command.ExecuteScalarAsync())! > 0)
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail("The deletion never waited for the lineage lock.");
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();

    private static JobRecord Job(string id) => new()
    {
        Id = id,
        WorkspaceId = "ws_1",
        Model = "base",
        Status = "QUEUED",
        AutoStart = true,
        RequestJson = "{}",
        Policy = "default",
        LocationId = "local",
        CreatedAt = 1,
        ModifiedAt = 1,
        CreatedBy = "key:test",
    };
}
