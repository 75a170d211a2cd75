namespace Atelier.Training.Loading;

/// <summary>How a <see cref="ShardedSequenceLoader"/> shuffles, batches and prefetches.</summary>
public sealed record LoaderOptions
{
    /// <summary>The shuffle seed. With the shard list it decides the whole order, epoch after epoch.</summary>
    public required ulong Seed { get; init; }

    /// <summary>Windows per batch (at least 1).</summary>
    public int BatchSize { get; init; } = 1;

    /// <summary>
    /// Batches read in parallel (at least 1). Changes throughput only, never the order.
    /// </summary>
    public int Workers { get; init; } = 2;

    /// <summary>
    /// Batches read ahead of the one the trainer holds (0 reads each batch on demand). Memory is
    /// bounded by <c>(PrefetchBatches + 1) * BatchSize</c> windows. Changes throughput only, never the order.
    /// </summary>
    public int PrefetchBatches { get; init; } = 4;

    /// <summary>Streams kept open between reads, over all shards (at least <see cref="Workers"/> is sensible).</summary>
    public int MaxIdleStreams { get; init; } = 64;

    /// <summary>The clock for <see cref="LoaderStats"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;
}
