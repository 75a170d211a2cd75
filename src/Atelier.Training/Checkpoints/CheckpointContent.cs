namespace Atelier.Training.Checkpoints;

/// <summary>What an entry of a checkpoint holds.</summary>
public enum CheckpointEntryKind
{
    /// <summary>A tensor: raw little-endian elements of <see cref="CheckpointEntry.DType"/> in row-major order.</summary>
    Tensor,

    /// <summary>Opaque bytes: data-loader position, RNG state, trainer metadata.</summary>
    Blob,
}

/// <summary>
/// One named part of a checkpoint. <see cref="Data"/> is the caller's memory: the store copies it
/// during <see cref="CheckpointStore.SaveAsync"/> unless <see cref="Frozen"/> says it never changes.
/// </summary>
/// <param name="Name">Unique within the checkpoint, e.g. <c>adapter/layers.0.attention.wq.lora_A</c>.</param>
/// <param name="Kind">Tensor or blob.</param>
/// <param name="DType">For tensors, the safetensors dtype name (<c>F32</c>, <c>BF16</c>, ...).</param>
/// <param name="Shape">For tensors, the dimensions.</param>
/// <param name="Data">The bytes.</param>
/// <param name="Frozen">
/// True when the caller guarantees the bytes will not change until the save is durable (frozen
/// base weights): the snapshot then references them instead of copying, which is what keeps the
/// training stall proportional to the trainable state rather than to the whole model.
/// </param>
public sealed record CheckpointEntry(string Name, CheckpointEntryKind Kind, string? DType, IReadOnlyList<long>? Shape, ReadOnlyMemory<byte> Data, bool Frozen);

/// <summary>
/// The parts of one checkpoint, as the trainer has them: adapter weights, optimiser state,
/// data-loader position, RNG state, anything else it needs to resume on the exact next step.
/// </summary>
public sealed class CheckpointContent
{
    private readonly List<CheckpointEntry> _entries = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);

    /// <summary>The entries, in the order they were added.</summary>
    public IReadOnlyList<CheckpointEntry> Entries => _entries;

    /// <summary>The total bytes of all entries.</summary>
    public long TotalBytes { get; private set; }

    /// <summary>Adds a tensor.</summary>
    public CheckpointContent AddTensor(string name, string dtype, IReadOnlyList<long> shape, ReadOnlyMemory<byte> data, bool frozen = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(dtype);
        ArgumentNullException.ThrowIfNull(shape);
        return Add(new CheckpointEntry(name, CheckpointEntryKind.Tensor, dtype, [.. shape], data, frozen));
    }

    /// <summary>Adds opaque bytes.</summary>
    public CheckpointContent AddBlob(string name, ReadOnlyMemory<byte> data, bool frozen = false) =>
        Add(new CheckpointEntry(name, CheckpointEntryKind.Blob, null, null, data, frozen));

    private CheckpointContent Add(CheckpointEntry entry)
    {
        ArgumentException.ThrowIfNullOrEmpty(entry.Name);
        if (!_names.Add(entry.Name))
        {
            throw new ArgumentException($"The checkpoint already has an entry named '{entry.Name}'.", nameof(entry));
        }

        _entries.Add(entry);
        TotalBytes += entry.Data.Length;
        return this;
    }
}

/// <summary>The figures a checkpoint is judged by, as the Mistral API reports them per checkpoint.</summary>
public sealed record CheckpointMetrics
{
    /// <summary>Training loss at the step.</summary>
    public double? TrainLoss { get; init; }

    /// <summary>Validation loss at the step; retention keeps the lowest.</summary>
    public double? ValidLoss { get; init; }

    /// <summary>Mean token accuracy on the validation set.</summary>
    public double? ValidMeanTokenAccuracy { get; init; }

    /// <summary>Anything else the trainer wants to keep with the checkpoint.</summary>
    public IReadOnlyDictionary<string, double>? Extra { get; init; }
}

/// <summary>Which checkpoints of a job survive <see cref="CheckpointStore.ApplyRetentionAsync"/>.</summary>
/// <param name="KeepLast">The most recent steps to keep (at least 1, so a job can always resume).</param>
/// <param name="KeepBest">The steps with the lowest validation loss to keep as well.</param>
public sealed record RetentionPolicy(int KeepLast, int KeepBest);
