using Atelier.Catalog;
using Atelier.Core.Errors;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IFileRepository"/> must do.</summary>
public abstract class FileRepositoryContract : CatalogContract
{
    [Fact]
    public async Task Insert_ThenGet_ReturnsEveryField()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        var full = File(ws, "f-full", 900, expiresAt: 5_000) with { NumLines = 12, Mimetype = "application/jsonl", Source = "repository", Visibility = "user", Bytes = 1L << 40 };
        var bare = File(ws, "f-bare", 901);
        await catalog.Files.InsertAsync(full);
        await catalog.Files.InsertAsync(bare);

        Assert.Equal(full, await catalog.Files.GetAsync(ws, "f-full"));
        Assert.Equal(bare, await catalog.Files.GetAsync(ws, "f-bare"));
        Assert.Null(await catalog.Files.GetAsync(ws, "f-missing"));
    }

    [Fact]
    public async Task Files_AreScopedToTheirWorkspace()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        await catalog.Files.InsertAsync(File(a, "f-a", 1, expiresAt: 1_500));

        Assert.NotNull(await catalog.Files.GetAsync(a, "f-a"));
        Assert.Null(await catalog.Files.GetAsync(b, "f-a"));
        Assert.Empty((await catalog.Files.ListAsync(b, new FileQuery())).Page);
        Assert.Equal(0, (await catalog.Files.ListAsync(b, new FileQuery())).Total);
        Assert.Null(await catalog.Files.DeleteAsync(b, "f-a"));
        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_501);
        Assert.Null(await catalog.Files.DeleteExpiredAsync(b, "f-a"));
        Assert.Equal("f-a", (await catalog.Files.DeleteExpiredAsync(a, "f-a"))?.Id);
    }

    [Fact]
    public async Task List_FiltersPagesAndCountsNewestFirst()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        var files = catalog.Files;
        await files.InsertAsync(File(ws, "1", 100, name: "train_en.jsonl") with { Mimetype = "application/jsonl" });
        await files.InsertAsync(File(ws, "2", 200, name: "train_fr.jsonl", sample: "pretrain") with { Source = "mistral" });
        await files.InsertAsync(File(ws, "3", 300, purpose: "batch", name: "requests.jsonl", sample: "batch_request"));
        await files.InsertAsync(File(ws, "4", 400, name: "100%_real.jsonl"));
        await files.InsertAsync(File(ws, "5", 400, name: "same_time.jsonl"));

        // Newest first; equal times by id, descending.
        Assert.Equal(["5", "4", "3", "2", "1"], Ids(await files.ListAsync(ws, new FileQuery())));
        Assert.Equal(["3"], Ids(await files.ListAsync(ws, new FileQuery { Purpose = "batch" })));
        Assert.Equal(["2", "1"], Ids(await files.ListAsync(ws, new FileQuery { Search = "TRAIN" })));
        Assert.Equal(["4"], Ids(await files.ListAsync(ws, new FileQuery { Search = "%_" })));
        Assert.Equal(["3", "2"], Ids(await files.ListAsync(ws, new FileQuery { SampleTypes = ["pretrain", "batch_request"] })));
        Assert.Equal(["2"], Ids(await files.ListAsync(ws, new FileQuery { Sources = ["mistral"] })));
        Assert.Equal(["1"], Ids(await files.ListAsync(ws, new FileQuery { Mimetypes = ["application/jsonl"] })));
        Assert.Empty(Ids(await files.ListAsync(ws, new FileQuery { Purpose = "batch", Search = "train" })));

        var page = await files.ListAsync(ws, new FileQuery { Page = 1, PageSize = 3 });
        Assert.Equal(["2", "1"], Ids(page));
        Assert.Equal(5, page.Total);
        var filtered = await files.ListAsync(ws, new FileQuery { Search = "train", PageSize = 1 });
        Assert.Equal(["2"], Ids(filtered));
        Assert.Equal(2, filtered.Total);
        Assert.Null((await files.ListAsync(ws, new FileQuery { IncludeTotal = false })).Total);
        Assert.Empty(Ids(await files.ListAsync(ws, new FileQuery { Page = 9 })));

        static IEnumerable<string> Ids(FilePage page) => page.Page.Select(f => f.Id);
    }

    [Fact]
    public async Task ExpiredFiles_AreHiddenAndListedForTheSweeper()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        await catalog.Files.InsertAsync(File(a, "short", 1_000, expiresAt: 1_500));
        await catalog.Files.InsertAsync(File(b, "short-b", 1_000, expiresAt: 1_400));
        await catalog.Files.InsertAsync(File(a, "forever", 1_000));
        Assert.NotNull(await catalog.Files.GetAsync(a, "short"));
        Assert.Empty(await catalog.Files.ExpiredAsync(10));
        Assert.Null(await catalog.Files.DeleteExpiredAsync(a, "short"));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_501);
        Assert.Null(await catalog.Files.GetAsync(a, "short"));
        Assert.Equal(["forever"], (await catalog.Files.ListAsync(a, new FileQuery())).Page.Select(f => f.Id));
        Assert.Equal(1, (await catalog.Files.ListAsync(a, new FileQuery())).Total);

        // The sweeper sees every workspace's expired files, at most as many as it asks for.
        Assert.Equal(["short", "short-b"], (await catalog.Files.ExpiredAsync(10)).Select(f => f.Id).Order(StringComparer.Ordinal));
        Assert.Single(await catalog.Files.ExpiredAsync(1));
        Assert.Equal("short", (await catalog.Files.DeleteExpiredAsync(a, "short"))?.Id);
        Assert.Null(await catalog.Files.DeleteExpiredAsync(a, "short"));
        Assert.Null(await catalog.Files.DeleteExpiredAsync(a, "forever"));
        Assert.Equal(["short-b"], (await catalog.Files.ExpiredAsync(10)).Select(f => f.Id));
    }

    [Fact]
    public async Task Delete_ReturnsTheRowOnce()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Files.InsertAsync(File(ws, "f-1", 1));
        Assert.Equal(File(ws, "f-1", 1), await catalog.Files.DeleteAsync(ws, "f-1"));
        Assert.Null(await catalog.Files.DeleteAsync(ws, "f-1"));
        Assert.Null(await catalog.Files.GetAsync(ws, "f-1"));
    }

    [Fact]
    public async Task Delete_OfAFileSomethingDerivesFrom_IsRefusedAndRemovesNothing_ButItsExpiryStillApplies()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await catalog.Files.InsertAsync(File(ws, "f-1", 1_000, expiresAt: 1_500));
        await catalog.Datasets.InsertAsync(Dataset(ws, "ds-1", """{"training_files":["f-1"]}"""));
        await catalog.Jobs.InsertAsync(Job(ws, "job-1", requestJson: """{"dataset_id":"ds-1"}"""));

        var refused = await Assert.ThrowsAsync<ConflictException>(() => catalog.Files.DeleteAsync(ws, "f-1"));
        Assert.Equal([new("dataset", "ds-1"), new("fine_tuning_job", "job-1")], refused.Derived);
        Assert.Contains("erasure flow", refused.Message, StringComparison.Ordinal);
        Assert.NotNull(await catalog.Files.GetAsync(ws, "f-1"));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_501);
        Assert.Equal("f-1", (await catalog.Files.DeleteExpiredAsync(ws, "f-1"))?.Id);
    }

    [Fact]
    public async Task BlobKeys_AreThoseReferencedAtTheLocation_InEveryWorkspace()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        await catalog.Files.InsertAsync(File(a, "f-1", 1));
        await catalog.Files.InsertAsync(File(b, "f-2", 1));
        await catalog.Files.InsertAsync(File(a, "f-3", 1, location: "archive"));

        Assert.Equal(["file/f-1", "file/f-2"], (await catalog.Files.BlobKeysAsync("local")).Order(StringComparer.Ordinal));
        Assert.Equal(["file/f-3"], await catalog.Files.BlobKeysAsync("archive"));
        Assert.Empty(await catalog.Files.BlobKeysAsync("nowhere"));
    }

    [Fact]
    public async Task Insert_IntoAnUnknownWorkspace_OrWithATakenId_IsAConflict()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        await Assert.ThrowsAsync<ConflictException>(() => catalog.Files.InsertAsync(File("no-such-workspace", "x", 1)));
        await catalog.Files.InsertAsync(File(ws, "x", 1));
        await Assert.ThrowsAsync<ConflictException>(() => catalog.Files.InsertAsync(File(ws, "x", 2, name: "other.jsonl")));
        Assert.Equal("train.jsonl", (await catalog.Files.GetAsync(ws, "x"))?.Filename);
    }
}
