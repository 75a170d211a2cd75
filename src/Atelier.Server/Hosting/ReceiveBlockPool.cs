using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.AspNetCore.Connections;

namespace Atelier.Server.Hosting;

/// <summary>
/// Kestrel's memory pool with 64 KiB blocks instead of its default 4 KiB ones. The socket
/// transport receives into one pool block at a time, so the block size is the largest read it
/// asks the kernel for: with 4 KiB blocks a 2 GiB upload took about a million <c>recv</c> calls
/// (with the zero-byte "wait for data" receive before each), and on the virtualised hosts measured
/// those system calls cost more CPU than the bytes they moved (about 1.5 CPU-seconds per GiB).
/// With 64 KiB blocks the same body takes a sixteenth of the calls. An idle connection still
/// holds no block: the transport waits for data before it rents one.
/// <para>
/// Blocks are pinned (the socket reads into them) and kept for reuse up to
/// <see cref="MaxRetainedBlocks"/>; beyond that a returned block is left to the garbage collector,
/// so a burst of connections does not hold its memory forever.
/// </para>
/// </summary>
internal sealed class ReceiveBlockPool : MemoryPool<byte>
{
    /// <summary>The size of every block.</summary>
    public const int BlockSize = 64 * 1024;

    /// <summary>How many free blocks are kept for reuse (16 MiB).</summary>
    public const int MaxRetainedBlocks = 256;

    private readonly ConcurrentQueue<Block> _free = new();

    // ConcurrentQueue.Count is not O(1) under contention; this counter is (approximately) the same.
    private int _freeCount;
    private bool _disposed;

    /// <inheritdoc />
    public override int MaxBufferSize => BlockSize;

    /// <inheritdoc />
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(minBufferSize, BlockSize);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_free.TryDequeue(out var block))
        {
            Interlocked.Decrement(ref _freeCount);
            block.Lease();
            return block;
        }

        return new Block(this, GC.AllocateUninitializedArray<byte>(BlockSize, pinned: true));
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        _free.Clear();
    }

    private void Return(Block block)
    {
        if (_disposed || Interlocked.Increment(ref _freeCount) > MaxRetainedBlocks)
        {
            if (!_disposed)
            {
                Interlocked.Decrement(ref _freeCount);
            }

            return;
        }

        _free.Enqueue(block);
    }

    /// <summary>One pinned block; disposing it gives it back to the pool once.</summary>
    private sealed class Block(ReceiveBlockPool pool, byte[] array) : IMemoryOwner<byte>
    {
        private int _leased = 1;

        public Memory<byte> Memory => array;

        public void Lease() => _leased = 1;

        public void Dispose()
        {
            // A double dispose must not put one block in the queue twice (two owners of one buffer).
            if (Interlocked.Exchange(ref _leased, 0) == 1)
            {
                pool.Return(this);
            }
        }
    }
}

/// <summary>Gives Kestrel <see cref="ReceiveBlockPool"/>s (registered in place of its default factory).</summary>
internal sealed class ReceiveBlockPoolFactory : IMemoryPoolFactory<byte>
{
    /// <inheritdoc />
    public MemoryPool<byte> Create(MemoryPoolOptions? options = null) => new ReceiveBlockPool();
}
