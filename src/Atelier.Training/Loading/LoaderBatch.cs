using Atelier.Data.Shards;

namespace Atelier.Training.Loading;

/// <summary>
/// One batch of windows. A batch may straddle an epoch boundary (its last windows come from the
/// next epoch's permutation): every batch has <see cref="LoaderOptions.BatchSize"/> windows, and
/// the trainer counts steps, not epochs.
/// </summary>
/// <param name="Windows">The windows, in order.</param>
/// <param name="Epoch">The epoch of the first window.</param>
/// <param name="After">The position to save to resume right after this batch.</param>
public sealed record LoaderBatch(IReadOnlyList<ShardWindow> Windows, int Epoch, LoaderPosition After);
