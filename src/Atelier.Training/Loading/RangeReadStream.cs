namespace Atelier.Training.Loading;

/// <summary>
/// A read-only, seekable stream over an immutable object read by ranged requests (an S3 location's
/// shard): each read at the current position fetches exactly that range and nothing is buffered, so
/// the loader's coalesced slice reads become one range request each. Made by
/// <see cref="ShardSources.FromRangeReads"/>.
/// </summary>
internal sealed class RangeReadStream(long length, Func<long, long, CancellationToken, ValueTask<Stream>> openRangeAsync) : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => length;

    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int count = (int)Math.Min(buffer.Length, Math.Max(0, length - _position));
        if (count == 0)
        {
            return 0;
        }

        Stream range = await openRangeAsync(_position, count, cancellationToken).ConfigureAwait(false);
        await using (range.ConfigureAwait(false))
        {
            int read = await range.ReadAtLeastAsync(buffer[..count], count, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            if (read < count)
            {
                // The object is immutable and its length known: a short range means it changed or was cut.
                throw new IOException($"A range read at {_position} returned {read} of {count} bytes; the object is shorter than its {length} bytes.");
            }

            _position += read;
            return read;
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    // The loader reads only asynchronously; a synchronous read would block a thread on the network.
    public override int Read(byte[] buffer, int offset, int count) =>
        throw new NotSupportedException("A range-read stream reads asynchronously only.");

    public override long Seek(long offset, SeekOrigin origin)
    {
        Position = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            _ => length + offset,
        };
        return _position;
    }

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
