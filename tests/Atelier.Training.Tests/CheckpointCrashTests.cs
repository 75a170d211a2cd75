using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

public sealed class CheckpointCrashTests
{
    private static readonly CheckpointJob Job = new("team-a", "ftjob-crash", CheckpointTestRig.EuOnPrem);

    // The second checkpoint writes 9 new chunks (adapter 3, moments 2 + 2, loader 1, RNG 1) and
    // then its manifest: 10 writes, the manifest always last.
    private const int WritesOfSecondSave = 10;

    public static TheoryData<CrashPoint, int> EveryStage()
    {
        var data = new TheoryData<CrashPoint, int>();
        foreach (var point in Enum.GetValues<CrashPoint>())
        {
            for (var n = 1; n <= WritesOfSecondSave; n++)
            {
                data.Add(point, n);
            }
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(EveryStage))]
    public async Task CrashAtAnyStageOfASave_AfterRestartShowsTheWholeCheckpointOrNothing_AndLeavesNoOrphans(CrashPoint point, int write)
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 11);
        state.Step(1);
        var first = state.Copy();
        await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;

        state.Step(2);
        var second = state.Copy();
        var paris = rig.Faults["paris"];
        paris.ResetCounters();
        paris.CrashPointKind = point;
        paris.CrashAt = write;
        var save = await rig.Store.SaveAsync(Job, 2, state.ToContent());
        await Assert.ThrowsAnyAsync<Exception>(() => save.Durable);
        Assert.True(paris.Dead);
        Assert.InRange(paris.Writes, write, WritesOfSecondSave);

        await rig.RestartAsync();
        var report = await rig.Store.RecoverAsync();

        var committed = point == CrashPoint.AfterCommit && write == WritesOfSecondSave;
        var listed = await rig.Store.ListAsync(Job.JobId);
        Assert.Equal(committed ? [1L, 2L] : [1L], listed.Select(c => c.Step));
        CheckpointTrainingState.AssertRestoredEquals(first, await rig.Store.RestoreAsync(Job.JobId, 1));
        if (committed)
        {
            CheckpointTrainingState.AssertRestoredEquals(second, await rig.Store.RestoreAsync(Job.JobId, 2));
        }

        // No partial write and no chunk outside the committed checkpoints survives recovery.
        Assert.Empty(rig.FilesUnder("paris", "tmp"));
        var referenced = listed.SelectMany(c => c.Entries).SelectMany(e => e.Chunks).ToHashSet(StringComparer.Ordinal);
        Assert.All(rig.ChunkFiles("paris"), f => Assert.Contains(Path.GetFileName(f), referenced));
        Assert.Equal(referenced.Count, rig.ChunkFiles("paris").Length);
        if (point != CrashPoint.AfterCommit)
        {
            Assert.True(report.PartialWritesRemoved >= 1, "the interrupted write's temp file was found");
        }

        Assert.Empty(report.SkippedLocations);

        // The job resumes from step 1 and saves step 2 again.
        if (!committed)
        {
            await (await rig.Store.SaveAsync(Job, 2, state.ToContent())).Durable;
            CheckpointTrainingState.AssertRestoredEquals(second, await rig.Store.RestoreAsync(Job.JobId, 2));
        }
    }

    [Fact]
    public async Task CrashBetweenDeletingAManifestAndSweeping_LeavesOnlyGarbageThatRecoverySweeps()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 12);
        for (var step = 1; step <= 2; step++)
        {
            state.Step(step);
            await (await rig.Store.SaveAsync(Job, step, state.ToContent())).Durable;
        }

        var keep = state.Copy();
        var chunksBefore = rig.ChunkFiles("paris").Length;

        // The manifest deletion is the commit point of a deletion; simulate dying right after it.
        File.Delete(Path.Combine(rig.RootOf("paris"), "objects", "checkpoints", Job.JobId, "000000000001.json"));
        await rig.RestartAsync();
        var report = await rig.Store.RecoverAsync();

        Assert.Equal(9, report.ChunksSwept);
        Assert.Equal(chunksBefore - 9, rig.ChunkFiles("paris").Length);
        CheckpointTrainingState.AssertRestoredEquals(keep, await rig.Store.RestoreAsync(Job.JobId, 2));
    }

    [Fact]
    public async Task RecoverySweep_WithADamagedManifest_IsSkippedAndDeletesNothing()
    {
        await using var rig = new CheckpointTestRig();
        var state = new CheckpointTrainingState(seed: 13);
        state.Step(1);
        await (await rig.Store.SaveAsync(Job, 1, state.ToContent())).Durable;
        var manifest = Path.Combine(rig.RootOf("paris"), "objects", "checkpoints", Job.JobId, "000000000001.json");
        File.WriteAllText(manifest, File.ReadAllText(manifest).Replace("\"step\":1", "\"step\":3", StringComparison.Ordinal));
        var chunks = rig.ChunkFiles("paris").Length;

        await rig.RestartAsync();
        var report = await rig.Store.RecoverAsync();

        Assert.Single(report.SkippedLocations);
        Assert.Contains("damaged", report.SkippedLocations[0], StringComparison.Ordinal);
        Assert.Equal(chunks, rig.ChunkFiles("paris").Length);
    }
}
