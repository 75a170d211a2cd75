using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tests;
using Atelier.Training.Checkpoints;
using Atelier.Training.Jobs;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Jobs;

/// <summary>The reference trainer as a job drives it, over a real checkpoint store on local directories.</summary>
public sealed class FineTuningRunnerTests
{
    private static async Task<(string ModelDir, IReadOnlyList<ShardSource> Shards, string Work)> PrepareAsync()
    {
        var work = Atelier.Testing.TestCleanup.CreateDirectory("atelier-runner");
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

        // The float32 master copy and optimiser state of the last checkpoint, by entry name: the exported
        // adapter is rounded to the base's bf16, which could hide a difference there.
        async Task<Dictionary<string, byte[]>> MasterCopyAsync(string jobId)
        {
            var restored = await rig.Store.RestoreAsync(jobId, 8);
            return restored.Info.Entries.Where(e => e.Name.StartsWith("lora/", StringComparison.Ordinal)).ToDictionary(e => e.Name, e => restored[e.Name]);
        }

        var reference = await TrainAsync("uninterrupted", stopAfterCheckpoints: 0);
        Assert.NotEmpty(reference);
        var referenceMaster = await MasterCopyAsync("uninterrupted");
        Assert.NotEmpty(referenceMaster);
        foreach (var stopAt in new[] { 1, 3 })
        {
            var jobId = $"interrupted-{stopAt}";
            Assert.Empty(await TrainAsync(jobId, stopAt));
            var resumed = await TrainAsync(jobId, stopAfterCheckpoints: 0);
            Assert.True(reference.AsSpan().SequenceEqual(resumed), $"stopping after checkpoint {stopAt} changed the final adapter");
            var resumedMaster = await MasterCopyAsync(jobId);
            Assert.Equal(referenceMaster.Keys.Order(StringComparer.Ordinal), resumedMaster.Keys.Order(StringComparer.Ordinal));
            Assert.All(referenceMaster, e => Assert.True(e.Value.AsSpan().SequenceEqual(resumedMaster[e.Key]), $"stopping after checkpoint {stopAt} changed {e.Key}"));
        }
    }

    [Fact]
    public async Task FinalAdapter_OfABf16Base_IsBf16ForMistralInference_AndIsTheFloat32MasterCopyRoundedToNearestEven()
    {
        var (modelDir, shards, work) = await PrepareAsync();
        await using var rig = new CheckpointTestRig();
        var job = new CheckpointJob("ws", "job-bf16-adapter", CheckpointTestRig.EuOnPrem);
        var plan = Plan(4);
        var run = new FineTuningRun
        {
            Job = job,
            Plan = plan,
            ModelDirectory = modelDir,
            TrainingShards = shards,
            ValidationWindows = [],
            Checkpoints = rig.Store,
            AdapterPath = Path.Combine(work, "adapter.safetensors"),
        };
        await FineTuningRunner.RunAsync(run, CancellationToken.None);

        // The base the job trained on is bf16, so the adapter is, in every tensor, and mistral-inference's
        // loader takes it: one dtype equal to the model's, mistral-finetune's names and shapes, every projection.
        Assert.All(MistralInferenceLoraLoader.ReadSafeTensors(Path.Combine(modelDir, "consolidated.safetensors")).Values, t => Assert.Equal("BF16", t.DType));
        var adapter = MistralInferenceLoraLoader.ReadSafeTensors(run.AdapterPath);
        Assert.All(adapter.Values, t => Assert.Equal("BF16", t.DType));
        var merged = MistralInferenceLoraLoader.LoadAndMerge(modelDir, run.AdapterPath, plan.LoraAlpha / plan.LoraRank);
        Assert.Equal(7 * TinyModelWriter.DefaultArgs.NLayers, merged.Count);

        // Training kept float32: the last checkpoint holds the master copy as F32, and the file is that
        // copy rounded to nearest even, value for value.
        var restored = await rig.Store.RestoreAsync(job.JobId, plan.TrainingSteps);
        var trained = 0;
        foreach (var (name, stored) in adapter)
        {
            var entry = restored.Info.Entries.Single(e => e.Name == "lora/" + name);
            Assert.Equal("F32", entry.DType);
            var master = MemoryMarshal.Cast<byte, float>(restored[entry.Name]);
            var values = stored.ToFloats();
            Assert.Equal(master.Length, values.Length);
            for (var j = 0; j < master.Length; j++)
            {
                Assert.Equal(MistralInferenceLoraLoader.Round(master[j], "BF16"), values[j]);
                trained += name.EndsWith("lora_B.weight", StringComparison.Ordinal) && master[j] != 0 ? 1 : 0;
            }
        }

        Assert.True(trained > 0, "training left every B at zero");
    }

    [Fact]
    public async Task CancelWhileEvaluatingAtACheckpoint_StopsAtTheWindowInProgress_AndThatCheckpointNeverExists()
    {
        var (modelDir, shards, work) = await PrepareAsync();
        await using var rig = new CheckpointTestRig();
        using var cancel = new CancellationTokenSource();
        var job = new CheckpointJob("ws", "job-cancel-eval", CheckpointTestRig.EuOnPrem);
        var committed = new List<long>();

        // The second evaluation (at step 4) is cancelled while its second window is read.
        var windows = new CancellingWindows(count: 4, cancelInPass: 2, cancelAtWindow: 1, cancel);
        var run = new FineTuningRun
        {
            Job = job,
            Plan = Plan(8),
            ModelDirectory = modelDir,
            TrainingShards = shards,
            ValidationWindows = windows,
            Checkpoints = rig.Store,
            AdapterPath = Path.Combine(work, "adapter.safetensors"),
            OnCheckpoint = c => committed.Add(c.Step),
        };

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FineTuningRunner.RunAsync(run, cancel.Token));

        // The evaluation went no further than the window during which the cancel arrived.
        Assert.Equal([0, 1, 2, 3], windows.ReadInPass(1));
        Assert.Equal([0, 1], windows.ReadInPass(2));
        Assert.Equal([2L], committed);
        Assert.Equal([2L], (await rig.Store.ListAsync(job.JobId)).Select(c => c.Step));
        Assert.False(File.Exists(run.AdapterPath));
    }

    [Fact]
    public async Task CancelWithACheckpointInFlight_CommitsItWhole_AndReportsIt()
    {
        var (modelDir, shards, work) = await PrepareAsync();
        await using var rig = new CheckpointTestRig();
        using var cancel = new CancellationTokenSource();
        var job = new CheckpointJob("ws", "job-cancel-persist", CheckpointTestRig.EuOnPrem);
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
            OnCheckpoint = c => committed.Add(c.Step),

            // The checkpoint of step 2 was begun after step 2; it is reported only after step 4,
            // which a cancel after step 3 never reaches.
            OnStep = report =>
            {
                if (report.Step == 3)
                {
                    cancel.Cancel();
                }
            },
        };

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => FineTuningRunner.RunAsync(run, cancel.Token));

        // Committed before the attempt ended, whole, and in the job's history as in the store.
        Assert.Equal([2L], committed);
        await rig.RestartAsync();
        Assert.Equal([2L], (await rig.Store.ListAsync(job.JobId)).Select(c => c.Step));
        var restored = await rig.Store.RestoreAsync(job.JobId, 2);
        Assert.Contains(restored.Info.Entries, e => e.Name == "trainer/state");
        Assert.False(File.Exists(run.AdapterPath));
    }

    /// <summary>
    /// Validation windows that record which ones each evaluation pass reads (a pass starts at
    /// window 0) and cancel a token when one chosen window of one chosen pass is read.
    /// </summary>
    private sealed class CancellingWindows(int count, int cancelInPass, int cancelAtWindow, CancellationTokenSource cancel) : IReadOnlyList<Atelier.Data.Shards.ShardWindow>
    {
        private readonly Atelier.Data.Shards.ShardWindow[] _windows = [.. Enumerable.Range(0, count).Select(Window)];
        private readonly List<List<int>> _passes = [];

        public int Count => _windows.Length;

        public Atelier.Data.Shards.ShardWindow this[int index]
        {
            get
            {
                if (index == 0)
                {
                    _passes.Add([]);
                }

                _passes[^1].Add(index);
                if (_passes.Count == cancelInPass && index == cancelAtWindow)
                {
                    cancel.Cancel();
                }

                return _windows[index];
            }
        }

        public int[] ReadInPass(int pass) => [.. _passes[pass - 1]];

        public IEnumerator<Atelier.Data.Shards.ShardWindow> GetEnumerator()
        {
            for (var i = 0; i < Count; i++)
            {
                yield return this[i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();

        private static Atelier.Data.Shards.ShardWindow Window(int seed)
        {
            const int length = 64;
            var tokens = Enumerable.Range(0, length + 1).Select(t => 3 + ((t * 31) + (seed * 17)) % 250).ToArray();
            var mask = new byte[length];
            Array.Fill(mask, (byte)1);
            return new Atelier.Data.Shards.ShardWindow(tokens[..length], tokens[1..], mask, [length]);
        }
    }
}
