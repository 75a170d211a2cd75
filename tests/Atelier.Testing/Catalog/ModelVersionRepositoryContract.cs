using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>
/// What every backend of <see cref="IModelVersionRepository"/> must do: versions numbered in order and
/// never twice (also when registered at once), aliases whose every move is in an append-only history
/// that stays one chain under concurrent moves, and evaluations kept with their version. A test class
/// per backend derives from this and says how to open a fresh catalog.
/// </summary>
public abstract class ModelVersionRepositoryContract
{
    private const string Ws = "ws-a";

    /// <summary>A new, empty repository over a fresh catalog.</summary>
    protected abstract Task<IModelVersionRepository> NewRepositoryAsync();

    [Fact]
    public async Task Versions_AreNumberedInOrderPerNameAndScope_AndAModelKeepsItsFirstVersion()
    {
        var repository = await NewRepositoryAsync();
        Assert.Equal(1, (await repository.AddVersionAsync(Ws, "m:a", "ft-1", "job-1", 10, "key:1")).Version);
        Assert.Equal(2, (await repository.AddVersionAsync(Ws, "m:a", "ft-2", "job-2", 20, "key:1")).Version);
        Assert.Equal(1, (await repository.AddVersionAsync("ws-b", "m:a", "ft-3", "job-3", 30, "key:2")).Version);
        Assert.Equal(1, (await repository.AddVersionAsync(IModelVersionRepository.SharedScope, "m", "m", null, 5, "key:op")).Version);

        var again = await repository.AddVersionAsync(Ws, "m:a", "ft-1", "job-1", 99, "key:9");
        Assert.Equal((1, 10L, "key:1"), (again.Version, again.CreatedAt, again.CreatedBy));

        var versions = await repository.ListVersionsAsync(Ws, "m:a");
        Assert.Equal(["ft-1", "ft-2"], versions.Select(v => v.ModelId));
        Assert.Equal(["job-1", "job-2"], versions.Select(v => v.JobId));

        // No model rows were written here: a version whose model is gone reads as deleted.
        Assert.All(versions, v => Assert.Equal("deleted", v.Status));
        Assert.Equal("ft-2", (await repository.FindVersionAsync(Ws, "m:a", 2))!.ModelId);
        Assert.Null(await repository.FindVersionAsync(Ws, "m:a", 3));
        Assert.Equal(2, (await repository.FindByModelAsync("ft-2"))!.Version);

        var names = await repository.ListNamesAsync([Ws, IModelVersionRepository.SharedScope]);
        Assert.Equal([("m", IModelVersionRepository.SharedScope, 1, 1), ("m:a", Ws, 2, 2)], names.Select(n => (n.Name, n.Scope, n.LatestVersion, n.Versions)));
        Assert.Null(await repository.FindNameAsync("ws-c", "m:a"));
    }

    [Fact]
    public async Task ConcurrentRegistrations_NeverShareAVersionNumber()
    {
        var repository = await NewRepositoryAsync();
        var added = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(() => repository.AddVersionAsync(Ws, "m:a", $"ft-{i}", $"job-{i}", i, "key:1"))));
        Assert.Equal(Enumerable.Range(1, 16), added.Select(v => v.Version).Order());
        Assert.Equal(16, (await repository.FindNameAsync(Ws, "m:a"))!.LatestVersion);
    }

    [Fact]
    public async Task AliasMoves_AreRecordedWithTheirOrigin_AndOnlyRealChangesEnterTheHistory()
    {
        var repository = await NewRepositoryAsync();
        await repository.AddVersionAsync(Ws, "m:a", "ft-1", null, 1, "key:1");
        await repository.AddVersionAsync(Ws, "m:a", "ft-2", null, 2, "key:1");

        Assert.Equal(AliasMoveStatus.NotFound, (await repository.MoveAliasAsync(Ws, "nope", "prod", 1, "key:1", Ws, null, 3)).Status);
        Assert.Equal(AliasMoveStatus.NoSuchVersion, (await repository.MoveAliasAsync(Ws, "m:a", "prod", 3, "key:1", Ws, null, 3)).Status);
        Assert.Equal(AliasMoveStatus.NotFound, (await repository.MoveAliasAsync(Ws, "m:a", "prod", null, "key:1", Ws, null, 3)).Status);

        var created = await repository.MoveAliasAsync(Ws, "m:a", "prod", 1, "key:1", Ws, "launch", 4);
        Assert.Equal(AliasMoveStatus.Moved, created.Status);
        Assert.Equal(new ModelAliasMove(1, "prod", null, 1, "key:1", Ws, "launch", 4), created.Move);
        Assert.Equal(AliasMoveStatus.Unchanged, (await repository.MoveAliasAsync(Ws, "m:a", "prod", 1, "key:2", Ws, null, 5)).Status);
        Assert.Equal("ft-1", (await repository.FindByAliasAsync(Ws, "m:a", "prod"))!.ModelId);

        await repository.MoveAliasAsync(Ws, "m:a", "prod", 2, "key:2", Ws, "promote", 6);
        Assert.Equal("ft-2", (await repository.FindByAliasAsync(Ws, "m:a", "prod"))!.ModelId);
        var alias = Assert.Single((await repository.FindNameAsync(Ws, "m:a"))!.Aliases);
        Assert.Equal(new ModelAliasRecord("prod", 2, 6, "key:2"), alias);

        await repository.MoveAliasAsync(Ws, "m:a", "prod", null, "key:3", Ws, null, 7);
        Assert.Null(await repository.FindByAliasAsync(Ws, "m:a", "prod"));
        Assert.Empty((await repository.FindNameAsync(Ws, "m:a"))!.Aliases);
        Assert.Equal(
            [new(1, "prod", null, 1, "key:1", Ws, "launch", 4), new(2, "prod", 1, 2, "key:2", Ws, "promote", 6), new ModelAliasMove(3, "prod", 2, null, "key:3", Ws, null, 7)],
            await repository.AliasHistoryAsync(Ws, "m:a", "prod"));

        // The same alias name of another name or scope is another alias.
        Assert.Empty(await repository.AliasHistoryAsync("ws-b", "m:a", "prod"));
    }

    [Fact]
    public async Task ConcurrentAliasMoves_LeaveOneChainOfHistory()
    {
        var repository = await NewRepositoryAsync();
        for (var v = 1; v <= 3; v++)
        {
            await repository.AddVersionAsync(Ws, "m:a", $"ft-{v}", null, v, "key:1");
        }

        var outcomes = await Task.WhenAll(Enumerable.Range(0, 24).Select(i => Task.Run(() => repository.MoveAliasAsync(Ws, "m:a", "prod", 1 + (i % 3), $"key:{i}", Ws, null, 10 + i))));
        var history = await repository.AliasHistoryAsync(Ws, "m:a", "prod");
        var moved = outcomes.Where(o => o.Status == AliasMoveStatus.Moved).Select(o => o.Move!).OrderBy(m => m.Sequence).ToList();
        Assert.Equal(moved, history);
        Assert.Equal(Enumerable.Range(1, history.Count).Select(i => (long)i), history.Select(m => m.Sequence));
        Assert.Null(history[0].FromVersion);
        for (var i = 1; i < history.Count; i++)
        {
            Assert.Equal(history[i - 1].ToVersion, history[i].FromVersion);
        }

        Assert.All(outcomes, o => Assert.True(o.Status is AliasMoveStatus.Moved or AliasMoveStatus.Unchanged));
        Assert.Equal(history[^1].ToVersion, (await repository.FindByAliasAsync(Ws, "m:a", "prod"))!.Version);
    }

    [Fact]
    public async Task Evaluations_AreKeptWithTheirVersion()
    {
        var repository = await NewRepositoryAsync();
        await repository.AddVersionAsync(Ws, "m:a", "ft-1", null, 1, "key:1");
        var first = new ModelEvaluationRecord("ev-1", Ws, "m:a", 1, "ft-1", "file-1", """{"model":{"loss":1.5}}""", 10, "key:1");
        var second = first with { Id = "ev-2", CreatedAt = 20, ResultJson = """{"model":{"loss":1.25}}""" };
        await repository.AddEvaluationAsync(second);
        await repository.AddEvaluationAsync(first);
        Assert.Equal([first, second], await repository.ListEvaluationsAsync(Ws, "m:a", 1));
        Assert.Empty(await repository.ListEvaluationsAsync(Ws, "m:a", 2));
        Assert.Empty(await repository.ListEvaluationsAsync("ws-b", "m:a", 1));
    }
}
