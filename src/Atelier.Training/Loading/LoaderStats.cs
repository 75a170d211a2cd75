namespace Atelier.Training.Loading;

/// <summary>What a loader has done so far.</summary>
/// <param name="Batches">Batches handed out by <see cref="ShardedSequenceLoader.NextAsync"/>.</param>
/// <param name="WindowsRead">Windows read by the workers (including those prefetched and not yet handed out).</param>
/// <param name="BytesRead">Column bytes read for those windows (shard metadata excluded).</param>
/// <param name="ReadTime">Time the workers spent reading, summed over workers.</param>
/// <param name="WaitTime">Time callers spent waiting in <see cref="ShardedSequenceLoader.NextAsync"/> for a batch not yet read.</param>
/// <param name="Waits">Calls to <see cref="ShardedSequenceLoader.NextAsync"/> that had to wait.</param>
public sealed record LoaderStats(long Batches, long WindowsRead, long BytesRead, TimeSpan ReadTime, TimeSpan WaitTime, long Waits)
{
    /// <summary>Range reads issued for windows (after coalescing; shard metadata excluded): the round trips a remote store charged.</summary>
    public long RangeReads { get; init; }

    /// <summary>Bytes those range reads fetched: <see cref="BytesRead"/> plus the holes read through.</summary>
    public long BytesFetched { get; init; }
}

/// <summary>The loader's counters, updated by the workers.</summary>
internal sealed class LoaderCounters
{
    private long _batches;
    private long _windows;
    private long _bytes;
    private long _readTicks;
    private long _waitTicks;
    private long _waits;
    private long _rangeReads;
    private long _bytesFetched;

    public long Batches => Interlocked.Read(ref _batches);

    public void AddBytes(long bytes) => Interlocked.Add(ref _bytes, bytes);

    public void AddRead(int windows, TimeSpan elapsed)
    {
        Interlocked.Add(ref _windows, windows);
        Interlocked.Add(ref _readTicks, elapsed.Ticks);
    }

    public void AddRangeReads(int reads, long bytes)
    {
        Interlocked.Add(ref _rangeReads, reads);
        Interlocked.Add(ref _bytesFetched, bytes);
    }

    public void AddBatch() => Interlocked.Increment(ref _batches);

    public void AddWait(TimeSpan elapsed)
    {
        Interlocked.Increment(ref _waits);
        Interlocked.Add(ref _waitTicks, elapsed.Ticks);
    }

    public LoaderStats Snapshot() => new(
        Interlocked.Read(ref _batches),
        Interlocked.Read(ref _windows),
        Interlocked.Read(ref _bytes),
        TimeSpan.FromTicks(Interlocked.Read(ref _readTicks)),
        TimeSpan.FromTicks(Interlocked.Read(ref _waitTicks)),
        Interlocked.Read(ref _waits))
    {
        RangeReads = Interlocked.Read(ref _rangeReads),
        BytesFetched = Interlocked.Read(ref _bytesFetched),
    };
}
