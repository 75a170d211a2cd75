using Atelier.Core.Errors;
using Atelier.Storage.Blobs;

namespace Atelier.Testing;

/// <summary>A process dying at a chosen point: nothing after it runs, no cleanup included.</summary>
public sealed class SimulatedCrashException(string message) : Exception(message);

/// <summary>Where a <see cref="FaultyBlobStore"/> dies.</summary>
public enum CrashPoint
{
    /// <summary>Half-way through the bytes of the nth write (a partial temp file stays behind).</summary>
    DuringWrite,

    /// <summary>After the nth write's bytes, before its commit (rename).</summary>
    BeforeCommit,

    /// <summary>Right after the nth commit.</summary>
    AfterCommit,
}

/// <summary>
/// Wraps a blob store to count what is written and to fail like a full disk or die like a killed
/// process at a chosen write. Once dead, every call throws and nothing is cleaned up.
/// </summary>
public sealed class FaultyBlobStore(IBlobStore inner) : IBlobStore
{
    private long _bytesCommitted;
    private long _bytesAccepted;
    private int _writes;
    private int _commits;
    private int _commitsOnPoolThreads;

    public string LocationId => inner.LocationId;

    /// <summary>Writes fail with "location full" once this many more bytes were accepted (ENOSPC-like).</summary>
    public long? CapacityBytes
    {
        get;
        set
        {
            field = value;
            Interlocked.Exchange(ref _bytesAccepted, 0);
        }
    }

    /// <summary>Die at write number <see cref="CrashAt"/> (1-based), at <see cref="CrashPointKind"/>.</summary>
    public int? CrashAt { get; set; }

    public CrashPoint CrashPointKind { get; set; }

    /// <summary>While set, commits wait for it (to hold a persist in flight).</summary>
    public TaskCompletionSource? CommitGate { get; set; }

    public bool Dead { get; private set; }

    public long BytesCommitted => Interlocked.Read(ref _bytesCommitted);

    public int Writes => Volatile.Read(ref _writes);

    public int Commits => Volatile.Read(ref _commits);

    /// <summary>
    /// Commits that reached the wrapped store's commit (for a local store, the blocking fsync and
    /// rename) on a thread-pool thread. The waits before it capture the caller's context, so a
    /// caller that commits on threads of its own sees them resume there.
    /// </summary>
    public int CommitsOnPoolThreads => Volatile.Read(ref _commitsOnPoolThreads);

    public void ResetCounters()
    {
        Interlocked.Exchange(ref _bytesCommitted, 0);
        Interlocked.Exchange(ref _writes, 0);
        Interlocked.Exchange(ref _commits, 0);
    }

    public async ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        var number = Interlocked.Increment(ref _writes);
        var pending = await inner.BeginWriteAsync(key, cancellationToken);
        return new FaultyPendingBlob(this, pending, number);
    }

    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.DeleteAsync(key, cancellationToken);
    }

    public ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.OpenReadAsync(key, cancellationToken);
    }

    public ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.OpenReadRangeAsync(key, offset, length, cancellationToken);
    }

    public ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.GetLengthAsync(key, cancellationToken);
    }

    public IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.ListAsync(prefix, cancellationToken);
    }

    public ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        ThrowIfDead();
        return inner.RemoveOrphansAsync(cancellationToken);
    }

    private void ThrowIfDead()
    {
        if (Dead)
        {
            throw new SimulatedCrashException($"location {LocationId}: the process is dead");
        }
    }

    private SimulatedCrashException Die(string where)
    {
        Dead = true;
        return new SimulatedCrashException($"simulated crash at {LocationId}: {where}");
    }

    private sealed class FaultyPendingBlob(FaultyBlobStore owner, PendingBlob inner, int number) : PendingBlob
    {
        private readonly FaultyStream _stream = new(owner, inner.Stream, number);

        public override string Key => inner.Key;

        public override Stream Stream => _stream;

        public override async ValueTask CommitAsync(CancellationToken cancellationToken)
        {
            owner.ThrowIfDead();
            if (owner.CommitGate is { } gate)
            {
                await gate.Task.WaitAsync(cancellationToken);
            }

            if (owner.CrashAt == number && owner.CrashPointKind == CrashPoint.BeforeCommit)
            {
                throw owner.Die($"write {number} ({inner.Key}) before its commit");
            }

            if (Thread.CurrentThread.IsThreadPoolThread)
            {
                Interlocked.Increment(ref owner._commitsOnPoolThreads);
            }

            await inner.CommitAsync(cancellationToken);
            Interlocked.Increment(ref owner._commits);
            Interlocked.Add(ref owner._bytesCommitted, _stream.Written);
            if (owner.CrashAt == number && owner.CrashPointKind == CrashPoint.AfterCommit)
            {
                throw owner.Die($"write {number} ({inner.Key}) after its commit");
            }
        }

        public override ValueTask DisposeAsync() =>

            // A dead process cleans nothing up: its temp files stay for recovery to find.
            owner.Dead ? ValueTask.CompletedTask : inner.DisposeAsync();
    }

    private sealed class FaultyStream(FaultyBlobStore owner, Stream inner, int number) : Stream
    {
        public long Written { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => Written; set => throw new NotSupportedException(); }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            owner.ThrowIfDead();
            if (owner.CrashAt == number && owner.CrashPointKind == CrashPoint.DuringWrite)
            {
                await inner.WriteAsync(buffer[..(buffer.Length / 2)], cancellationToken);
                await inner.FlushAsync(cancellationToken);
                throw owner.Die($"write {number} half-way through its bytes");
            }

            if (owner.CapacityBytes is { } capacity && Interlocked.Add(ref owner._bytesAccepted, buffer.Length) > capacity)
            {
                throw new StorageUnavailableException($"Location '{owner.LocationId}' is full (simulated ENOSPC).");
            }

            await inner.WriteAsync(buffer, cancellationToken);
            Written += buffer.Length;
        }
    }
}
