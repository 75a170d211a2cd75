using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;
using Atelier.Testing;

namespace Atelier.Storage.Tests;

public sealed class ChunkStoreTests
{
    private static readonly ArtifactRef Artifact = new("checkpoint", "job@1", "team-a");

    [Fact]
    public async Task PutIfAbsent_OfBytesAlreadyThere_WritesNothing()
    {
        await using var rig = new GuardRig();
        var chunks = new ChunkStore(rig.Guard);
        var bytes = new byte[10_000];
        new Random(41).NextBytes(bytes);
        var hash = ChunkStore.HashOf(bytes);

        Assert.Equal(ChunkPutOutcome.Written, await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None));
        Assert.Equal(ChunkPutOutcome.AlreadyPresent, await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None));

        Assert.Equal(1, rig.Faults["paris"].Writes);
        Assert.Equal(bytes.Length, await chunks.GetLengthAsync("paris", hash, CancellationToken.None));
        Assert.Equal([hash], await chunks.EnumerateHashesAsync("paris", CancellationToken.None).ToListAsync());
    }

    [Fact]
    public async Task Read_OfADamagedChunk_ReportsHashMismatch_AndOfAnAbsentOneMissing()
    {
        await using var rig = new GuardRig();
        var chunks = new ChunkStore(rig.Guard);
        var bytes = new byte[5000];
        new Random(42).NextBytes(bytes);
        var hash = ChunkStore.HashOf(bytes);
        await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None);
        var buffer = new byte[bytes.Length];

        Assert.Equal(ChunkReadStatus.Ok, await chunks.ReadAsync("paris", hash, buffer, CancellationToken.None));
        Assert.Equal(bytes, buffer);
        rig.FlipOneByte("paris", hash);
        Assert.Equal(ChunkReadStatus.HashMismatch, await chunks.ReadAsync("paris", hash, buffer, CancellationToken.None));
        Assert.Equal(ChunkReadStatus.Missing, await chunks.ReadAsync("lyon", hash, buffer, CancellationToken.None));
        Assert.Equal(ChunkReadStatus.WrongLength, await chunks.ReadAsync("paris", hash, new byte[10], CancellationToken.None));
    }

    [Fact]
    public async Task Sweep_DeletesOnlyChunksOutsideTheLiveSet_AndAuditsEachDeletion()
    {
        await using var rig = new GuardRig();
        var chunks = new ChunkStore(rig.Guard);
        var hashes = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var bytes = new byte[1000 + i];
            new Random(43 + i).NextBytes(bytes);
            var hash = ChunkStore.HashOf(bytes);
            hashes.Add(hash);
            await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None);
        }

        var result = await chunks.SweepAsync("paris", new HashSet<string>([hashes[1]]), "test", CancellationToken.None);

        Assert.Equal(2, result.Chunks);
        Assert.Equal(1000 + 1002, result.Bytes);
        Assert.Equal([hashes[1]], await chunks.EnumerateHashesAsync("paris", CancellationToken.None).ToListAsync());
        Assert.Equal(2, rig.Audit.Read(0, 100).Count(e => e.Type == "deletion" && e.ArtifactKind == "chunk"));
    }

    [Fact]
    public void KeyOf_RejectsNamesThatAreNotSha256Hex()
    {
        Assert.Throws<ArgumentException>(() => ChunkStore.KeyOf("../../etc/passwd"));
        Assert.Throws<ArgumentException>(() => ChunkStore.KeyOf(new string('A', 64)));
        Assert.StartsWith("chunks/ab/ab", ChunkStore.KeyOf("ab" + new string('0', 62)), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PutIfAbsent_WithBytesThatDoNotHashToTheGivenName_IsRejected_AndWritesAndAuditsNothing()
    {
        await using var rig = new GuardRig();
        var chunks = new ChunkStore(rig.Guard);
        var bytes = new byte[10_000];
        new Random(44).NextBytes(bytes);
        var wrong = ChunkStore.HashOf(bytes.AsSpan(1));

        var error = await Assert.ThrowsAsync<ArgumentException>(async () =>
            await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, wrong, bytes, CancellationToken.None));

        Assert.Contains(wrong, error.Message, StringComparison.Ordinal);
        Assert.Equal(0, rig.Faults["paris"].Writes);
        Assert.Empty(await chunks.EnumerateHashesAsync("paris", CancellationToken.None).ToListAsync());
        Assert.Empty(rig.Audit.Read(0, 10));
    }

    [Fact]
    public async Task Batch_WritesOnlyChunksNotAlreadyThere_MakesThemDurableOnComplete_AndAuditsOnePlacement()
    {
        await using var rig = new GuardRig();
        var chunks = new ChunkStore(rig.Guard);
        var contents = Enumerable.Range(0, 6).Select(i =>
        {
            var bytes = new byte[3000 + i];
            new Random(50 + i).NextBytes(bytes);
            return HashedContent.Compute(bytes);
        }).ToList();
        await chunks.PutIfAbsentAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, contents[0], CancellationToken.None);
        rig.Faults["paris"].ResetCounters();
        var before = rig.Audit.LastSeq;

        PlacementBatchReceipt receipt;
        await using (var batch = await chunks.BeginBatchAsync(Artifact, GuardRig.EuOnPrem, "paris", "test", null, commitConcurrency: 3, CancellationToken.None))
        {
            var outcomes = new List<ChunkPutOutcome>();
            foreach (var content in contents)
            {
                outcomes.Add(await batch.PutIfAbsentAsync(content, CancellationToken.None));
            }

            Assert.Equal([ChunkPutOutcome.AlreadyPresent, .. Enumerable.Repeat(ChunkPutOutcome.Written, 5)], outcomes);
            receipt = await batch.CompleteAsync(CancellationToken.None);
        }

        Assert.Equal(5, receipt.BlobsWritten);
        Assert.Equal(5, rig.Faults["paris"].Commits);
        Assert.Equal(contents.Select(c => c.Sha256).Order(StringComparer.Ordinal), (await chunks.EnumerateHashesAsync("paris", CancellationToken.None).ToListAsync()).Order(StringComparer.Ordinal));
        var buffer = new byte[contents[3].Bytes.Length];
        Assert.Equal(ChunkReadStatus.Ok, await chunks.ReadAsync("paris", contents[3].Sha256, buffer, CancellationToken.None));
        var placement = Assert.Single(rig.Audit.Read(before, 10));
        Assert.Equal("placement", placement.Type);
        Assert.Equal(contents.Skip(1).Sum(c => (long)c.Bytes.Length), placement.Bytes);
    }
}
