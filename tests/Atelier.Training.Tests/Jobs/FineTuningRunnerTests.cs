using System.Text;
using System.Text.Json;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Training.Checkpoints;
using Atelier.Training.Jobs;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Jobs;

/// <summary>The reference trainer as a job drives it, over a real checkpoint store on local directories.</summary>
public sealed class FineTuningRunnerTests
{
    private static async Task<(string ModelDir, IReadOnlyList<ShardSource> Shards, string Work)> PrepareAsync()
    {
        var work = Directory.CreateTempSubdirectory("atelier-runner").FullName;
        var modelDir = Path.Combine(work, "model");
        TinyModelWriter.Write(modelDir, seed: 3);
        var lines = string.Join("\n", Enumerable.Range(0, 24).Select(i => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = $"Say word {i}." }, new { role = "assistant", content = $"word {i} word." } },
        }))) + "\n";
        var input = new DatasetInput("train.jsonl", () => new MemoryStream(Encoding.UTF8.GetBytes(lines)), DataFormat.FineTuneJsonl);
        var prepared = await FineTuningPreparation.BuildAsync([input], [], ModelTokenizers.Load(modelDir), 64, Path.Combine(work, "data"), CancellationToken.None);
        return (modelDir, ShardSources.FromDatasetDirectory(prepared.Training.Directory), work);
    }

    private static FineTuningPlan Plan(int steps) => new()
    {
        SeqLen = 64,
        TrainingSteps = steps,
        LearningRate = 3e-3,
        WeightDecay = 0.1,
        WarmupSteps = 1,
        CheckpointEvery = 2,
        Seed = 7,
    };

    [Fact]
    public async Task DiskFullDuringACheckpoint_FailsTheRun_AndThePreviousCheckpointIsIntact()
    {
        var (modelDir, shards, work) = await PrepareAsync();
        await using var rig = new CheckpointTestRig();
        var job = new CheckpointJob("ws", "job-disk-full", CheckpointTestRig.EuOnPrem);
        var committed = new List<long>();
        var run = new FineTuningRun
        {
            Job = job,
            Plan = Plan(8),
            ModelDirectory = modelDir,
            TrainingShards = shards,
            ValidationWindows = [],
            Checkpoints = rig.Store,
            AdapterPath = Path.Combine(work, "adapter.safetensors"),
            OnCheckpoint = c =>
            {
                committed.Add(c.Step);

                // The location fills up right after the first checkpoint.
                rig.Faults["paris"].CapacityBytes = 0;
            },
        };

        var failure = await Assert.ThrowsAsync<CheckpointFailedException>(() => FineTuningRunner.RunAsync(run, CancellationToken.None));
        Assert.Contains("step 4", failure.Message, StringComparison.Ordinal);
        Assert.Contains("earlier checkpoints are intact", failure.Message, StringComparison.Ordinal);
        Assert.Equal([2L], committed);
        Assert.False(File.Exists(run.AdapterPath));

        // The checkpoint at step 2 is whole, verified chunk by chunk on restore.
        await rig.RestartAsync();
        var list = await rig.Store.ListAsync(job.JobId);
        Assert.Equal([2L], list.Select(c => c.Step));
        var restored = await rig.Store.RestoreAsync(job.JobId, 2);
        Assert.Contains(restored.Info.Entries, e => e.Name == "loader/position");
    }

    [Fact]
    public async Task ResumingFromAnyCheckpoint_EndsWithTheSameAdapterBitForBit()
    {
        var (modelDir, shards, work) = await PrepareAsync();
        await using var rig = new CheckpointTestRig();

        async Task<byte[]> TrainAsync(string jobId, int stopAfterCheckpoints)
        {
            using var stop = new CancellationTokenSource();
            var seen = 0;
            var path = Path.Combine(work, $"{jobId}-{Guid.NewGuid():N}.safetensors");
            var run = new FineTuningRun
            {
                Job = new CheckpointJob("ws", jobId, CheckpointTestRig.EuOnPrem),
                Plan = Plan(8),
                ModelDirectory = modelDir,
                TrainingShards = shards,
                ValidationWindows = [],
                Checkpoints = rig.Store,
                AdapterPath = path,
                OnCheckpoint = _ =>
                {
                    if (++seen == stopAfterCheckpoints)
                    {
                        stop.Cancel();
                    }
                },
            };
            try
            {
                await FineTuningRunner.RunAsync(run, stop.Token);
            }
            catch (OperationCanceledException)
            {
                return [];
            }

            return File.ReadAllBytes(path);
        }

        var reference = await TrainAsync("uninterrupted", stopAfterCheckpoints: 0);
        Assert.NotEmpty(reference);
        foreach (var stopAt in new[] { 1, 3 })
        {
            var jobId = $"interrupted-{stopAt}";
            Assert.Empty(await TrainAsync(jobId, stopAt));
            var resumed = await TrainAsync(jobId, stopAfterCheckpoints: 0);
            Assert.True(reference.AsSpan().SequenceEqual(resumed), $"stopping after checkpoint {stopAt} changed the final adapter");
        }
    }
}
