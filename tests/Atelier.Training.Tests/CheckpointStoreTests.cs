using Atelier.Core.Errors;
using Atelier.Storage.Chunks;
using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

public sealed class CheckpointStoreTests
{
    private static readonly CheckpointJob Job = new("team-a", "ftjob-1", CheckpointTestRig.EuOnPrem);

    [Fact]
    public async Task Restore_AfterSave_IsBitIdenticalWithEntriesAndMetrics()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 1);
        state.Step(100);
        var expected = state.Copy();
        var metrics = new CheckpointMetrics { TrainLoss = 1.25, ValidLoss = 1.5, ValidMeanTokenAccuracy = 0.61, Extra = new Dictionary<string, double> { ["lr"] = 1e-4 } };

        var save = await rig.Store.SaveAsync(Job, 100, state.ToContent(), metrics);
        var result = await save.Durable;

        Assert.Equal(["paris"], result.Checkpoint.Locations);
        var restored = await rig.Store.RestoreAsync(Job.JobId, 100);
        CheckpointTrainingState.AssertRestoredEquals(expected, restored);
        Assert.Equal(metrics.ValidLoss, restored.Info.Metrics.ValidLoss);
        Assert.Equal(1e-4, restored.Info.Metrics.Extra!["lr"]);
        var adapter = restored.Info.Entries.Single(e => e.Name == "adapter/lora_A");
        Assert.Equal("F32", adapter.DType);
        Assert.Equal([(long)state.Adapter.Length], adapter.Shape);
        Assert.Equal(CheckpointEntryKind.Blob, restored.Info.Entries.Single(e => e.Name == "rng/state").Kind);

        var listed = Assert.Single(await rig.Store.ListAsync(Job.JobId));
        Assert.Equal(100, listed.Step);
        Assert.Equal("ftjob-1@100", listed.Id);
        Assert.Equal(state.Copy().Values.Sum(v => (long)v.Length), listed.TotalBytes);
    }

    [Fact]
    public async Task SuccessiveCheckpoints_WhereOnlyAdaptersAndOptimiserChange_WriteOnlyTheirChunks()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 2);
        state.Step(1);
        var first = await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;
        var paris = rig.Faults["paris"];
        var afterFirst = paris.BytesCommitted;
        Assert.True(afterFirst >= state.Base.Length + state.TrainableBytes, "the first checkpoint writes everything");

        for (var step = 2; step <= 4; step++)
        {
            state.Step(step);
            paris.ResetCounters();
            var result = await (await rig.Store.SaveAsync(Job, step, state.ToContent())).Durable;

            // Only the trainable state and the manifest reach the disk; the base is referenced.
            var outcome = Assert.Single(result.Locations);
            Assert.Equal(state.Base.Length, outcome.BytesReused);
            Assert.True(paris.BytesCommitted < state.TrainableBytes + (64 << 10), $"step {step} wrote {paris.BytesCommitted} bytes for {state.TrainableBytes} trainable bytes");
            Assert.True(paris.BytesCommitted >= state.TrainableBytes);
        }

        // Four checkpoints, one copy of the base.
        var chunkBytes = rig.ChunkFiles("paris").Sum(f => new FileInfo(f).Length);
        Assert.True(chunkBytes < state.Base.Length + (4 * state.TrainableBytes) + (64 << 10));
        Assert.Equal(first.Checkpoint.Entries[0].Chunks, (await rig.Store.GetAsync(Job.JobId, 4))!.Entries[0].Chunks);
    }

    [Fact]
    public async Task IdenticalChunksWithinOneCheckpoint_AreWrittenOnce()
    {
        await using var rig = new CheckpointTestRig();
        var zeros = new byte[8 * CheckpointTestRig.ChunkSize];
        var content = new CheckpointContent().AddTensor("optimizer/adam_m", "F32", [zeros.Length / 4], zeros).AddTensor("optimizer/adam_v", "F32", [zeros.Length / 4], zeros);

        var result = await (await rig.Store.SaveAsync(Job, 0, content)).Durable;

        Assert.Single(rig.ChunkFiles("paris"));
        Assert.Equal(1, result.Locations[0].ChunksWritten);
        var restored = await rig.Store.RestoreAsync(Job.JobId, 0);
        Assert.True(restored["optimizer/adam_v"].AsSpan().SequenceEqual(zeros));
    }

    [Fact]
    public async Task Snapshot_IsIsolatedFromChangesTheTrainerMakesAfterSaveReturns()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 3);
        state.Step(10);
        var expected = state.Copy();
        rig.Faults["paris"].CommitGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        var save = await rig.Store.SaveAsync(Job, 10, state.ToContent());
        Assert.False(save.Durable.IsCompleted, "the persist runs in the background");
        Assert.True(save.BytesCopied >= state.TrainableBytes);
        Assert.True(save.BytesCopied < state.TrainableBytes + state.Base.Length, "the frozen base is referenced, not copied");

        // Training goes on and overwrites its buffers while the persist is held at its first commit.
        state.Step(11);
        rig.Faults["paris"].CommitGate!.SetResult();
        await save.Durable;

        CheckpointTrainingState.AssertRestoredEquals(expected, await rig.Store.RestoreAsync(Job.JobId, 10));
    }

    [Fact]
    public async Task BeginSave_TakesTheSnapshotInTheBackground_AndBuffersMayChangeOnceSnapshotted()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 8);
        state.Step(20);
        var expected = state.Copy();

        var save = await rig.Store.BeginSaveAsync(Job, 20, state.ToContent());
        await save.Snapshotted;
        Assert.True(save.BytesCopied >= state.TrainableBytes);

        // The optimiser step, after Snapshotted: the checkpoint keeps the values of step 20.
        state.Step(21);
        await save.Durable;
        CheckpointTrainingState.AssertRestoredEquals(expected, await rig.Store.RestoreAsync(Job.JobId, 20));
    }

    [Fact]
    public async Task SaveWhileThePreviousPersistRuns_WaitsForItBeforeTakingItsSnapshot()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 4);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        rig.Faults["paris"].CommitGate = gate;
        var first = await rig.Store.SaveAsync(Job, 1, state.ToContent());

        state.Step(2);
        var second = rig.Store.SaveAsync(Job, 2, state.ToContent()).AsTask();
        await Task.Delay(200);
        Assert.False(second.IsCompleted, "back-pressure: the second snapshot waits for the first persist");

        gate.SetResult();
        var handle = await second;
        Assert.True(first.Durable.IsCompletedSuccessfully);
        Assert.True(handle.BackPressureWait > TimeSpan.Zero);
        await handle.Durable;
        Assert.Equal([1L, 2L], (await rig.Store.ListAsync(Job.JobId)).Select(c => c.Step));
    }

    [Fact]
    public async Task ReservedSnapshotMemory_IsUsedByTheNextSnapshot_AndBoundedByTheCap()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 9);

        var reserved = rig.Store.ReserveSnapshotMemory(state.TrainableBytes);
        Assert.True(reserved >= state.TrainableBytes - CheckpointTestRig.ChunkSize);
        Assert.True(reserved <= rig.Store.Options.MaxPooledSnapshotBytes + CheckpointTestRig.ChunkSize);

        var expected = state.Copy();
        var save = await rig.Store.SaveAsync(Job, 1, state.ToContent());
        await save.Durable;
        CheckpointTrainingState.AssertRestoredEquals(expected, await rig.Store.RestoreAsync(Job.JobId, 1));
    }

    [Fact]
    public async Task SavingAStepThatExists_IsAConflict()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 5, baseChunks: 1);
        await (await rig.Store.SaveAsync(Job, 7, state.ToContent())).Durable;

        await Assert.ThrowsAsync<ConflictException>(async () => await rig.Store.SaveAsync(Job, 7, state.ToContent()));
    }

    [Fact]
    public async Task CorruptedChunk_WithNoOtherCopy_FailsRestoreNamingCheckpointEntryAndChunk()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 6);
        state.Step(5);
        var result = await (await rig.Store.SaveAsync(Job, 5, state.ToContent())).Durable;
        var hash = result.Checkpoint.Entries.Single(e => e.Name == "adapter/lora_A").Chunks[1];
        FlipOneByte(rig, "paris", hash);

        var error = await Assert.ThrowsAsync<DataIntegrityException>(() => rig.Store.RestoreAsync(Job.JobId, 5));
        Assert.Contains("ftjob-1@5", error.Message, StringComparison.Ordinal);
        Assert.Contains("adapter/lora_A", error.Message, StringComparison.Ordinal);
        Assert.Contains(hash, error.Message, StringComparison.Ordinal);
        Assert.Contains("paris: hash mismatch", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CorruptedOrMissingChunkAtTheNearestCopy_IsReadFromAnotherReplica()
    {
        await using var rig = new CheckpointTestRig(["paris", "lyon"]);
        var job = Job with { Policy = CheckpointTestRig.EuOnPrem with { MinReplicas = 2 } };
        var state = new CheckpointTrainingState(seed: 7);
        state.Step(9);
        var expected = state.Copy();
        var result = await (await rig.Store.SaveAsync(job, 9, state.ToContent())).Durable;
        Assert.Equal(["paris", "lyon"], result.Checkpoint.Locations);
        var chunks = result.Checkpoint.Entries.Single(e => e.Name == "optimizer/adam_m").Chunks;
        FlipOneByte(rig, "paris", chunks[0]);
        File.Delete(ChunkPath(rig, "paris", chunks[1]));

        var restored = await rig.Store.RestoreAsync(job.JobId, 9);

        CheckpointTrainingState.AssertRestoredEquals(expected, restored);
        Assert.True(restored.ChunksReadByLocation["lyon"] >= 2);
        Assert.True(restored.ChunksReadByLocation["paris"] > 0, "healthy chunks still come from the nearest copy");
    }

    [Fact]
    public async Task RestoreOfAStepThatWasNeverSaved_IsNotFound()
    {
        await using var rig = new CheckpointTestRig();
        await Assert.ThrowsAsync<NotFoundException>(() => rig.Store.RestoreAsync(Job.JobId, 42));
    }

    [Fact]
    public async Task Save_AuditsOnePlacementPerLocationForAllItsChunks_ThenOneForItsManifest_AndRefusalsSeparately()
    {
        await using var rig = new CheckpointTestRig(["paris", "us-east", "lyon"]);
        var job = Job with { Policy = CheckpointTestRig.EuOnPrem with { MinReplicas = 2 } };
        var state = new CheckpointTrainingState(seed: 14);
        state.Step(1);

        var result = await (await rig.Store.SaveAsync(job, 1, state.ToContent())).Durable;

        var events = rig.Audit.Read(0, 10_000).Where(e => e.ArtifactId == result.Checkpoint.Id).ToList();
        Assert.Equal(["placement_refused"], events.Where(e => e.Location == "us-east").Select(e => e.Type));
        var chunkNames = result.Checkpoint.Entries.SelectMany(e => e.Chunks).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        foreach (var location in new[] { "paris", "lyon" })
        {
            var placements = events.Where(e => e.Location == location).ToList();
            Assert.Equal(["placement", "placement"], placements.Select(e => e.Type));
            var (chunks, manifest) = (placements[0], placements[1]);
            var outcome = result.Locations.Single(l => l.LocationId == location);
            Assert.Contains($"batch: {outcome.ChunksWritten} content-addressed blobs", chunks.Detail, StringComparison.Ordinal);
            Assert.Equal(chunkNames.Count, outcome.ChunksWritten);
            Assert.Equal(rig.ChunkFiles(location).Sum(f => new FileInfo(f).Length), chunks.Bytes);
            var digest = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(string.Concat(chunkNames.Select(n => n + "\n"))));
            Assert.Equal(Convert.ToHexStringLower(digest), chunks.Sha256);
            Assert.Equal(outcome.BytesWritten - chunks.Bytes, manifest.Bytes);
        }

        Assert.True(rig.Audit.Verify().Valid);
    }

    [Fact]
    public async Task FrozenEntryChangedBehindTheHashCache_IsNotStoredUnderItsOldName()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 15);
        await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;
        await rig.Store.DeleteAsync(Job.JobId, 1);
        Assert.Empty(rig.ChunkFiles("paris"));

        // The caller broke the frozen promise. The cached names of the base are stale, and its chunks
        // are no longer at the location, so they must be written: under their old names they would lie.
        state.Base[0] ^= 0xFF;
        var save = await rig.Store.SaveAsync(Job, 2, state.ToContent());

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => save.Durable);
        Assert.Contains("frozen", error.Message, StringComparison.Ordinal);
        Assert.Empty(await rig.Store.ListAsync(Job.JobId));
        await rig.RestartAsync();
        await rig.Store.RecoverAsync();
        Assert.Empty(rig.ChunkFiles("paris"));
    }

    internal static string ChunkPath(CheckpointTestRig rig, string location, string hash) =>
        Path.Combine(rig.RootOf(location), "objects", ChunkStore.KeyOf(hash).Replace('/', Path.DirectorySeparatorChar));

    internal static void FlipOneByte(CheckpointTestRig rig, string location, string hash)
    {
        var path = ChunkPath(rig, location, hash);
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 3] ^= 0x40;
        File.WriteAllBytes(path, bytes);
    }
}
