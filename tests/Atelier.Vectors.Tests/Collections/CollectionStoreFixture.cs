using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections;

namespace Atelier.Vectors.Tests.Collections;

/// <summary>
/// What a host gives the collection store, on a temporary directory: one local location, a placement guard
/// with its audit log, a residency policy, and catalog rows that outlive the store (as a database would),
/// so that a test can close the store and open it again as a restart does.
/// </summary>
internal sealed class CollectionStoreFixture : IDisposable
{
    public const string Location = "local";
    public const string Workspace = "ws-test";

    private static readonly ResidencyPolicy DefaultPolicy = new() { Name = "default", AllowedJurisdictions = ["EU"] };
    private static readonly ResidencyPolicy UsOnlyPolicy = new() { Name = "us-only", AllowedJurisdictions = ["US"] };

    private readonly string _root = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-collections");
    private AuditLog? _audit;

    public CollectionStoreFixture()
    {
        Reopen();
    }

    public InMemoryCollectionCatalog Catalog { get; } = new();

    public PlacementGuard Guard { get; private set; } = null!;

    public StorageLocations Locations => Guard.Locations;

    public static ResidencyPolicy ResolvePolicy(string name) => name switch
    {
        "default" => DefaultPolicy,
        "us-only" => UsOnlyPolicy,
        _ => throw new InvalidOperationException($"No policy '{name}'."),
    };

    /// <summary>A store over the fixture's catalog and guard.</summary>
    public CollectionStore OpenStore(CollectionStoreOptions? options = null) =>
        new(Catalog, Guard, ResolvePolicy, TimeProvider.System, options);

    /// <summary>Opens the locations and audit log again, as a restarted process would.</summary>
    public void Reopen()
    {
        _audit?.Dispose();
        var location = new LocationDescriptor { Id = Location, Uri = "blobs/local", Country = "FR", Blocs = ["EU"] };
        _audit = new AuditLog(Path.Combine(_root, "audit"), TimeProvider.System);
        Guard = new PlacementGuard(new StorageLocations([location], _root), _audit);
    }

    public void Dispose()
    {
        _audit?.Dispose();
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}

/// <summary>Catalog rows in memory; they survive the store, as the host's database does.</summary>
internal sealed class InMemoryCollectionCatalog : ICollectionCatalog
{
    private readonly Dictionary<string, CollectionRecord> _byId = new(StringComparer.Ordinal);

    public Task<CollectionRecord?> FindAsync(string workspace, string name, CancellationToken cancellationToken)
    {
        lock (_byId)
        {
            return Task.FromResult(_byId.Values.FirstOrDefault(r => r.WorkspaceId == workspace && r.Name == name));
        }
    }

    public Task<IReadOnlyList<CollectionRecord>> ListAsync(string workspace, CancellationToken cancellationToken)
    {
        lock (_byId)
        {
            return Task.FromResult<IReadOnlyList<CollectionRecord>>([.. _byId.Values.Where(r => r.WorkspaceId == workspace).OrderBy(r => r.Name, StringComparer.Ordinal)]);
        }
    }

    public Task InsertAsync(CollectionRecord record, CancellationToken cancellationToken)
    {
        lock (_byId)
        {
            // Through the JSON the host's catalog stores, so a configuration that does not round-trip fails here.
            _byId.Add(record.Id, record with { Config = CollectionJson.DeserializeConfig(CollectionJson.Serialize(record.Config)) });
        }

        return Task.CompletedTask;
    }

    public Task DeleteAsync(string id, CancellationToken cancellationToken)
    {
        lock (_byId)
        {
            _byId.Remove(id);
        }

        return Task.CompletedTask;
    }

    public Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken)
    {
        lock (_byId)
        {
            return Task.FromResult<IReadOnlySet<string>>(_byId.Keys.ToHashSet(StringComparer.Ordinal));
        }
    }
}
