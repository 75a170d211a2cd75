using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

public sealed class CheckpointRetentionTests
{
    private static readonly CheckpointJob Job = new("team-a", "ftjob-keep", CheckpointTestRig.EuOnPrem);

    [Fact]
    public async Task Retention_KeepsTheLastKAndTheBestByValidationLoss_AndFreesOnlyUnreferencedChunks()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 31);
        double[] validLoss = [2.0, 1.1, 0.7, 0.9, 1.3, 1.2];
        var saved = new Dictionary<long, Dictionary<string, byte[]>>();
        for (var i = 0; i < validLoss.Length; i++)
        {
            var step = (i + 1) * 100L;
            state.Step((int)step);
            saved[step] = state.Copy();
            await (await rig.Store.SaveAsync(Job, step, state.ToContent(), new CheckpointMetrics { TrainLoss = 3 - i, ValidLoss = validLoss[i] })).Durable;
        }

        var deleted = await rig.Store.ApplyRetentionAsync(Job.JobId, new RetentionPolicy(KeepLast: 2, KeepBest: 1));

        Assert.Equal([100L, 200L, 400L], deleted);
        var kept = await rig.Store.ListAsync(Job.JobId);
        Assert.Equal([300L, 500L, 600L], kept.Select(c => c.Step));
        foreach (var step in kept.Select(c => c.Step))
        {
            CheckpointTrainingState.AssertRestoredEquals(saved[step], await rig.Store.RestoreAsync(Job.JobId, step));
        }

        // The shared base survives; the deleted checkpoints' own chunks are gone.
        var live = kept.SelectMany(c => c.Entries).SelectMany(e => e.Chunks).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(live.Count, rig.ChunkFiles("paris").Length);
        Assert.Equal(3, rig.Audit.Read(0, 100_000).Count(e => e.Type == "deletion" && e.ArtifactKind == "checkpoint"));
    }

    [Fact]
    public async Task Retention_WithFewerCheckpointsThanKept_DeletesNothing()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 32, baseChunks: 1);
        await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;

        Assert.Empty(await rig.Store.ApplyRetentionAsync(Job.JobId, new RetentionPolicy(KeepLast: 3, KeepBest: 1)));
        Assert.Single(await rig.Store.ListAsync(Job.JobId));
    }

    [Fact]
    public async Task Delete_FreesOnlyChunksThatNoOtherCheckpointOfAnyJobReferences()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 33);
        state.Step(1);
        await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;

        // Another job on the same base model shares its chunks.
        var other = Job with { JobId = "ftjob-other" };
        state.Step(2);
        var otherState = state.Copy();
        await (await rig.Store.SaveAsync(other, 1, state.ToContent())).Durable;

        Assert.True(await rig.Store.DeleteAsync(Job.JobId, 1));
        Assert.False(await rig.Store.DeleteAsync(Job.JobId, 1));

        Assert.Empty(await rig.Store.ListAsync(Job.JobId));
        CheckpointTrainingState.AssertRestoredEquals(otherState, await rig.Store.RestoreAsync(other.JobId, 1));
        var live = (await rig.Store.ListAsync(other.JobId)).SelectMany(c => c.Entries).SelectMany(e => e.Chunks).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(live.Count, rig.ChunkFiles("paris").Length);
    }
}
