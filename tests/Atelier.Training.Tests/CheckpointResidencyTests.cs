using Atelier.Core.Errors;
using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

public sealed class CheckpointResidencyTests
{
    [Fact]
    public async Task EuOnlyCheckpoint_NeverWritesAByteToANonEuReplicaTarget_AndTheRefusalIsAudited()
    {
        // us-east is configured as a replica target, before an allowed one.
        await using var rig = new CheckpointTestRig(["paris", "us-east", "fra-cloud"]);
        var job = new CheckpointJob("team-a", "ftjob-eu", CheckpointTestRig.EuOnPrem with { MinReplicas = 2 });
        var state = new CheckpointTrainingState(seed: 21);
        state.Step(1);
        var expected = state.Copy();

        var result = await (await rig.Store.SaveAsync(job, 1, state.ToContent())).Durable;

        Assert.Equal(["paris", "fra-cloud"], result.Checkpoint.Locations);
        Assert.Equal(["us-east"], result.RefusedLocations);
        Assert.Equal(0, rig.Faults["us-east"].Writes);
        Assert.Empty(Directory.GetFiles(rig.RootOf("us-east"), "*", SearchOption.AllDirectories));
        var refusal = Assert.Single(rig.Audit.Read(0, 10_000), e => e.Type == "placement_refused");
        Assert.Equal("us-east", refusal.Location);
        Assert.Equal("ftjob-eu@1", refusal.ArtifactId);
        Assert.Equal("eu-checkpoints", refusal.Policy);
        Assert.DoesNotContain(rig.Audit.Read(0, 10_000), e => e.Type == "placement" && e.Location == "us-east");
        CheckpointTrainingState.AssertRestoredEquals(expected, await rig.Store.RestoreAsync(job.JobId, 1));
    }

    [Fact]
    public async Task NeverCloudOnly_TheOnPremCopyIsCommittedBeforeAnyCloudByte_EvenWhenCloudIsListedFirst()
    {
        await using var rig = new CheckpointTestRig(["fra-cloud", "paris"]);
        var job = new CheckpointJob("team-a", "ftjob-order", CheckpointTestRig.EuOnPrem with { MinReplicas = 2 });
        var state = new CheckpointTrainingState(seed: 22);

        await (await rig.Store.SaveAsync(job, 1, state.ToContent())).Durable;

        var placements = rig.Audit.Read(0, 10_000).Where(e => e.Type == "placement").ToList();
        var lastParis = placements.FindLastIndex(e => e.Location == "paris");
        var firstCloud = placements.FindIndex(e => e.Location == "fra-cloud");
        Assert.True(firstCloud > lastParis, "every paris placement, manifest included, precedes the first cloud placement");
        var manifest = Directory.GetFiles(Path.Combine(rig.RootOf("paris"), "objects", "checkpoints"), "*.json", SearchOption.AllDirectories).Single();
        Assert.Equal(new FileInfo(manifest).Length, placements[lastParis].Bytes);
        Assert.DoesNotContain(rig.Audit.Read(0, 10_000), e => e.Type == "placement_refused");
    }

    [Fact]
    public async Task PolicyThatTheConfiguredLocationsCannotMeet_FailsCleanlyBeforeWritingAnything()
    {
        // Cloud-only configuration for a never-cloud-only policy.
        await using var rig = new CheckpointTestRig(["fra-cloud", "us-east"]);
        var job = new CheckpointJob("team-a", "ftjob-cloud", CheckpointTestRig.EuOnPrem);
        var state = new CheckpointTrainingState(seed: 23);

        var save = await rig.Store.SaveAsync(job, 1, state.ToContent());
        var error = await Assert.ThrowsAsync<PlacementRefusedException>(() => save.Durable);

        Assert.Equal("eu-checkpoints", error.PolicyName);
        Assert.Contains("on-prem", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, rig.Faults["fra-cloud"].Writes + rig.Faults["us-east"].Writes);
        Assert.Equal(2, rig.Audit.Read(0, 100).Count(e => e.Type == "placement_refused"));
        Assert.Empty(await rig.Store.ListAsync(job.JobId));
    }

    [Fact]
    public async Task ReplicaCountAboveTheAllowedLocations_FailsBeforeWritingAnything()
    {
        await using var rig = new CheckpointTestRig(["paris", "us-east"]);
        var job = new CheckpointJob("team-a", "ftjob-min", CheckpointTestRig.EuOnPrem with { MinReplicas = 2 });
        var save = await rig.Store.SaveAsync(job, 1, new CheckpointTrainingState(seed: 24).ToContent());

        var error = await Assert.ThrowsAsync<PlacementRefusedException>(() => save.Durable);

        Assert.Contains("needs 2 copies", error.Message, StringComparison.Ordinal);
        Assert.Equal(0, rig.Faults["paris"].Writes);
    }

    [Fact]
    public async Task DiskFullDuringASave_FailsThatSaveCleanly_AndThePreviousCheckpointIsIntact()
    {
        await using var rig = new CheckpointTestRig();
        var job = new CheckpointJob("team-a", "ftjob-full", CheckpointTestRig.EuOnPrem);
        var state = new CheckpointTrainingState(seed: 25);
        state.Step(1);
        var first = state.Copy();
        await (await rig.Store.SaveAsync(job, 1, state.ToContent())).Durable;
        var chunksAfterFirst = rig.ChunkFiles("paris").Length;

        // Room for a few more chunks, not for a whole checkpoint.
        rig.Faults["paris"].CapacityBytes = 3 * CheckpointTestRig.ChunkSize;
        state.Step(2);
        var save = await rig.Store.SaveAsync(job, 2, state.ToContent());

        var error = await Assert.ThrowsAsync<StorageUnavailableException>(() => save.Durable);
        Assert.Contains("ftjob-full@2", error.Message, StringComparison.Ordinal);
        Assert.Contains("full", error.Message, StringComparison.Ordinal);
        Assert.Equal([1L], (await rig.Store.ListAsync(job.JobId)).Select(c => c.Step));
        CheckpointTrainingState.AssertRestoredEquals(first, await rig.Store.RestoreAsync(job.JobId, 1));
        Assert.Equal(chunksAfterFirst, rig.ChunkFiles("paris").Length);
        Assert.Empty(rig.FilesUnder("paris", "tmp"));

        // Space freed: the next checkpoint saves.
        rig.Faults["paris"].CapacityBytes = null;
        state.Step(3);
        await (await rig.Store.SaveAsync(job, 3, state.ToContent())).Durable;
    }

    [Fact]
    public async Task DiskFullAtAReplica_TheSaveSucceedsWhenThePolicyIsStillMet_AndTheReplicaKeepsNoOrphans()
    {
        await using var rig = new CheckpointTestRig(["paris", "lyon"]);
        var job = new CheckpointJob("team-a", "ftjob-replica", CheckpointTestRig.EuOnPrem);
        rig.Faults["lyon"].CapacityBytes = 2 * CheckpointTestRig.ChunkSize;
        var state = new CheckpointTrainingState(seed: 26);

        var result = await (await rig.Store.SaveAsync(job, 1, state.ToContent())).Durable;

        Assert.Equal(["paris"], result.Checkpoint.Locations);
        var lyon = Assert.Single(result.Locations, l => l.LocationId == "lyon");
        Assert.False(lyon.Committed);
        Assert.Contains("full", lyon.Error, StringComparison.Ordinal);
        Assert.Empty(rig.ChunkFiles("lyon"));
    }
}
