using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Training;

/// <summary>Options of a LoRA training run.</summary>
/// <param name="Schedule">Learning-rate schedule.</param>
/// <param name="Optimizer">AdamW hyper-parameters.</param>
/// <param name="MaxGradNorm">Global-norm clipping threshold (0 disables).</param>
/// <param name="Seed">Seeds the LoRA dropout masks.</param>
public sealed record LoraTrainingOptions(WarmupCosineSchedule Schedule, AdamWOptions Optimizer, float MaxGradNorm = 1f, ulong Seed = 0);

/// <summary>What one optimiser step did.</summary>
/// <param name="Step">The 0-based step index.</param>
/// <param name="Loss">Mean loss over the micro-batches.</param>
/// <param name="GradNorm">Global gradient norm before clipping.</param>
/// <param name="LearningRate">Learning rate used.</param>
public readonly record struct TrainStepResult(int Step, double Loss, double GradNorm, float LearningRate);

/// <summary>
/// Trains a model's LoRA adapter: gradient accumulation over micro-batches, global-norm clipping,
/// AdamW, warmup + cosine. Given the same seed, adapter initialisation and data, the adapter's bits
/// after any number of steps are the same on every run and for any kernel thread count.
/// </summary>
public sealed class LoraTrainer : IDisposable
{
    private readonly MistralModel _model;
    private readonly LoraAdapter _adapter;
    private readonly AdamW _optimizer;

    /// <summary>Creates a trainer for the adapter attached to <paramref name="model"/>.</summary>
    public LoraTrainer(MistralModel model, LoraTrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(model);
        _model = model;
        _adapter = model.Adapter ?? throw new InvalidOperationException("Attach a LoRA adapter before training.");
        Options = options;
        _optimizer = new AdamW(_adapter.Parameters().Select(p => (p.Value, p.Grad)), options.Optimizer);
    }

    /// <summary>The options.</summary>
    public LoraTrainingOptions Options { get; }

    /// <summary>Optimiser steps taken.</summary>
    public int StepCount { get; private set; }

    /// <summary>One optimiser step, accumulating gradients over <paramref name="microBatches"/> (each weighted equally).</summary>
    public TrainStepResult Step(IReadOnlyList<TrainingBatch> microBatches)
    {
        ArgumentNullException.ThrowIfNull(microBatches);
        if (microBatches.Count == 0)
        {
            throw new ArgumentException("A step needs at least one micro-batch.", nameof(microBatches));
        }

        _adapter.ZeroGrad();
        var scale = 1f / microBatches.Count;
        double loss = 0;
        for (var i = 0; i < microBatches.Count; i++)
        {
            var key = DeterministicRandom.MixKey(Options.Seed, (ulong)StepCount, (ulong)i);
            loss += _model.ForwardBackward(microBatches[i], scale, key);
        }

        var norm = GradientClipping.ClipByGlobalNorm(_adapter.Parameters().Select(p => p.Grad), Options.MaxGradNorm);
        var lr = Options.Schedule.At(StepCount);
        _optimizer.Step(lr);
        var result = new TrainStepResult(StepCount, loss / microBatches.Count, norm, lr);
        StepCount++;
        return result;
    }

    /// <inheritdoc />
    public void Dispose() => _optimizer.Dispose();
}
