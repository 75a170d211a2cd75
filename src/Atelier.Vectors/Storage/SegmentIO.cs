using System.IO.Hashing;
using System.Text.Json;
using Atelier.Core.IO;

namespace Atelier.Vectors.Storage;

/// <summary>One committed segment file, as the manifest records it.</summary>
/// <param name="Name">File name within the store directory.</param>
/// <param name="Length">Exact length in bytes; a shorter file is a torn write.</param>
/// <param name="Hash">XxHash64 of the contents.</param>
internal sealed record SegmentFileEntry(string Name, long Length, ulong Hash);

/// <summary>One segment file to write: <paramref name="Length"/> bytes at <paramref name="Data"/> (native or pinned memory).</summary>
internal readonly record struct SegmentSource(string Name, nint Data, long Length);

/// <summary>
/// Writing and checking segment files and manifests, through <see cref="AtomicFile"/>: data files are
/// written under fresh generation names (each to a temporary file, flushed, renamed, then the directory
/// flushed once for all of them), then the manifest replaces the old one the same way. A crash at any
/// point leaves the old manifest (and the files it names) or the new one, never a mix, and never a
/// partly written file under a segment's name.
/// </summary>
internal static unsafe class SegmentIO
{
    public const string ManifestName = "MANIFEST";
    private const int ChunkBytes = 16 << 20;

    /// <summary>
    /// Writes <paramref name="segments"/> into <paramref name="directory"/>, durable when this returns, and
    /// returns what the manifest records of each. A failure leaves no temporary file; files already renamed
    /// are named by no manifest yet and are swept by <see cref="DeleteStale"/>.
    /// </summary>
    public static SegmentFileEntry[] WriteSegments(string directory, IReadOnlyList<SegmentSource> segments)
    {
        var entries = new SegmentFileEntry[segments.Count];
        var files = new (string Name, Action<Stream> Write)[segments.Count];
        for (int i = 0; i < segments.Count; i++)
        {
            int index = i;
            var segment = segments[i];
            files[i] = (segment.Name, stream => entries[index] = new SegmentFileEntry(segment.Name, segment.Length, WriteHashed(stream, (byte*)segment.Data, segment.Length)));
        }

        AtomicFile.WriteFiles(directory, files);
        return entries;
    }

    private static ulong WriteHashed(Stream stream, byte* data, long length)
    {
        var hasher = new XxHash64();
        for (long offset = 0; offset < length; offset += ChunkBytes)
        {
            var chunk = new ReadOnlySpan<byte>(data + offset, (int)Math.Min(ChunkBytes, length - offset));
            hasher.Append(chunk);
            stream.Write(chunk);
        }

        return hasher.GetCurrentHashAsUInt64();
    }

    /// <summary>Checks that a segment is complete (length) and, when asked or when it is small, unaltered (hash).</summary>
    public static void Verify(string directory, SegmentFileEntry entry, bool hash)
    {
        string path = Path.Combine(directory, entry.Name);
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            VectorThrow.Corrupted($"Segment '{entry.Name}' named by the manifest in '{directory}' is missing.");
        }

        if (info.Length != entry.Length)
        {
            VectorThrow.Corrupted($"Segment '{entry.Name}' in '{directory}' has {info.Length} bytes; the manifest committed {entry.Length} (torn or truncated write).");
        }

        if (hash && HashFile(path) != entry.Hash)
        {
            VectorThrow.Corrupted($"Segment '{entry.Name}' in '{directory}' does not match its committed checksum.");
        }
    }

    public static ulong HashFile(string path)
    {
        var hasher = new XxHash64();
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        hasher.Append(stream);
        return hasher.GetCurrentHashAsUInt64();
    }

    /// <summary>Commits <paramref name="manifest"/>: checksum + JSON, written atomically over the old one.</summary>
    public static void CommitManifest<T>(string directory, T manifest)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(manifest);
        byte[] bytes = new byte[json.Length + 8];
        BitConverter.TryWriteBytes(bytes, XxHash64.HashToUInt64(json));
        json.CopyTo(bytes, 8);
        AtomicFile.WriteAllBytes(Path.Combine(directory, ManifestName), bytes);
    }

    /// <summary>Reads the committed manifest; null when none was ever committed.</summary>
    public static T? ReadManifestOrNull<T>(string directory)
        where T : class
    {
        string path = Path.Combine(directory, ManifestName);
        if (!File.Exists(path))
        {
            return null;
        }

        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 8 || BitConverter.ToUInt64(bytes, 0) != XxHash64.HashToUInt64(bytes.AsSpan(8)))
        {
            VectorThrow.Corrupted($"The manifest in '{directory}' fails its checksum.");
        }

        try
        {
            return JsonSerializer.Deserialize<T>(bytes.AsSpan(8)) ?? throw new JsonException("null manifest");
        }
        catch (JsonException e)
        {
            throw new VectorStoreCorruptedException($"The manifest in '{directory}' cannot be read: {e.Message}");
        }
    }

    /// <summary>Deletes generation files other than <paramref name="keep"/> and the temporary files interrupted writes left.</summary>
    public static void DeleteStale(string directory, IReadOnlySet<string> keep, string pattern)
    {
        foreach (string path in Directory.EnumerateFiles(directory, pattern))
        {
            if (!keep.Contains(Path.GetFileName(path)))
            {
                File.Delete(path);
            }
        }

        AtomicFile.DeleteTemporaryFiles(directory, pattern);
        AtomicFile.DeleteTemporaryFiles(directory, ManifestName);

        // The fixed temporary name versions before AtomicFile used: a directory they crashed in keeps it.
        File.Delete(Path.Combine(directory, ManifestName + ".tmp"));
    }
}
