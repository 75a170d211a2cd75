using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>Every repository of one catalog, as a provider opens them.</summary>
public sealed record CatalogRepositories(
    IFileRepository Files,
    IDatasetRepository Datasets,
    IJobRepository Jobs,
    IApiKeyRepository Keys,
    IVectorCollectionRepository VectorCollections,
    ILineageRepository Lineage,
    IPolicyRepository Policies);

/// <summary>
/// The base of the catalog's contract suites (one per repository). A provider's test class derives
/// from each suite and only says how to open a fresh, empty catalog, so the SQLite catalog and the
/// PostgreSQL one run the same assertions (Orleans' <c>MembershipTableTestsBase</c>).
/// </summary>
public abstract class CatalogContract
{
    /// <summary>The clock every repository of the catalog reads; tests move it.</summary>
    protected SettableClock Clock { get; } = new(DateTimeOffset.FromUnixTimeSeconds(1_000));

    /// <summary>A fresh, empty catalog whose repositories read <paramref name="clock"/>.</summary>
    protected abstract Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock);

    /// <summary>A fresh catalog on <see cref="Clock"/>.</summary>
    protected Task<CatalogRepositories> OpenCatalogAsync() => OpenCatalogAsync(Clock);

    /// <summary>The id of workspace <paramref name="name"/>, created if needed.</summary>
    protected static async Task<string> WorkspaceAsync(CatalogRepositories catalog, string name)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        return (await new ApiKeyStore(catalog.Keys, TimeProvider.System).EnsureWorkspaceAsync(name)).Id;
    }

    /// <summary>A file row.</summary>
    protected static FileRecord File(string workspace, string id, long createdAt, string purpose = "fine-tune", string name = "train.jsonl", string sample = "instruct", long? expiresAt = null, string location = "local") => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Filename = name,
        Purpose = purpose,
        Bytes = 10,
        CreatedAt = createdAt,
        SampleType = sample,
        Signature = "00",
        Policy = "default",
        LocationId = location,
        BlobKey = "file/" + id,
        CreatedBy = "key:test",
        ExpiresAt = expiresAt,
    };

    /// <summary>A dataset row.</summary>
    protected static DatasetRecord Dataset(string workspace, string id, string requestJson, long createdAt = 1, string status = "succeeded") => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Name = id,
        Status = status,
        RequestJson = requestJson,
        Policy = "default",
        LocationId = "local",
        CreatedAt = createdAt,
        CreatedBy = "key:test",
    };

    /// <summary>A job row.</summary>
    protected static JobRecord Job(string workspace, string id, string model = "base", string requestJson = "{}", string status = "SUCCESS", long createdAt = 2, string createdBy = "key:test", string? suffix = null) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Model = model,
        Status = status,
        AutoStart = true,
        RequestJson = requestJson,
        Suffix = suffix,
        Policy = "default",
        LocationId = "local",
        CreatedAt = createdAt,
        ModifiedAt = createdAt,
        CreatedBy = createdBy,
    };
}

/// <summary>A clock that stands still until a test moves it.</summary>
public sealed class SettableClock(DateTimeOffset now) : TimeProvider
{
    /// <summary>The time it tells.</summary>
    public DateTimeOffset Now { get; set; } = now;

    /// <inheritdoc />
    public override DateTimeOffset GetUtcNow() => Now;
}
