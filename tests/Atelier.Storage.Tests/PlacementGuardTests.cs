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

    private readonly string _data = Atelier.Testing.TestCleanup.CreateDirectory("atelier-guard");
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

    public void Dispose()
    {
        _audit.Dispose();
        Atelier.Testing.TestCleanup.Delete(_data);
    }

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
        var stream = await _guard.OpenReadAsync("paris", receipt.Key, CancellationToken.None);
        Assert.NotNull(stream);
        await using (stream)
        {
            var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            Assert.Equal(bytes, copy.ToArray());
        }
    }

    [Fact]
    public async Task BytesHashedApartFromTheirWrite_GiveTheSameReceipt_AndAMissingHashRefusesTheCommit()
    {
        // The upload path writes a chunk and hashes it on two threads; the receipt must be the
        // same as for the inline path, and a blob whose hash missed bytes must never commit.
        var bytes = RandomNumberGenerator.GetBytes(100_000);
        await using (var write = await _guard.BeginWriteAsync(new ArtifactRef("file", "f-split", "team-a"), EuOnly, "paris", "key:k"))
        {
            await write.WriteUnhashedAsync(bytes.AsMemory(0, 40_000), CancellationToken.None);
            write.AppendToHash(bytes.AsSpan(0, 40_000));
            await write.WriteUnhashedAsync(bytes.AsMemory(40_000), CancellationToken.None);
            write.AppendToHash(bytes.AsSpan(40_000));
            var receipt = await write.CommitAsync(CancellationToken.None);
            Assert.Equal(bytes.Length, receipt.Bytes);
            Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), receipt.Sha256);
        }

        await using (var missed = await _guard.BeginWriteAsync(new ArtifactRef("file", "f-short", "team-a"), EuOnly, "paris", "key:k"))
        {
            await missed.WriteUnhashedAsync(bytes, CancellationToken.None);
            missed.AppendToHash(bytes.AsSpan(0, 99_999));
            var error = await Assert.ThrowsAsync<InvalidOperationException>(async () => await missed.CommitAsync(CancellationToken.None));
            Assert.Contains("99999 bytes of the 100000", error.Message, StringComparison.Ordinal);
            Assert.False(missed.IsCommitted);
        }

        // Only the first blob was placed; the refused one left no bytes and no audit record.
        Assert.Equal("f-split", Assert.Single(_audit.Read(0, 10)).ArtifactId);
        Assert.Single(Directory.EnumerateFiles(Path.Combine(_data, "paris"), "*", SearchOption.AllDirectories));
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

    [Fact]
    public void HashedContent_CanOnlyBeMadeByHashingTheBytes_SoAWrongHashCannotBePairedWithThem()
    {
        // No constructor a caller could hand an asserted hash to: Compute and TryVerify are the only ways in.
        Assert.Empty(typeof(HashedContent).GetConstructors());
        var bytes = RandomNumberGenerator.GetBytes(5000);
        var content = HashedContent.Compute(bytes);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(bytes)), content.Sha256);

        Assert.True(HashedContent.TryVerify(bytes, content.Sha256, out var verified));
        Assert.Equal(content.Sha256, verified.Sha256);
        var wrong = Convert.ToHexStringLower(SHA256.HashData(new byte[] { 1 }));
        Assert.False(HashedContent.TryVerify(bytes, wrong, out var refused));
        Assert.Null(refused);
    }

    [Fact]
    public async Task PlaceHashedContent_WritesTheBytes_AndAuditsTheirHashWithoutRehashing()
    {
        var bytes = RandomNumberGenerator.GetBytes(70_000);
        var content = HashedContent.Compute(bytes);

        var receipt = await _guard.PlaceAsync(new ArtifactRef("file", "f3", "team-a"), EuOnly, "paris", "key:k", null, "file/f3", content, CancellationToken.None);

        Assert.Equal(content.Sha256, receipt.Sha256);
        Assert.Equal(bytes.Length, receipt.Bytes);
        var placement = Assert.Single(_audit.Read(0, 10));
        Assert.Equal("placement", placement.Type);
        Assert.Equal(content.Sha256, placement.Sha256);
        Assert.Equal(bytes, await ReadAsync("paris", "file/f3"));
        await Assert.ThrowsAsync<PlacementRefusedException>(async () =>
            await _guard.PlaceAsync(new ArtifactRef("file", "f3", "team-a"), EuOnly, "us-east", "key:k", null, "file/f3", content, CancellationToken.None));
        Assert.Equal(["placement", "placement_refused"], _audit.Read(0, 10).Select(e => e.Type));
    }

    [Fact]
    public async Task Batch_CommitsEveryBlobDurably_AndAuditsThemAsOnePlacementWithCountBytesAndDigest()
    {
        var artifact = new ArtifactRef("checkpoint", "job@1", "team-a");
        var contents = Enumerable.Range(0, 20).Select(i => HashedContent.Compute(RandomNumberGenerator.GetBytes(1000 + i))).ToList();

        PlacementBatchReceipt receipt;
        await using (var batch = await _guard.BeginBatchAsync(artifact, Checkpoints, "paris", "system", null, commitConcurrency: 4, CancellationToken.None))
        {
            await Parallel.ForEachAsync(contents, async (c, ct) => await batch.StageAsync("blobs/" + c.Sha256, c, ct));
            receipt = await batch.CompleteAsync(CancellationToken.None);
        }

        Assert.Equal(20, receipt.BlobsWritten);
        Assert.Equal(contents.Sum(c => (long)c.Bytes.Length), receipt.BytesWritten);
        foreach (var c in contents)
        {
            Assert.Equal(c.Bytes.ToArray(), await ReadAsync("paris", "blobs/" + c.Sha256));
        }

        var placement = Assert.Single(_audit.Read(0, 100));
        Assert.Equal("placement", placement.Type);
        Assert.Equal("job@1", placement.ArtifactId);
        Assert.Equal("checkpoints", placement.Policy);
        Assert.Equal(receipt.BytesWritten, placement.Bytes);
        Assert.Contains("20 content-addressed blobs", placement.Detail, StringComparison.Ordinal);

        // The digest can be recomputed from the names alone (e.g. from a manifest's chunk list).
        var names = string.Concat(contents.Select(c => c.Sha256).Order(StringComparer.Ordinal).Select(h => h + "\n"));
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(names))), placement.Sha256);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_data, "paris", "tmp")));
    }

    [Fact]
    public async Task Batch_AtAForbiddenLocation_IsRefusedAndAuditedOnce_BeforeAnyByte()
    {
        var artifact = new ArtifactRef("checkpoint", "job@2", "team-a");

        var error = await Assert.ThrowsAsync<PlacementRefusedException>(async () =>
            await _guard.BeginBatchAsync(artifact, EuOnly, "us-east", "system", null, commitConcurrency: 4, CancellationToken.None));

        Assert.Equal("us-east", error.LocationId);
        var refusal = Assert.Single(_audit.Read(0, 10));
        Assert.Equal("placement_refused", refusal.Type);
        Assert.Equal("job@2", refusal.ArtifactId);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_data, "us"), "*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task Batch_KeyThatDoesNotNameItsContent_IsRejected_AndNothingIsWritten()
    {
        var content = HashedContent.Compute(RandomNumberGenerator.GetBytes(100));
        var other = HashedContent.Compute(RandomNumberGenerator.GetBytes(100));
        await using var batch = await _guard.BeginBatchAsync(new ArtifactRef("checkpoint", "job@3", "team-a"), EuOnly, "paris", "system", null, 2, CancellationToken.None);

        await Assert.ThrowsAsync<ArgumentException>(async () => await batch.StageAsync("blobs/" + other.Sha256, content, CancellationToken.None));
        var receipt = await batch.CompleteAsync(CancellationToken.None);

        Assert.Equal(0, receipt.BlobsWritten);
        Assert.Empty(await _guard.Locations.ListKeysAsync("paris", "blobs/", CancellationToken.None).ToListAsync());
        Assert.Empty(_audit.Read(0, 10));
    }

    [Fact]
    public async Task Batch_ThatLosesTheRaceForAKey_CountsItAsAlreadyPresent()
    {
        // Two writes of the same content-addressed key: one rename wins, the other finds the key
        // taken, and content addressing says that copy holds the same bytes.
        var content = HashedContent.Compute(RandomNumberGenerator.GetBytes(4096));
        await using var batch = await _guard.BeginBatchAsync(new ArtifactRef("checkpoint", "job@4", "team-a"), EuOnly, "paris", "system", null, 2, CancellationToken.None);

        await batch.StageAsync("blobs/" + content.Sha256, content, CancellationToken.None);
        await batch.StageAsync("blobs/" + content.Sha256, content, CancellationToken.None);
        var receipt = await batch.CompleteAsync(CancellationToken.None);

        Assert.Equal(1, receipt.BlobsWritten);
        Assert.Equal(1, receipt.BlobsAlreadyPresent);
        Assert.Equal(content.Bytes.ToArray(), await ReadAsync("paris", "blobs/" + content.Sha256));
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_data, "paris", "tmp")));
    }

    [Fact]
    public async Task Batch_DisposedWithoutCompleting_LeavesNoPartialWrite_AndAuditsWhateverItCommittedAsIncomplete()
    {
        var contents = Enumerable.Range(0, 8).Select(i => HashedContent.Compute(RandomNumberGenerator.GetBytes(2000 + i))).ToList();
        await using (var batch = await _guard.BeginBatchAsync(new ArtifactRef("checkpoint", "job@5", "team-a"), EuOnly, "paris", "system", null, 2, CancellationToken.None))
        {
            foreach (var c in contents)
            {
                await batch.StageAsync("blobs/" + c.Sha256, c, CancellationToken.None);
            }
        }

        // Whatever the committers reached before the disposal is committed and audited; the rest is gone.
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_data, "paris", "tmp")));
        var committed = await _guard.Locations.ListKeysAsync("paris", "blobs/", CancellationToken.None).ToListAsync();
        var events = _audit.Read(0, 10);
        if (committed.Count == 0)
        {
            Assert.Empty(events);
        }
        else
        {
            var placement = Assert.Single(events);
            Assert.Contains("incomplete", placement.Detail, StringComparison.Ordinal);
            Assert.Contains($"{committed.Count} content-addressed blobs", placement.Detail, StringComparison.Ordinal);
            Assert.Equal(committed.Sum(k => contents.Single(c => k.EndsWith(c.Sha256, StringComparison.Ordinal)).Bytes.Length), placement.Bytes);
        }
    }

    private async Task<byte[]> ReadAsync(string locationId, string key)
    {
        var stream = await _guard.OpenReadAsync(locationId, key, CancellationToken.None);
        Assert.NotNull(stream);
        await using (stream)
        {
            var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            return copy.ToArray();
        }
    }
}
