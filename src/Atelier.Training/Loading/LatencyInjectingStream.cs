namespace Atelier.Training.Loading;

/// <summary>
/// A readable stream that waits a fixed time before each read at a new position and when opened,
/// as a store on another rack or in a cloud adds a round trip to each range read; a read that
/// continues where the last one ended streams on without waiting again. For tests and benchmarks:
/// it shows what the loader does over a remote store on a machine that has none
/// (<see cref="ShardSources.WithReadLatency"/>).
/// </summary>
internal sealed class LatencyInjectingStream(Stream inner, TimeSpan latency, TimeProvider clock) : Stream
{
    // Where the last read ended: a read starting elsewhere is a new range read and pays the latency.
    private long _streamingAt = -1;

    public override bool CanRead => inner.CanRead;

    public override bool CanSeek => inner.CanSeek;

    public override bool CanWrite => false;

    public override long Length => inner.Length;

    public override long Position
    {
        get => inner.Position;
        set => inner.Position = value;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        long at = inner.CanSeek ? inner.Position : _streamingAt;
        if (at != _streamingAt)
        {
            await Task.Delay(latency, clock, cancellationToken).ConfigureAwait(false);
        }

        int read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        _streamingAt = at + read;
        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    // Synchronous reads (Apache.Arrow's footer reader may make some) pay the latency by blocking, as they would on a socket.
    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        long at = inner.CanSeek ? inner.Position : _streamingAt;
        if (at != _streamingAt)
        {
            Thread.Sleep(latency);
        }

        int read = inner.Read(buffer);
        _streamingAt = at + read;
        return read;
    }

    public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override ValueTask DisposeAsync() => inner.DisposeAsync();
}
