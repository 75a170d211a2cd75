using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Atelier.Data.Shards;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Training;
using Atelier.Training.Checkpoints;
using Atelier.Training.Loading;

namespace Atelier.Training.Jobs;

/// <summary>What a job will do, fixed when it is validated, so that every attempt trains the same way.</summary>
public sealed record FineTuningPlan
{
    /// <summary>Tokens per packed window.</summary>
    public required int SeqLen { get; init; }

    /// <summary>Optimiser steps.</summary>
    public required int TrainingSteps { get; init; }

    /// <summary>Windows per optimiser step.</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>Peak learning rate.</summary>
    public required double LearningRate { get; init; }

    /// <summary>AdamW weight decay.</summary>
    public required double WeightDecay { get; init; }

    /// <summary>Steps of linear warm-up before the cosine decay.</summary>
    public required int WarmupSteps { get; init; }

    /// <summary>A checkpoint every this many steps, and one after the last.</summary>
    public required int CheckpointEvery { get; init; }

    /// <summary>Seeds the adapter, dropout and the data order.</summary>
    public required ulong Seed { get; init; }

    /// <summary>LoRA rank.</summary>
    public int LoraRank { get; init; } = 8;

    /// <summary>LoRA alpha.</summary>
    public float LoraAlpha { get; init; } = 16;

    /// <summary>Retention: the last K checkpoints.</summary>
    public int KeepLast { get; init; } = 2;

    /// <summary>Retention: the best by validation loss.</summary>
    public int KeepBest { get; init; } = 1;

    /// <summary>Validation windows evaluated at each checkpoint (the first ones, always the same).</summary>
    public int MaxValidationWindows { get; init; } = 32;

    /// <summary>Training tokens per step.</summary>
    public long TrainTokensPerStep => (long)SeqLen * BatchSize;
}

/// <summary>A committed checkpoint, as the runner reports it.</summary>
/// <param name="Step">Steps trained when it was taken.</param>
/// <param name="CheckpointId">The store's id.</param>
/// <param name="Metrics">Train loss (mean since the previous checkpoint), validation loss and token accuracy.</param>
/// <param name="TrainedTokens">Tokens trained so far.</param>
/// <param name="Stall">How long training waited for the snapshot.</param>
/// <param name="PersistTime">How long the background persist took.</param>
/// <param name="BytesWritten">Bytes written at every location together.</param>
/// <param name="BytesReused">Bytes that were already stored (deduplicated chunks).</param>
public sealed record RunnerCheckpoint(long Step, string CheckpointId, CheckpointMetrics Metrics, long TrainedTokens, TimeSpan Stall, TimeSpan PersistTime, long BytesWritten, long BytesReused);

/// <summary>What one optimiser step did, as the runner reports it.</summary>
/// <param name="Step">Steps done, this one included.</param>
/// <param name="Loss">The step's training loss (masked cross-entropy).</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="Validation">Validation's figures when validation ran at this step (a checkpoint's step), else null.</param>
public readonly record struct TrainingStepReport(int Step, double Loss, float LearningRate, double GradNorm, CheckpointMetrics? Validation);

/// <summary>Everything one attempt at training a job needs.</summary>
public sealed record FineTuningRun
{
    /// <summary>The job, its workspace and residency policy, as the checkpoint store keys them.</summary>
    public required CheckpointJob Job { get; init; }

    /// <summary>The plan fixed at validation.</summary>
    public required FineTuningPlan Plan { get; init; }

    /// <summary>A directory holding the base model in Mistral's format.</summary>
    public required string ModelDirectory { get; init; }

    /// <summary>The packed training shards.</summary>
    public required IReadOnlyList<ShardSource> TrainingShards { get; init; }

    /// <summary>
    /// The latency of one read of the shards from where this node trains (the topology's, between
    /// this node and the node or rack of the data): the loader reads that much further ahead (decision 0019).
    /// </summary>
    public TimeSpan ShardReadLatency { get; init; }

    /// <summary>Validation windows (may be empty).</summary>
    public required IReadOnlyList<ShardWindow> ValidationWindows { get; init; }

    /// <summary>The checkpoint store.</summary>
    public required CheckpointStore Checkpoints { get; init; }

    /// <summary>Called once a checkpoint is durable, before retention runs.</summary>
    public Action<RunnerCheckpoint>? OnCheckpoint { get; init; }

    /// <summary>Called after retention deleted checkpoints.</summary>
    public Action<IReadOnlyList<long>>? OnRetention { get; init; }

    /// <summary>
    /// Called after each step with its loss and learning rate; at a checkpoint's step, after
    /// validation, with its figures as well.
    /// </summary>
    public Action<TrainingStepReport>? OnStep { get; init; }

    /// <summary>Called once when training resumes from a checkpoint, with its step.</summary>
    public Action<long>? OnResume { get; init; }

    /// <summary>Another job's checkpoint to start from when this job has none of its own yet.</summary>
    public CheckpointStart? StartFrom { get; init; }

    /// <summary>Where to write the final adapter (mistral-finetune's <c>lora.safetensors</c>, in the base model's dtype); must not exist.</summary>
    public required string AdapterPath { get; init; }
}

/// <summary>What an attempt ended with.</summary>
/// <param name="Steps">Steps trained in all.</param>
/// <param name="TrainedTokens">Tokens trained in all.</param>
/// <param name="ResumedFromStep">The checkpoint this attempt started from, if any.</param>
/// <param name="FinalCheckpointId">The last checkpoint's id.</param>
/// <param name="LoaderWait">Time the trainer waited on the data loader.</param>
public sealed record FineTuningOutcome(int Steps, long TrainedTokens, long? ResumedFromStep, string FinalCheckpointId, TimeSpan LoaderWait);

/// <summary>
/// The reference trainer driven by a job: LoRA on the base model, batches from the deterministic
/// loader, a checkpoint every <see cref="FineTuningPlan.CheckpointEvery"/> steps through the
/// two-phase checkpoint store, validation at each checkpoint, retention after each. An attempt
/// starts from the job's newest committed checkpoint, if any; because the adapter's
/// initialisation, dropout and data order depend only on the seed and the step, a resumed job
/// ends with the same adapter, bit for bit, as one that never stopped.
/// </summary>
public static class FineTuningRunner
{
    private const string LoaderEntry = "loader/position";
    private const string TrainerEntry = "trainer/state";

    /// <summary>Trains until the plan's last step, or until cancelled (<see cref="OperationCanceledException"/>).</summary>
    public static async Task<FineTuningOutcome> RunAsync(FineTuningRun run, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(run);
        var plan = run.Plan;
        using var model = MistralModel.Load(run.ModelDirectory);
        model.Adapter = LoraAdapter.Create(model.Args, new LoraConfig(plan.LoraRank, plan.LoraAlpha), plan.Seed);
        var options = new LoraTrainingOptions(
            new WarmupCosineSchedule((float)plan.LearningRate, plan.WarmupSteps, plan.TrainingSteps),
            new AdamWOptions(WeightDecay: (float)plan.WeightDecay),
            MaxGradNorm: 1f,
            Seed: plan.Seed);
        using var trainer = new LoraTrainer(model, options);

        // Resume from the newest committed checkpoint: trainer state and loader position.
        LoaderPosition? position = null;
        long? resumedFrom = null;
        var latestOwn = (await run.Checkpoints.ListAsync(run.Job.JobId, cancellationToken).ConfigureAwait(false)).MaxBy(c => c.Step);
        var from = latestOwn is not null ? (run.Job.JobId, latestOwn.Step)
            : run.StartFrom is { } start ? (start.JobId, start.Step)
            : default((string JobId, long Step)?);
        if (from is var (fromJob, fromStep))
        {
            var restored = await run.Checkpoints.RestoreAsync(fromJob, fromStep, cancellationToken).ConfigureAwait(false);
            var latest = restored.Info;
            var state = JsonSerializer.Deserialize<TrainerState>(restored[TrainerEntry])
                ?? throw new InvalidDataException($"Checkpoint {latest.Id} has an empty trainer state.");
            var names = restored.Info.Entries.Select((e, i) => (e.Name, i)).ToDictionary(p => p.Name, p => p.i, StringComparer.Ordinal);
            trainer.RestoreState(name => names.TryGetValue("lora/" + name, out var i) ? restored.Data[i] : null, state.Steps, state.OptimizerSteps);
            position = LoaderPosition.FromJson(Encoding.UTF8.GetString(restored[LoaderEntry]));
            resumedFrom = latest.Step;
            run.OnResume?.Invoke(latest.Step);
            if (fromJob != run.Job.JobId && latest.Step >= plan.TrainingSteps)
            {
                throw new Atelier.Core.Errors.BadRequestException($"Checkpoint {latest.Id} is at step {latest.Step}, at or past this job's last step {plan.TrainingSteps}.");
            }
        }

        await using var loader = ShardedSequenceLoader.Open(
            run.TrainingShards,
            new LoaderOptions { Seed = plan.Seed, BatchSize = plan.BatchSize }.ForLatency(run.ShardReadLatency),
            position);

        var lossSum = 0.0;
        var lossCount = 0;
        CheckpointSave? pending = null;
        var lastCheckpoint = latestOwn?.Id ?? "";
        var loaderWait = TimeSpan.Zero;
        try
        {
            while (trainer.StepCount < plan.TrainingSteps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var waitStarted = Stopwatch.GetTimestamp();
                var batch = await loader.NextAsync(cancellationToken).ConfigureAwait(false);
                loaderWait += Stopwatch.GetElapsedTime(waitStarted);
                var micro = new TrainingBatch[batch.Windows.Count];
                for (var i = 0; i < micro.Length; i++)
                {
                    micro[i] = ToBatch(batch.Windows[i]);
                }

                if (pending is not null)
                {
                    // The optimiser step below changes the adapter: the snapshot must be taken first.
                    await pending.Snapshotted.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }

                var result = trainer.Step(micro, cancellationToken);
                lossSum += result.Loss;
                lossCount++;
                var checkpointDue = trainer.StepCount % plan.CheckpointEvery == 0 || trainer.StepCount == plan.TrainingSteps;
                if (!checkpointDue)
                {
                    run.OnStep?.Invoke(new TrainingStepReport(trainer.StepCount, result.Loss, result.LearningRate, result.GradNorm, null));
                }
                else
                {
                    if (pending is not null)
                    {
                        // Taken off first: a cancel inside must not report the checkpoint twice.
                        var previous = pending;
                        pending = null;
                        lastCheckpoint = await CompleteAsync(run, previous, cancellationToken).ConfigureAwait(false);
                    }

                    var metrics = Validate(model, run.ValidationWindows, plan.MaxValidationWindows, cancellationToken) with { TrainLoss = lossSum / Math.Max(1, lossCount) };
                    lossSum = 0;
                    lossCount = 0;

                    // Reported after validation, so the step's row carries its validation figures.
                    run.OnStep?.Invoke(new TrainingStepReport(trainer.StepCount, result.Loss, result.LearningRate, result.GradNorm, metrics));
                    pending = await run.Checkpoints.BeginSaveAsync(run.Job, trainer.StepCount, Content(trainer, batch.After), metrics, cancellationToken).ConfigureAwait(false);
                }
            }

            if (pending is not null)
            {
                var last = pending;
                pending = null;
                lastCheckpoint = await CompleteAsync(run, last, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (pending is not null)
        {
            // A checkpoint whose snapshot was taken before the cancel is not abandoned half-way:
            // its persist runs to the commit point (the manifest's rename) or leaves nothing, and
            // a committed one is reported like any other, so that the job's history shows every
            // checkpoint the store holds. Nothing else observes the cancelled token from here on.
            var save = pending;
            pending = null;
            try
            {
                await CompleteAsync(run, save, CancellationToken.None).ConfigureAwait(false);
            }
            catch (CheckpointFailedException)
            {
                // Absent as a whole: the store took back what it wrote. The cancel is the outcome.
            }

            throw;
        }
        finally
        {
            if (pending is not null)
            {
                // Leave no persist running behind a failed or cancelled attempt.
                await ((Task)pending.Durable).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }
        }

        // In the base model's dtype (bf16 for a released checkpoint), as mistral-inference requires; the
        // checkpoints above keep the float32 master copy, so resuming stays bit-exact.
        model.SaveAdapter(run.AdapterPath);
        return new FineTuningOutcome(trainer.StepCount, trainer.StepCount * plan.TrainTokensPerStep, resumedFrom, lastCheckpoint, loaderWait);
    }

    private static async Task<string> CompleteAsync(FineTuningRun run, CheckpointSave save, CancellationToken cancellationToken)
    {
        CheckpointPersistResult result;
        try
        {
            result = await save.Durable.ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw new CheckpointFailedException($"The checkpoint at step {save.Step} could not be written ({e.Message}); earlier checkpoints are intact.", e);
        }

        var info = result.Checkpoint;
        run.OnCheckpoint?.Invoke(new RunnerCheckpoint(info.Step, info.Id, info.Metrics, info.Step * run.Plan.TrainTokensPerStep, save.Stall, result.PersistTime, result.BytesWritten, result.BytesReused));
        var deleted = await run.Checkpoints.ApplyRetentionAsync(run.Job.JobId, new RetentionPolicy(run.Plan.KeepLast, run.Plan.KeepBest), cancellationToken).ConfigureAwait(false);
        if (deleted.Count > 0)
        {
            run.OnRetention?.Invoke(deleted);
        }

        return info.Id;
    }

    /// <summary>The trainer's tensors, its step counts and the loader's position after the batch just trained.</summary>
    private static CheckpointContent Content(LoraTrainer trainer, LoaderPosition after)
    {
        var content = new CheckpointContent();
        foreach (var (name, tensor) in trainer.StateTensors())
        {
            content.AddTensor("lora/" + name, "F32", [.. tensor.Shape.Select(d => (long)d)], MemoryMarshal.AsBytes(tensor.Span).ToArray());
        }

        content.AddBlob(TrainerEntry, JsonSerializer.SerializeToUtf8Bytes(new TrainerState(trainer.StepCount, trainer.OptimizerStepCount)));
        content.AddBlob(LoaderEntry, Encoding.UTF8.GetBytes(after.ToJson()));
        return content;
    }

    /// <summary>Mean masked cross-entropy and next-token accuracy over the first validation windows.</summary>
    /// <param name="model">The model with its adapter.</param>
    /// <param name="windows">The validation windows.</param>
    /// <param name="maxWindows">How many of the first windows to evaluate.</param>
    /// <param name="cancellationToken">Checked before each window and between the layers of its forward.</param>
    public static CheckpointMetrics Validate(MistralModel model, IReadOnlyList<ShardWindow> windows, int maxWindows, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(windows);
        double loss = 0;
        long tokens = 0, correct = 0;
        var vocab = model.Args.VocabSize;
        for (var i = 0; i < Math.Min(maxWindows, windows.Count); i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var w = windows[i];
            using var logits = model.ForwardLogits(ToBatch(w), cancellationToken);
            for (var t = 0; t < w.InputIds.Length; t++)
            {
                if (w.LossMask[t] == 0)
                {
                    continue;
                }

                var row = logits.Span.Slice(t * vocab, vocab);
                var max = System.Numerics.Tensors.TensorPrimitives.Max(row);
                var argmax = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
                double sum = 0;
                foreach (var v in row)
                {
                    sum += Math.Exp(v - max);
                }

                loss += max + Math.Log(sum) - row[w.Labels[t]];
                correct += argmax == w.Labels[t] ? 1 : 0;
                tokens++;
            }
        }

        return tokens == 0
            ? new CheckpointMetrics()
            : new CheckpointMetrics { ValidLoss = loss / tokens, ValidMeanTokenAccuracy = (double)correct / tokens };
    }

    /// <summary>A packed window from a shard as the trainer takes it (the 0/1 loss mask as weights).</summary>
    public static TrainingBatch ToBatch(ShardWindow window)
    {
        ArgumentNullException.ThrowIfNull(window);
        var mask = new float[window.LossMask.Length];
        for (var t = 0; t < mask.Length; t++)
        {
            mask[t] = window.LossMask[t];
        }

        return new TrainingBatch(window.InputIds, window.Labels, mask, window.Sizes);
    }

    private sealed record TrainerState(int Steps, int OptimizerSteps);
}

/// <summary>A checkpoint could not be made durable; the job fails, earlier checkpoints stay intact.</summary>
public sealed class CheckpointFailedException(string message, Exception inner) : Exception(message, inner);
