using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;
using Atelier.Testing;

namespace Atelier.Storage.Tests;

/// <summary>
/// Two on-prem French locations (<c>paris</c>, <c>lyon</c>) under one temporary directory, each
/// behind a <see cref="FaultyBlobStore"/> that counts writes, with an audit log and the placement guard.
/// </summary>
internal sealed class GuardRig : IAsyncDisposable
{
    public static readonly ResidencyPolicy EuOnPrem = new() { Name = "eu-checkpoints", AllowedJurisdictions = ["EU"], RequireOnPrem = true };

    private static readonly LocationDescriptor[] Descriptors =
    [
        new() { Id = "paris", Uri = "paris", Country = "FR", Blocs = ["EU"], OnPrem = true, Site = "paris-dc1" },
        new() { Id = "lyon", Uri = "lyon", Country = "FR", Blocs = ["EU"], OnPrem = true, Site = "lyon-dc1" },
    ];

    public GuardRig()
    {
        Directory = TestCleanup.CreateDirectory("atelier-guard");
        var stores = new List<(LocationDescriptor, IBlobStore)>();
        foreach (var d in Descriptors)
        {
            var store = new FaultyBlobStore(new LocalDirectoryBlobStore(d.Id, Path.Combine(Directory, d.Id)));
            Faults[d.Id] = store;
            stores.Add((d, store));
        }

        Audit = new AuditLog(Path.Combine(Directory, "audit"), TimeProvider.System);
        Guard = new PlacementGuard(new StorageLocations(stores), Audit);
    }

    public string Directory { get; }

    public Dictionary<string, FaultyBlobStore> Faults { get; } = new(StringComparer.Ordinal);

    public AuditLog Audit { get; }

    public PlacementGuard Guard { get; }

    /// <summary>Damages one byte of a stored chunk, as a failing disk would.</summary>
    public void FlipOneByte(string location, string hash)
    {
        var path = Path.Combine(Directory, location, "objects", ChunkStore.KeyOf(hash).Replace('/', Path.DirectorySeparatorChar));
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 3] ^= 0x40;
        File.WriteAllBytes(path, bytes);
    }

    public ValueTask DisposeAsync()
    {
        Audit.Dispose();
        TestCleanup.Delete(Directory);
        return ValueTask.CompletedTask;
    }
}
