using System.Security.Cryptography;
using Atelier.Storage.Placement;

namespace Atelier.Storage.Tests;

public sealed class PlacementBatchTests
{
    [Fact]
    public async Task Batch_AwaitsAsynchronousCommitsOnItsOwnThreads_AndStagingWaitsWhileTheyAreHeld()
    {
        await using var rig = new GuardRig();
        var paris = rig.Faults["paris"];
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        paris.CommitGate = gate;
        var contents = Enumerable.Range(0, 12).Select(i => HashedContent.Compute(RandomNumberGenerator.GetBytes(500 + i))).ToList();
        await using var batch = await rig.Guard.BeginBatchAsync(new ArtifactRef("checkpoint", "job@1", "team-a"), GuardRig.EuOnPrem, "paris", "system", null, commitConcurrency: 2, CancellationToken.None);

        // Two committers each hold a commit at the gate (truly asynchronous), and the channel, bounded
        // by the commit concurrency, holds two more: the fifth write must wait for a commit to finish.
        for (var i = 0; i < 4; i++)
        {
            await batch.StageAsync("blobs/" + contents[i].Sha256, contents[i], CancellationToken.None);
        }

        var fifth = batch.StageAsync("blobs/" + contents[4].Sha256, contents[4], CancellationToken.None).AsTask();
        Assert.False(fifth.IsCompleted);
        Assert.Equal(0, paris.Commits);

        gate.SetResult();
        await fifth;
        foreach (var c in contents.Skip(5))
        {
            await batch.StageAsync("blobs/" + c.Sha256, c, CancellationToken.None);
        }

        var receipt = await batch.CompleteAsync(CancellationToken.None);

        Assert.Equal(12, receipt.BlobsWritten);
        Assert.Equal(12, paris.Commits);

        // Every commit resumed after the gate on its committer's thread, not on the thread pool,
        // where a local store's fsyncs would hold pool threads.
        Assert.Equal(0, paris.CommitsOnPoolThreads);
        Assert.Equal(12, (await rig.Guard.Locations.ListKeysAsync("paris", "blobs/", CancellationToken.None).ToListAsync()).Count);
    }

    [Fact]
    public async Task Batch_WithoutGates_CommitsOffTheThreadPool()
    {
        await using var rig = new GuardRig();
        var paris = rig.Faults["paris"];
        var contents = Enumerable.Range(0, 16).Select(i => HashedContent.Compute(RandomNumberGenerator.GetBytes(300 + i))).ToList();
        await using var batch = await rig.Guard.BeginBatchAsync(new ArtifactRef("checkpoint", "job@2", "team-a"), GuardRig.EuOnPrem, "paris", "system", null, commitConcurrency: 4, CancellationToken.None);

        await Parallel.ForEachAsync(contents, async (c, ct) => await batch.StageAsync("blobs/" + c.Sha256, c, ct));
        var receipt = await batch.CompleteAsync(CancellationToken.None);

        Assert.Equal(16, receipt.BlobsWritten);
        Assert.Equal(0, paris.CommitsOnPoolThreads);
    }
}
