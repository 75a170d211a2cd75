namespace Atelier.Training.Loading;

/// <summary>How a <see cref="ShardedSequenceLoader"/> shuffles, batches, reads and prefetches.</summary>
public sealed record LoaderOptions
{
    /// <summary>The default <see cref="CoalesceGapBytes"/>: 64 KiB, a local disk reads that in far less than a seek.</summary>
    public const long DefaultCoalesceGapBytes = 64 * 1024;

    /// <summary>The default <see cref="MaxRangeBytes"/>: 8 MiB.</summary>
    public const long DefaultMaxRangeBytes = 8 << 20;

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
    /// bounded by <c>(PrefetchBatches + 1) * BatchSize</c> windows (<see cref="MaxPrefetchBatches"/> when
    /// the depth may grow). Changes throughput only, never the order.
    /// </summary>
    public int PrefetchBatches { get; init; } = 4;

    /// <summary>
    /// How far the read-ahead may grow (null, the default: it stays at <see cref="PrefetchBatches"/>).
    /// Each time the trainer has to wait for a batch (after the first), the loader reads one batch
    /// further ahead and one more batch at once, up to this depth: on a remote store whose latency
    /// is not known in advance the depth settles where reading keeps up with the trainer. Changes
    /// throughput only, never the order.
    /// </summary>
    public int? MaxPrefetchBatches { get; init; }

    /// <summary>
    /// Range reads in flight at once over the whole loader (at least 1). The slices of one batch
    /// are read concurrently, so a batch costs about one round trip rather than one per slice.
    /// </summary>
    public int ConcurrentReads { get; init; } = 8;

    /// <summary>
    /// The largest hole between two column slices of the windows read together (a batch's windows
    /// in one shard) that one range read spans rather than paying another round trip (at least 0).
    /// Worth about what the store transfers in one round trip's time.
    /// </summary>
    public long CoalesceGapBytes { get; init; } = DefaultCoalesceGapBytes;

    /// <summary>The largest range read merging builds (at least 1); bounds the transient buffers.</summary>
    public long MaxRangeBytes { get; init; } = DefaultMaxRangeBytes;

    /// <summary>Streams kept open between reads, over all shards (at least <see cref="ConcurrentReads"/> is sensible).</summary>
    public int MaxIdleStreams { get; init; } = 64;

    /// <summary>The clock for <see cref="LoaderStats"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>
    /// These options with the read-ahead sized for shards whose every range read pays
    /// <paramref name="readLatency"/> (a shard on another rack or site: <c>TopologyMap.Latency</c>
    /// between the training node and the data's node; an object store: its time to first byte).
    /// <list type="bullet">
    /// <item>Holes up to what a link of about 100 MB/s carries in one round trip are read through
    /// (<see cref="CoalesceGapBytes"/>, between 64 KiB and 4 MiB).</item>
    /// <item>Every slice of a batch is read at once (<see cref="ConcurrentReads"/>, at most 256 over the
    /// loader), so a batch costs about one round trip.</item>
    /// <item>With a <paramref name="stepTime"/> estimate, enough batches are read at once and ahead
    /// that reading one batch takes at most half the time the trainer spends on those ahead of it
    /// (at most 64 batches read at once);
    /// without one, the depth starts at <see cref="PrefetchBatches"/> and grows while the trainer waits
    /// (<see cref="MaxPrefetchBatches"/>).</item>
    /// </list>
    /// Either way the read-ahead holds at most <paramref name="maxBufferedWindows"/> windows (and never
    /// less than these options' own depth). A zero latency returns the options unchanged. The order
    /// of windows and batches never depends on any of this.
    /// </summary>
    /// <param name="readLatency">The round trip of one range read.</param>
    /// <param name="stepTime">The trainer's time per step (per batch), when known.</param>
    /// <param name="maxBufferedWindows">The memory bound, in windows (a window of <c>seq_len</c> 4096 is about 40 KiB).</param>
    public LoaderOptions ForLatency(TimeSpan readLatency, TimeSpan? stepTime = null, int maxBufferedWindows = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(readLatency, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBufferedWindows, 1);
        if (stepTime is { } step)
        {
            ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(step, TimeSpan.Zero, nameof(stepTime));
        }

        if (readLatency == TimeSpan.Zero)
        {
            return this;
        }

        // Four slices per window; opening a stream costs a round trip too, so the estimate counts two.
        // Concurrency is capped: past a few hundred requests in flight a store throttles rather than overlaps.
        const int SlicesPerWindow = 4;
        const int MaxWorkers = 64;
        const int MaxConcurrentReads = 256;
        int perBatch = Math.Min(SlicesPerWindow * BatchSize, 64);
        long gap = Math.Clamp((long)(readLatency.TotalSeconds * 100e6), DefaultCoalesceGapBytes, 4L << 20);
        int cap = Math.Max(PrefetchBatches, maxBufferedWindows / BatchSize);
        double batchRead = readLatency.TotalSeconds * (2 + Math.Ceiling((double)SlicesPerWindow * BatchSize / perBatch));
        if (stepTime is { } known)
        {
            // In flight at once: enough that depth x step >= 2 x one batch's read (the margin absorbs jitter).
            int depth = Math.Clamp((int)Math.Ceiling(2 * batchRead / known.TotalSeconds) + 1, Math.Max(PrefetchBatches, 1), Math.Max(cap, 1));
            int workers = Math.Max(Workers, Math.Min(depth, MaxWorkers));
            return this with
            {
                PrefetchBatches = depth,
                Workers = workers,
                ConcurrentReads = Math.Max(ConcurrentReads, Math.Min(perBatch * workers, MaxConcurrentReads)),
                CoalesceGapBytes = Math.Max(CoalesceGapBytes, gap),
                MaxIdleStreams = Math.Max(MaxIdleStreams, Math.Min(perBatch * workers, MaxConcurrentReads)),
            };
        }

        return this with
        {
            MaxPrefetchBatches = Math.Max(cap, PrefetchBatches),
            ConcurrentReads = Math.Max(ConcurrentReads, Math.Min(perBatch * Workers, MaxConcurrentReads)),
            CoalesceGapBytes = Math.Max(CoalesceGapBytes, gap),
            MaxIdleStreams = Math.Max(MaxIdleStreams, Math.Min(perBatch * Workers, MaxConcurrentReads)),
        };
    }
}
