using System.Buffers;

namespace Atelier.Data.Readers;

/// <summary>
/// Splits a stream into lines of UTF-8 bytes without decoding them, with a bounded buffer: memory
/// is the longest line (up to <see cref="MaxLineBytes"/>), not the file. A trailing <c>\r</c> is removed.
/// </summary>
internal sealed class Utf8LineReader : IDisposable
{
    private readonly Stream _stream;
    private byte[] _buffer;
    private int _start;
    private int _end;
    private bool _eof;

    public Utf8LineReader(Stream stream, int maxLineBytes)
    {
        _stream = stream;
        MaxLineBytes = maxLineBytes;
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Min(1 << 16, maxLineBytes + 1));
    }

    public int MaxLineBytes { get; }

    /// <summary>1-based number of the line last returned.</summary>
    public long LineNumber { get; private set; }

    /// <summary>Bytes consumed so far, line terminators included.</summary>
    public long BytesConsumed { get; private set; }

    /// <summary>
    /// Reads the next line. Returns false at the end. <paramref name="tooLong"/> is set when the line
    /// exceeded <see cref="MaxLineBytes"/>; its bytes are skipped and <paramref name="line"/> is empty.
    /// The memory is valid until the next call.
    /// </summary>
    public bool TryReadLine(out ReadOnlyMemory<byte> line, out bool tooLong)
    {
        tooLong = false;
        int scanFrom = _start;
        while (true)
        {
            int newline = _buffer.AsSpan(scanFrom, _end - scanFrom).IndexOf((byte)'\n');
            if (newline >= 0)
            {
                int lineEnd = scanFrom + newline;
                tooLong |= lineEnd - _start > MaxLineBytes;
                line = tooLong ? ReadOnlyMemory<byte>.Empty : TrimCr(_buffer.AsMemory(_start, lineEnd - _start));
                BytesConsumed += lineEnd + 1 - _start;
                _start = lineEnd + 1;
                LineNumber++;
                return true;
            }

            if (_eof)
            {
                tooLong |= _end - _start > MaxLineBytes;
                if (_end == _start && !tooLong)
                {
                    line = default;
                    return false;
                }

                line = tooLong ? ReadOnlyMemory<byte>.Empty : TrimCr(_buffer.AsMemory(_start, _end - _start));
                BytesConsumed += _end - _start;
                _start = _end;
                LineNumber++;
                return true;
            }

            if (_end - _start > MaxLineBytes)
            {
                // Too long: keep scanning for its end but drop what was buffered, so memory stays bounded.
                tooLong = true;
                BytesConsumed += _end - _start;
                _start = _end;
            }

            scanFrom = _end - _start;
            Fill();
            scanFrom += _start;
        }
    }

    private void Fill()
    {
        if (_start > 0)
        {
            Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        if (_end == _buffer.Length)
        {
            byte[] larger = ArrayPool<byte>.Shared.Rent(_buffer.Length * 2);
            Buffer.BlockCopy(_buffer, 0, larger, 0, _end);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        int read = _stream.Read(_buffer, _end, _buffer.Length - _end);
        if (read == 0)
        {
            _eof = true;
        }

        _end += read;
    }

    private static ReadOnlyMemory<byte> TrimCr(ReadOnlyMemory<byte> line) =>
        line.Length > 0 && line.Span[^1] == (byte)'\r' ? line[..^1] : line;

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
