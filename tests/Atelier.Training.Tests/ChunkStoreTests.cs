using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;

namespace Atelier.Training.Tests;

public sealed class ChunkStoreTests
{
    private static readonly ArtifactRef Artifact = new("checkpoint", "job@1", "team-a");

    [Fact]
    public async Task PutIfAbsent_OfBytesAlreadyThere_WritesNothing()
    {
        await using var rig = new CheckpointTestRig();
        var chunks = new ChunkStore(rig.Guard);
        var bytes = new byte[10_000];
        new Random(41).NextBytes(bytes);
        var hash = ChunkStore.HashOf(bytes);

        Assert.Equal(ChunkPutOutcome.Written, await chunks.PutIfAbsentAsync(Artifact, CheckpointTestRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None));
        Assert.Equal(ChunkPutOutcome.AlreadyPresent, await chunks.PutIfAbsentAsync(Artifact, CheckpointTestRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None));

        Assert.Equal(1, rig.Faults["paris"].Writes);
        Assert.Equal(bytes.Length, chunks.GetLength("paris", hash));
        Assert.Equal([hash], chunks.EnumerateHashes("paris"));
    }

    [Fact]
    public async Task Read_OfADamagedChunk_ReportsHashMismatch_AndOfAnAbsentOneMissing()
    {
        await using var rig = new CheckpointTestRig();
        var chunks = new ChunkStore(rig.Guard);
        var bytes = new byte[5000];
        new Random(42).NextBytes(bytes);
        var hash = ChunkStore.HashOf(bytes);
        await chunks.PutIfAbsentAsync(Artifact, CheckpointTestRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None);
        var buffer = new byte[bytes.Length];

        Assert.Equal(ChunkReadStatus.Ok, await chunks.ReadAsync("paris", hash, buffer, CancellationToken.None));
        Assert.Equal(bytes, buffer);
        CheckpointStoreTests.FlipOneByte(rig, "paris", hash);
        Assert.Equal(ChunkReadStatus.HashMismatch, await chunks.ReadAsync("paris", hash, buffer, CancellationToken.None));
        Assert.Equal(ChunkReadStatus.Missing, await chunks.ReadAsync("lyon", hash, buffer, CancellationToken.None));
        Assert.Equal(ChunkReadStatus.WrongLength, await chunks.ReadAsync("paris", hash, new byte[10], CancellationToken.None));
    }

    [Fact]
    public async Task Sweep_DeletesOnlyChunksOutsideTheLiveSet_AndAuditsEachDeletion()
    {
        await using var rig = new CheckpointTestRig();
        var chunks = new ChunkStore(rig.Guard);
        var hashes = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            var bytes = new byte[1000 + i];
            new Random(43 + i).NextBytes(bytes);
            var hash = ChunkStore.HashOf(bytes);
            hashes.Add(hash);
            await chunks.PutIfAbsentAsync(Artifact, CheckpointTestRig.EuOnPrem, "paris", "test", null, hash, bytes, CancellationToken.None);
        }

        var result = await chunks.SweepAsync("paris", new HashSet<string>([hashes[1]]), "test", CancellationToken.None);

        Assert.Equal(2, result.Chunks);
        Assert.Equal(1000 + 1002, result.Bytes);
        Assert.Equal([hashes[1]], chunks.EnumerateHashes("paris"));
        Assert.Equal(2, rig.Audit.Read(0, 100).Count(e => e.Type == "deletion" && e.ArtifactKind == "chunk"));
    }

    [Fact]
    public void KeyOf_RejectsNamesThatAreNotSha256Hex()
    {
        Assert.Throws<ArgumentException>(() => ChunkStore.KeyOf("../../etc/passwd"));
        Assert.Throws<ArgumentException>(() => ChunkStore.KeyOf(new string('A', 64)));
        Assert.StartsWith("chunks/ab/ab", ChunkStore.KeyOf("ab" + new string('0', 62)), StringComparison.Ordinal);
    }
}
