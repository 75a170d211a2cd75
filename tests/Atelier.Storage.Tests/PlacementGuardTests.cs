using System.Security.Cryptography;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Storage.Tests;

public sealed class PlacementGuardTests : IDisposable
{
    private static readonly ResidencyPolicy EuOnly = new() { Name = "eu-only", AllowedJurisdictions = ["EU"] };
    private static readonly ResidencyPolicy Checkpoints = new() { Name = "checkpoints", AllowedJurisdictions = ["EU"], RequireOnPrem = true };

    private readonly string _data = Directory.CreateTempSubdirectory("atelier-guard").FullName;
    private readonly AuditLog _audit;
    private readonly PlacementGuard _guard;

    public PlacementGuardTests()
    {
        var locations = new StorageLocations(
            [
                new LocationDescriptor { Id = "paris", Uri = "paris", Country = "FR", Blocs = ["EU"], OnPrem = true },
                new LocationDescriptor { Id = "fra-cloud", Uri = "fra", Country = "DE", Blocs = ["EU"], OnPrem = false, Operator = "cloud" },
                new LocationDescriptor { Id = "us-east", Uri = "us", Country = "US", OnPrem = false, Operator = "cloud" },
            ],
            _data);
        _audit = new AuditLog(Path.Combine(_data, "audit"), TimeProvider.System);
        _guard = new PlacementGuard(locations, _audit);
    }

    public void Dispose() => _audit.Dispose();

    [Fact]
    public async Task RefusedPlacement_WritesZeroBytesThrowsNamingPolicyAndLocationAndIsAudited()
    {
        var artifact = new ArtifactRef("checkpoint", "ck1", "team-a");
        var error = await Assert.ThrowsAsync<PlacementRefusedException>(async () =>
            await _guard.BeginWriteAsync(artifact, EuOnly, "us-east", "key:test"));
        Assert.Equal("eu-only", error.PolicyName);
        Assert.Equal("us-east", error.LocationId);
        Assert.Contains("eu-only", error.Message, StringComparison.Ordinal);
        Assert.Contains("us-east", error.Message, StringComparison.Ordinal);

        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_data, "us"), "*", SearchOption.AllDirectories));
        var refusal = Assert.Single(_audit.Read(0, 10));
        Assert.Equal("placement_refused", refusal.Type);
        Assert.Equal("ck1", refusal.ArtifactId);
        Assert.Equal("us-east", refusal.Location);
    }

    [Fact]
    public async Task CloudOnlyCheckpoint_IsRefusedUntilAnOnPremCopyExists()
    {
        var artifact = new ArtifactRef("checkpoint", "ck2", "team-a");
        await Assert.ThrowsAsync<PlacementRefusedException>(async () => await _guard.BeginWriteAsync(artifact, Checkpoints, "fra-cloud", "system"));

        await using (var onPrem = await _guard.BeginWriteAsync(artifact, Checkpoints, "paris", "system"))
        {
            await onPrem.WriteAsync(new byte[] { 1, 2, 3 }, CancellationToken.None);
            await onPrem.CommitAsync(CancellationToken.None);
        }

        await using var replica = await _guard.BeginWriteAsync(artifact, Checkpoints, "fra-cloud", "system", existingCopies: [_guard.Locations.Describe("paris")]);
        await replica.WriteAsync(new byte[] { 1, 2, 3 }, CancellationToken.None);
        var receipt = await replica.CommitAsync(CancellationToken.None);
        Assert.Equal("fra-cloud", receipt.LocationId);
    }

    [Fact]
    public async Task AllowedPlacement_IsAuditedWithByteCountAndHash()
    {
        var bytes = RandomNumberGenerator.GetBytes(100_000);
        await using var write = await _guard.BeginWriteAsync(new ArtifactRef("file", "f1", "team-a"), EuOnly, "paris", "key:k");
        await write.WriteAsync(bytes.AsMemory(0, 40_000), CancellationToken.None);
        await write.WriteAsync(bytes.AsMemory(40_000), CancellationToken.None);
        var receipt = await write.CommitAsync(CancellationToken.None);

        Assert.Equal(bytes.Length, receipt.Bytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), receipt.Sha256);
        var placement = Assert.Single(_audit.Read(0, 10));
        Assert.Equal("placement", placement.Type);
        Assert.Equal(receipt.Sha256, placement.Sha256);
        Assert.Equal("eu-only", placement.Policy);
        Assert.True(_guard.TryOpenRead("paris", receipt.Key, out var stream));
        await using (stream)
        {
            var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            Assert.Equal(bytes, copy.ToArray());
        }
    }

    [Fact]
    public async Task Deletion_IsAudited()
    {
        var artifact = new ArtifactRef("file", "f2", "team-a");
        await using (var write = await _guard.BeginWriteAsync(artifact, EuOnly, "paris", "key:k"))
        {
            await write.WriteAsync(new byte[] { 9 }, CancellationToken.None);
            await write.CommitAsync(CancellationToken.None);
        }

        Assert.True(await _guard.DeleteAsync(artifact, "paris", "key:k"));
        Assert.Equal(["placement", "deletion"], _audit.Read(0, 10).Select(e => e.Type));
        Assert.True(_audit.Verify().Valid);
    }
}
