using Atelier.Core.IO;

namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// The non-empty payloads of a shard at the snapshot its saved graph holds, in a file beside the graph, so
/// that reopening the shard from its saved graph reads the payloads (small) instead of the snapshot blob
/// (every vector again: 15 GB at ten million 384-dimensional points). Derived data, like the saved graph:
/// it is trusted only when it names the same snapshot as the graph's marker, and the snapshot stays the truth.
/// </summary>
/// <remarks>
/// Layout (little endian): the magic <c>ATPAYLD1</c>, the snapshot sequence it covers (int64), the snapshot
/// blob's bytes (int64), the record count (int64), then per record the id (int64), the length (int32) and the
/// payload's UTF-8 JSON. Written through <see cref="AtomicFile"/>: a crash leaves the old file or the new one.
/// </remarks>
internal static class SavedPayloads
{
    /// <summary>The file name in the shard's segment directory.</summary>
    public const string FileName = "PAYLOADS";

    private static ReadOnlySpan<byte> Magic => "ATPAYLD1"u8;

    /// <summary>Writes the payloads of the snapshot <paramref name="covered"/> (durably, atomically).</summary>
    public static void Write(string directory, long covered, long snapshotBytes, IReadOnlyCollection<KeyValuePair<long, Payload>> payloads)
    {
        AtomicFile.DeleteTemporaryFiles(directory, FileName);
        AtomicFile.Write(Path.Combine(directory, FileName), stream =>
        {
            using var writer = new BinaryWriter(stream, System.Text.Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(covered);
            writer.Write(snapshotBytes);
            writer.Write((long)payloads.Count);
            foreach (var (id, payload) in payloads)
            {
                byte[] json = payload.ToUtf8Json();
                writer.Write(id);
                writer.Write(json.Length);
                writer.Write(json);
            }
        });
    }

    /// <summary>
    /// The payloads saved for snapshot <paramref name="covered"/> and that snapshot's bytes; null when there is
    /// no file, or it holds another snapshot, or it cannot be read whole (the caller reads the snapshot blob).
    /// </summary>
    public static (long SnapshotBytes, List<KeyValuePair<long, Payload>> Payloads)? TryRead(string directory, long covered)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            using var reader = new BinaryReader(stream);
            Span<byte> magic = stackalloc byte[8];
            stream.ReadExactly(magic);
            if (!magic.SequenceEqual(Magic) || reader.ReadInt64() != covered)
            {
                return null;
            }

            long snapshotBytes = reader.ReadInt64();
            long count = reader.ReadInt64();
            if (count < 0 || count > stream.Length)
            {
                return null;
            }

            var payloads = new List<KeyValuePair<long, Payload>>((int)count);
            for (long i = 0; i < count; i++)
            {
                long id = reader.ReadInt64();
                int length = reader.ReadInt32();
                if (length < 0 || length > stream.Length - stream.Position)
                {
                    return null;
                }

                payloads.Add(new(id, Payload.FromUtf8Json(reader.ReadBytes(length))));
            }

            return stream.Position == stream.Length ? (snapshotBytes, payloads) : null;
        }
        catch (Exception e) when (e is EndOfStreamException or IOException or FormatException or System.Text.Json.JsonException)
        {
            return null;
        }
    }
}
