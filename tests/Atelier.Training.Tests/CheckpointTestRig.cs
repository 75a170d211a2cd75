using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

/// <summary>
/// Four locations under one temporary directory, each behind a <see cref="FaultyBlobStore"/>:
/// <c>paris</c> (FR/EU, on-prem), <c>lyon</c> (FR/EU, on-prem), <c>fra-cloud</c> (DE/EU, cloud)
/// and <c>us-east</c> (US, cloud). <see cref="RestartAsync"/> drops every object and reopens the
/// same directories with plain stores, as a process restart after a crash would.
/// </summary>
internal sealed class CheckpointTestRig : IAsyncDisposable
{
    public const int ChunkSize = 64 << 10;

    public static readonly LocationDescriptor Paris = new() { Id = "paris", Uri = "paris", Country = "FR", Blocs = ["EU"], OnPrem = true, Site = "paris-dc1" };
    public static readonly LocationDescriptor Lyon = new() { Id = "lyon", Uri = "lyon", Country = "FR", Blocs = ["EU"], OnPrem = true, Site = "lyon-dc1" };
    public static readonly LocationDescriptor FraCloud = new() { Id = "fra-cloud", Uri = "fra-cloud", Country = "DE", Blocs = ["EU"], OnPrem = false, Operator = "cloud" };
    public static readonly LocationDescriptor UsEast = new() { Id = "us-east", Uri = "us-east", Country = "US", OnPrem = false, Operator = "cloud" };

    public static readonly ResidencyPolicy EuOnPrem = new() { Name = "eu-checkpoints", AllowedJurisdictions = ["EU"], RequireOnPrem = true };
    public static readonly ResidencyPolicy Anywhere = new() { Name = "anywhere", AllowedJurisdictions = ["*"] };

    private readonly IReadOnlyList<LocationDescriptor> _descriptors = [Paris, Lyon, FraCloud, UsEast];

    public CheckpointTestRig(IReadOnlyList<string>? targets = null, int writeConcurrency = 4)
    {
        Directory = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-ckpt");
        Targets = targets ?? ["paris"];
        WriteConcurrency = writeConcurrency;
        Open(faulty: true);
    }

    public string Directory { get; }

    public IReadOnlyList<string> Targets { get; }

    public int WriteConcurrency { get; }

    public Dictionary<string, FaultyBlobStore> Faults { get; } = new(StringComparer.Ordinal);

    public AuditLog Audit { get; private set; } = null!;

    public PlacementGuard Guard { get; private set; } = null!;

    public CheckpointStore Store { get; private set; } = null!;

    public string RootOf(string locationId) => Path.Combine(Directory, locationId);

    public string[] FilesUnder(string locationId, string sub) =>
        System.IO.Directory.Exists(Path.Combine(RootOf(locationId), sub))
            ? System.IO.Directory.GetFiles(Path.Combine(RootOf(locationId), sub), "*", SearchOption.AllDirectories)
            : [];

    public string[] ChunkFiles(string locationId) => FilesUnder(locationId, Path.Combine("objects", "chunks"));

    /// <summary>Drops the store without cleaning anything up, and reopens the directories with plain stores.</summary>
    public async Task RestartAsync()
    {
        await Store.DisposeAsync();
        Audit.Dispose();
        Faults.Clear();
        Open(faulty: false);
    }

    public async ValueTask DisposeAsync()
    {
        await Store.DisposeAsync();
        Audit.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private void Open(bool faulty)
    {
        var stores = new List<(LocationDescriptor, IBlobStore)>();
        foreach (var d in _descriptors)
        {
            IBlobStore store = new LocalDirectoryBlobStore(d.Id, RootOf(d.Id));
            if (faulty)
            {
                var wrapper = new FaultyBlobStore(store);
                Faults[d.Id] = wrapper;
                store = wrapper;
            }

            stores.Add((d, store));
        }

        Audit = new AuditLog(Path.Combine(Directory, "audit"), TimeProvider.System);
        Guard = new PlacementGuard(new StorageLocations(stores), Audit);
        Store = new CheckpointStore(Guard, new CheckpointStoreOptions { Locations = Targets, ChunkSize = ChunkSize, WriteConcurrency = WriteConcurrency });
    }
}
