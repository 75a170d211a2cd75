using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Atelier.Storage.Placement;

namespace Atelier.Vectors.Collections.Wal;

/// <summary>What one blob of a shard's log holds.</summary>
internal enum LogBlobKind : byte
{
    /// <summary>A batch of upserted points.</summary>
    Upsert = 1,

    /// <summary>A batch of deleted ids.</summary>
    Delete = 2,

    /// <summary>Every live point of the shard as of a log sequence number (replaces the log up to it).</summary>
    Snapshot = 3,
}

/// <summary>One point as the log holds it: the vector as the index receives it and the payload's JSON.</summary>
internal readonly record struct LogPoint(long Id, float[] Vector, Payload Payload);

/// <summary>
/// The binary form of a shard's log blobs. Each upsert or delete batch is one immutable blob committed
/// through the placement guard (fsync, atomic rename) before the batch is acknowledged, so an
/// acknowledged write survives a crash; a snapshot blob periodically replaces the log before it.
/// </summary>
/// <remarks>
/// Layout, little-endian: magic <c>ACLG</c>, format (u16), kind (u8), encoding (u8: 0 float32, 1 float16),
/// dimension (i32), count (i32); then per point: id (i64), then for upserts and snapshots the vector and
/// the payload (i32 length, UTF-8 JSON); last, the XxHash64 of everything before it. A blob whose hash,
/// magic or lengths do not check out is reported as corrupted rather than half-applied.
/// </remarks>
internal static class CollectionLog
{
    private const uint Magic = 0x474C4341; // "ACLG"
    private const ushort Format = 1;
    private const int HeaderBytes = 4 + 2 + 1 + 1 + 4 + 4;
    private const int FlushBytes = 1 << 20;

    /// <summary>Writes one log blob through a guarded write (not committed here).</summary>
    /// <param name="write">The guarded write.</param>
    /// <param name="kind">What the blob holds.</param>
    /// <param name="storage">How vectors are encoded.</param>
    /// <param name="dimension">Components per vector.</param>
    /// <param name="count">How many points <paramref name="points"/> yields: the header names it before they are written.</param>
    /// <param name="points">The points; enumerated once, so a snapshot can read each vector as it is written rather than hold them all.</param>
    /// <param name="cancellationToken">Cancels the write.</param>
    public static async ValueTask WriteAsync(GuardedWrite write, LogBlobKind kind, VectorStorage storage, int dimension, int count, IEnumerable<LogPoint> points, CancellationToken cancellationToken)
    {
        var writer = new BlobWriter(write);
        var header = new byte[HeaderBytes];
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header.AsSpan(4), Format);
        header[6] = (byte)kind;
        header[7] = storage == VectorStorage.Float16 ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), dimension);
        BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), count);
        await writer.WriteAsync(header, cancellationToken).ConfigureAwait(false);
        bool half = storage == VectorStorage.Float16;
        var scratch = new byte[8 + (dimension * sizeof(float)) + 4];
        int written = 0;
        foreach (var point in points)
        {
            if (++written > count)
            {
                ThrowCountMismatch(count);
            }

            BinaryPrimitives.WriteInt64LittleEndian(scratch, point.Id);
            if (kind == LogBlobKind.Delete)
            {
                await writer.WriteAsync(scratch.AsMemory(0, 8), cancellationToken).ConfigureAwait(false);
                continue;
            }

            int at = 8;
            if (half)
            {
                for (int i = 0; i < dimension; i++, at += 2)
                {
                    BinaryPrimitives.WriteHalfLittleEndian(scratch.AsSpan(at), (Half)point.Vector[i]);
                }
            }
            else
            {
                MemoryMarshal.AsBytes(point.Vector.AsSpan(0, dimension)).CopyTo(scratch.AsSpan(at));
                at += dimension * sizeof(float);
            }

            var payload = point.Payload.ToUtf8Json();
            BinaryPrimitives.WriteInt32LittleEndian(scratch.AsSpan(at), payload.Length);
            await writer.WriteAsync(scratch.AsMemory(0, at + 4), cancellationToken).ConfigureAwait(false);
            await writer.WriteAsync(payload, cancellationToken).ConfigureAwait(false);
        }

        if (written != count)
        {
            ThrowCountMismatch(count);
        }

        await writer.FinishAsync(cancellationToken).ConfigureAwait(false);
    }

    // The header already names the count: a blob with another number of points would replay wrongly, so the
    // write fails (and is never committed) instead.
    [DoesNotReturn]
    private static void ThrowCountMismatch(int count) =>
        throw new InvalidOperationException($"A log blob announced {count} points and was given a different number.");

    /// <summary>Reads a log blob back; <paramref name="apply"/> sees each point (for deletes, only its id).</summary>
    /// <exception cref="VectorStoreCorruptedException">The blob is truncated, altered or of another collection's shape.</exception>
    public static LogBlobKind Read(Stream stream, string key, int dimension, Action<LogBlobKind, long, float[]?, Payload?> apply)
    {
        var reader = new BlobReader(stream, key);
        var header = reader.Read(HeaderBytes);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic || BinaryPrimitives.ReadUInt16LittleEndian(header[4..]) != Format)
        {
            throw new VectorStoreCorruptedException($"Collection log blob '{key}' has no valid header.");
        }

        var kind = (LogBlobKind)header[6];
        bool half = header[7] == 1;
        int dim = BinaryPrimitives.ReadInt32LittleEndian(header[8..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(header[12..]);
        if (kind is not (LogBlobKind.Upsert or LogBlobKind.Delete or LogBlobKind.Snapshot) || dim != dimension || count < 0)
        {
            throw new VectorStoreCorruptedException($"Collection log blob '{key}' is of kind {(int)kind} with dimension {dim}; the collection has dimension {dimension}.");
        }

        int vectorBytes = dim * (half ? 2 : sizeof(float));
        for (int n = 0; n < count; n++)
        {
            long id = BinaryPrimitives.ReadInt64LittleEndian(reader.Read(8));
            if (kind == LogBlobKind.Delete)
            {
                apply(kind, id, null, null);
                continue;
            }

            var raw = reader.Read(vectorBytes);
            var vector = new float[dim];
            if (half)
            {
                for (int i = 0; i < dim; i++)
                {
                    vector[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(raw[(i * 2)..]);
                }
            }
            else
            {
                MemoryMarshal.Cast<byte, float>(raw).CopyTo(vector);
            }

            int payloadBytes = BinaryPrimitives.ReadInt32LittleEndian(reader.Read(4));
            if (payloadBytes < 2 || payloadBytes > 64 << 20)
            {
                throw new VectorStoreCorruptedException($"Collection log blob '{key}' has a payload of {payloadBytes} bytes at point {n}.");
            }

            Payload payload;
            try
            {
                payload = Payload.FromUtf8Json(reader.Read(payloadBytes));
            }
            catch (Exception e) when (e is FormatException or System.Text.Json.JsonException)
            {
                throw new VectorStoreCorruptedException($"Collection log blob '{key}' has an unreadable payload at point {n}: {e.Message}");
            }

            apply(kind, id, vector, payload);
        }

        reader.VerifyTrailer();
        return kind;
    }

    /// <summary>Buffers writes, hashes them, and appends the hash at the end.</summary>
    private sealed class BlobWriter(GuardedWrite write)
    {
        private readonly XxHash64 _hash = new();
        private readonly byte[] _buffer = new byte[FlushBytes];
        private int _filled;

        public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
        {
            _hash.Append(bytes.Span);
            while (bytes.Length > 0)
            {
                int n = Math.Min(bytes.Length, _buffer.Length - _filled);
                bytes.Span[..n].CopyTo(_buffer.AsSpan(_filled));
                _filled += n;
                bytes = bytes[n..];
                if (_filled == _buffer.Length)
                {
                    await FlushAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }

        public async ValueTask FinishAsync(CancellationToken cancellationToken)
        {
            var trailer = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(trailer, _hash.GetCurrentHashAsUInt64());
            if (_filled + 8 > _buffer.Length)
            {
                await FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            trailer.CopyTo(_buffer.AsSpan(_filled));
            _filled += 8;
            await FlushAsync(cancellationToken).ConfigureAwait(false);
        }

        private async ValueTask FlushAsync(CancellationToken cancellationToken)
        {
            // Awaited before the buffer is refilled: the write has consumed the bytes by then.
            await write.WriteAsync(_buffer.AsMemory(0, _filled), cancellationToken).ConfigureAwait(false);
            _filled = 0;
        }
    }

    /// <summary>Reads exact lengths from a blob stream, hashing them, so the trailer can be checked at the end.</summary>
    private sealed class BlobReader(Stream stream, string key)
    {
        private readonly BufferedStream _stream = new(stream, 1 << 16);
        private readonly XxHash64 _hash = new();
        private byte[] _scratch = new byte[1 << 12];

        public ReadOnlySpan<byte> Read(int count)
        {
            if (_scratch.Length < count)
            {
                _scratch = new byte[Math.Max(count, _scratch.Length * 2)];
            }

            var span = _scratch.AsSpan(0, count);
            try
            {
                _stream.ReadExactly(span);
            }
            catch (EndOfStreamException)
            {
                throw new VectorStoreCorruptedException($"Collection log blob '{key}' is truncated.");
            }

            _hash.Append(span);
            return span;
        }

        public void VerifyTrailer()
        {
            Span<byte> trailer = stackalloc byte[8];
            try
            {
                _stream.ReadExactly(trailer);
            }
            catch (EndOfStreamException)
            {
                throw new VectorStoreCorruptedException($"Collection log blob '{key}' is truncated (no checksum).");
            }

            if (BinaryPrimitives.ReadUInt64LittleEndian(trailer) != _hash.GetCurrentHashAsUInt64() || _stream.ReadByte() != -1)
            {
                throw new VectorStoreCorruptedException($"Collection log blob '{key}' fails its checksum.");
            }
        }
    }
}
