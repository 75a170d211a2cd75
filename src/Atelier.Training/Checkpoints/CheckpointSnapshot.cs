using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;

namespace Atelier.Training.Checkpoints;

/// <summary>
/// The in-memory copy of a checkpoint that the background persist works from: each entry cut into
/// chunk-sized segments, which are either copies in pooled buffers or, for frozen entries, slices
/// of the caller's memory.
/// </summary>
internal sealed class CheckpointSnapshot
{
    public required List<SnapshotEntry> Entries { get; init; }

    public required List<byte[]> Rented { get; init; }

    public long BytesCopied { get; init; }

    public IEnumerable<SnapshotSegment> Segments => Entries.SelectMany(e => e.Segments);
}

internal sealed class SnapshotEntry
{
    public required CheckpointEntry Source { get; init; }

    public required SnapshotSegment[] Segments { get; init; }
}

internal sealed class SnapshotSegment
{
    public required ReadOnlyMemory<byte> Bytes { get; init; }

    /// <summary>Where the hash of a frozen segment is cached, when the caller's memory is an array.</summary>
    public FrozenHashCache.Slot? Cache { get; init; }

    /// <summary>The chunk name, once hashed. Written by one persist worker, read after the pass joins.</summary>
    public string? Hash { get; set; }

    /// <summary>The bytes with the hash computed from them in this persist, when they were hashed in it.</summary>
    public HashedContent? Content { get; private set; }

    public string EnsureHash()
    {
        if (Hash is { } known)
        {
            return known;
        }

        if (Cache?.Hash is { } cached)
        {
            return Hash = cached;
        }

        Content = HashedContent.Compute(Bytes);
        Cache?.Hash = Content.Sha256;
        return Hash = Content.Sha256;
    }

    /// <summary>
    /// The bytes and their hash, for writing the chunk. A name that came from the frozen-hash cache
    /// was computed by an earlier persist, not from these bytes now: before bytes are written under
    /// it they are hashed again, so a frozen buffer that changed despite its promise is refused
    /// rather than stored under a name that lies. That costs a hash only when a frozen chunk is
    /// missing at a location, never for the chunks that dedup.
    /// </summary>
    public HashedContent ContentForWrite()
    {
        var hash = EnsureHash();
        if (Content is { } content)
        {
            return content;
        }

        if (!HashedContent.TryVerify(Bytes, hash, out content))
        {
            throw new InvalidOperationException(
                $"A frozen checkpoint entry changed after it was first hashed (chunk {hash} no longer matches its bytes); frozen entries must never change. Save it as a non-frozen entry instead.");
        }

        return Content = content;
    }
}

/// <summary>
/// Hashes of frozen memory (base weights), keyed weakly by the array that holds them: a frozen
/// entry is promised never to change, so it is hashed once per process instead of once per checkpoint.
/// </summary>
internal sealed class FrozenHashCache
{
    private readonly ConditionalWeakTable<byte[], ConcurrentDictionary<(int Offset, int Length), Slot>> _byArray = [];

    public Slot? SlotFor(ReadOnlyMemory<byte> bytes)
    {
        if (!MemoryMarshal.TryGetArray(bytes, out var segment) || segment.Array is null)
        {
            return null;
        }

        var slots = _byArray.GetValue(segment.Array, static _ => new ConcurrentDictionary<(int, int), Slot>());
        return slots.GetOrAdd((segment.Offset, segment.Count), static _ => new Slot());
    }

    internal sealed class Slot
    {
        public string? Hash { get; set; }
    }
}

/// <summary>
/// Chunk-sized buffers reused from one snapshot to the next, so a steady run of checkpoints
/// allocates nothing after the first (large-object-heap allocations would zero gigabytes per save).
/// </summary>
internal sealed class SnapshotBufferPool(int bufferSize, long maxPooledBytes)
{
    private readonly ConcurrentBag<byte[]> _free = [];
    private long _pooledBytes;

    public int BufferSize => bufferSize;

    public byte[] Rent()
    {
        if (_free.TryTake(out var buffer))
        {
            Interlocked.Add(ref _pooledBytes, -buffer.Length);
            return buffer;
        }

        return GC.AllocateUninitializedArray<byte>(bufferSize);
    }

    /// <summary>Allocates and touches buffers until <paramref name="bytes"/> are pooled (up to the cap); returns the bytes pooled.</summary>
    public long Reserve(long bytes)
    {
        var target = Math.Min(bytes, maxPooledBytes);
        while (Interlocked.Read(ref _pooledBytes) < target)
        {
            var buffer = GC.AllocateUninitializedArray<byte>(bufferSize);

            // Touch every page now, so the first snapshot does not pay the page faults.
            buffer.AsSpan().Clear();
            Interlocked.Add(ref _pooledBytes, buffer.Length);
            _free.Add(buffer);
        }

        return Interlocked.Read(ref _pooledBytes);
    }

    public void Return(List<byte[]> buffers)
    {
        foreach (var buffer in buffers)
        {
            if (Interlocked.Add(ref _pooledBytes, buffer.Length) > maxPooledBytes)
            {
                Interlocked.Add(ref _pooledBytes, -buffer.Length);
                continue;
            }

            _free.Add(buffer);
        }

        buffers.Clear();
    }
}
