using System.Globalization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;
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
    /// <param name="microBatches">The step's micro-batches.</param>
    /// <param name="cancellationToken">
    /// Checked before each micro-batch, between the layers of each forward and backward, and once
    /// more before the optimiser step. A cancelled step throws <see cref="OperationCanceledException"/>
    /// and is abandoned whole: the adapter, the optimiser's moments and <see cref="StepCount"/> are
    /// as they were, and the step can be taken again with the same result.
    /// </param>
    public TrainStepResult Step(IReadOnlyList<TrainingBatch> microBatches, CancellationToken cancellationToken = default)
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
            _model.ThrowIfCancelled(cancellationToken);
            var key = DeterministicRandom.MixKey(Options.Seed, (ulong)StepCount, (ulong)i);
            loss += _model.ForwardBackward(microBatches[i], scale, key, cancellationToken);
        }

        // The last point where the step can be abandoned: until here only the gradients changed
        // (the next step zeroes them); from the optimiser step on, the step runs to its end.
        _model.ThrowIfCancelled(cancellationToken);
        var norm = GradientClipping.ClipByGlobalNorm(_adapter.Parameters().Select(p => p.Grad), Options.MaxGradNorm);
        var lr = Options.Schedule.At(StepCount);
        _optimizer.Step(lr);
        var result = new TrainStepResult(StepCount, loss / microBatches.Count, norm, lr);
        StepCount++;
        return result;
    }

    /// <summary>
    /// Writes everything needed to resume bit-exactly: the adapter's weights (under their own names),
    /// AdamW's moments (<c>optimizer.m.NAME</c>, <c>optimizer.v.NAME</c>) and the step counts, as one
    /// safetensors file written atomically.
    /// </summary>
    public void SaveCheckpoint(string path)
    {
        var writer = new SafeTensorsWriter();
        var i = 0;
        foreach (var (name, value, _) in _adapter.Parameters())
        {
            var (m, v) = _optimizer.Moments(i++);
            writer.Add(name, value.Span, value.Shape);
            writer.Add($"optimizer.m.{name}", m.Span, m.Shape);
            writer.Add($"optimizer.v.{name}", v.Span, v.Shape);
        }

        writer.AddMetadata("format", "atelier-lora-trainer");
        writer.AddMetadata("step", StepCount.ToString(CultureInfo.InvariantCulture));
        writer.AddMetadata("optimizer_step", _optimizer.StepCount.ToString(CultureInfo.InvariantCulture));
        writer.Save(path);
    }

    /// <summary>
    /// Restores a checkpoint written by <see cref="SaveCheckpoint"/> into this trainer and its model's adapter
    /// (which must have the same shape); training then continues exactly as if it had not stopped.
    /// </summary>
    public void LoadCheckpoint(string path)
    {
        using var file = SafeTensorsFile.Open(path);
        if (!file.Header.Metadata.TryGetValue("step", out var step) || !file.Header.Metadata.TryGetValue("optimizer_step", out var optStep)
            || !int.TryParse(step, NumberStyles.None, CultureInfo.InvariantCulture, out var steps)
            || !int.TryParse(optStep, NumberStyles.None, CultureInfo.InvariantCulture, out var optSteps))
        {
            throw new ModelFormatException($"{path}: not a LoRA trainer checkpoint (no step counts in its metadata).");
        }

        var i = 0;
        foreach (var (name, value, _) in _adapter.Parameters())
        {
            var (m, v) = _optimizer.Moments(i++);
            CopyInto(file, name, value);
            CopyInto(file, $"optimizer.m.{name}", m);
            CopyInto(file, $"optimizer.v.{name}", v);
        }

        StepCount = steps;
        _optimizer.RestoreStepCount(optSteps);
    }

    /// <summary>Optimiser steps AdamW has taken (its bias correction depends on it).</summary>
    public int OptimizerStepCount => _optimizer.StepCount;

    /// <summary>
    /// The tensors that make up the trainer's state, under the names <see cref="SaveCheckpoint"/>
    /// uses: each adapter weight, then <c>optimizer.m.NAME</c> and <c>optimizer.v.NAME</c>. The
    /// tensors are live: copy them before the next <see cref="Step"/>.
    /// </summary>
    public IEnumerable<(string Name, Tensor Value)> StateTensors()
    {
        var i = 0;
        foreach (var (name, value, _) in _adapter.Parameters())
        {
            var (m, v) = _optimizer.Moments(i++);
            yield return (name, value);
            yield return ($"optimizer.m.{name}", m);
            yield return ($"optimizer.v.{name}", v);
        }
    }

    /// <summary>
    /// Restores the state <see cref="StateTensors"/> exposed, from raw little-endian float32 bytes
    /// by name, and the step counts; training then continues exactly as if it had not stopped.
    /// </summary>
    public void RestoreState(Func<string, byte[]?> bytesOf, int steps, int optimizerSteps)
    {
        ArgumentNullException.ThrowIfNull(bytesOf);
        foreach (var (name, target) in StateTensors())
        {
            var bytes = bytesOf(name) ?? throw new ModelFormatException($"The trainer state has no tensor '{name}'.");
            if (bytes.Length != target.Length * sizeof(float))
            {
                throw new ModelFormatException($"The trainer state's tensor '{name}' has {bytes.Length} bytes, expected {target.Length * sizeof(float)}.");
            }

            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).CopyTo(target.Span);
        }

        StepCount = steps;
        _optimizer.RestoreStepCount(optimizerSteps);
    }

    private static void CopyInto(SafeTensorsFile file, string name, Tensor target)
    {
        if (!file.Contains(name))
        {
            throw new ModelFormatException($"{file.Path}: missing tensor '{name}'.");
        }

        using var t = file.ReadFloat32(name);
        if (!t.Shape.AsSpan().SequenceEqual(target.Shape))
        {
            throw new ModelFormatException($"{file.Path}: tensor '{name}' has shape [{string.Join(", ", t.Shape)}], expected [{string.Join(", ", target.Shape)}].");
        }

        t.Span.CopyTo(target.Span);
    }

    /// <inheritdoc />
    public void Dispose() => _optimizer.Dispose();
}
