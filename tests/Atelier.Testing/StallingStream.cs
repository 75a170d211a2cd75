using System.Text;

namespace Atelier.Testing;

/// <summary>Valid JSONL bytes up to a point, then a read that waits until cancelled.</summary>
public sealed class StallingStream(long bytesBeforeStall) : Stream
{
    private static readonly byte[] Line = Encoding.UTF8.GetBytes("{\"text\":\"" + new string('x', 1000) + "\"}\n");
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("async only");

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (_position >= bytesBeforeStall)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }

        var n = 0;
        while (n < buffer.Length)
        {
            var offset = (int)(_position % Line.Length);
            var take = Math.Min(buffer.Length - n, Line.Length - offset);
            Line.AsSpan(offset, take).CopyTo(buffer.Span[n..]);
            n += take;
            _position += take;
        }

        return n;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
