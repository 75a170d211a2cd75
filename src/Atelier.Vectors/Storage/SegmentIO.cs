using System.IO.Hashing;
using System.Text.Json;

namespace Atelier.Vectors.Storage;

/// <summary>One committed segment file, as the manifest records it.</summary>
/// <param name="Name">File name within the store directory.</param>
/// <param name="Length">Exact length in bytes; a shorter file is a torn write.</param>
/// <param name="Hash">XxHash64 of the contents.</param>
internal sealed record SegmentFileEntry(string Name, long Length, ulong Hash);

/// <summary>
/// Writing and checking segment files and manifests: data files are written under fresh generation
/// names and fsynced, then the manifest is written to a temporary file, fsynced and renamed over the old
/// one. A crash at any point leaves the old manifest (and the files it names) or the new one, never a mix.
/// </summary>
internal static unsafe class SegmentIO
{
    public const string ManifestName = "MANIFEST";
    private const int ChunkBytes = 16 << 20;

    public static SegmentFileEntry WriteSegment(string directory, string name, byte* data, long length)
    {
        var hasher = new XxHash64();
        string path = Path.Combine(directory, name);
        using (var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
        {
            for (long offset = 0; offset < length; offset += ChunkBytes)
            {
                var chunk = new ReadOnlySpan<byte>(data + offset, (int)Math.Min(ChunkBytes, length - offset));
                hasher.Append(chunk);
                stream.Write(chunk);
            }

            stream.Flush(flushToDisk: true);
        }

        return new SegmentFileEntry(name, length, hasher.GetCurrentHashAsUInt64());
    }

    public static SegmentFileEntry WriteSegment(string directory, string name, ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            return WriteSegment(directory, name, p, data.Length);
        }
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

    /// <summary>Commits <paramref name="manifest"/>: checksum + JSON to a temp file, fsync, atomic rename.</summary>
    public static void CommitManifest<T>(string directory, T manifest)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(manifest);
        byte[] bytes = new byte[json.Length + 8];
        BitConverter.TryWriteBytes(bytes, XxHash64.HashToUInt64(json));
        json.CopyTo(bytes, 8);
        string temp = Path.Combine(directory, ManifestName + ".tmp");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }

        // rename(2) replaces the old manifest atomically. .NET cannot fsync a directory handle; on ext4/xfs
        // the rename is ordered after the fsynced data, so a crash shows the old or the new manifest.
        File.Move(temp, Path.Combine(directory, ManifestName), overwrite: true);
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

    /// <summary>Deletes generation files other than <paramref name="keep"/> and a leftover temporary manifest.</summary>
    public static void DeleteStale(string directory, IReadOnlySet<string> keep, string pattern)
    {
        foreach (string path in Directory.EnumerateFiles(directory, pattern))
        {
            if (!keep.Contains(Path.GetFileName(path)))
            {
                File.Delete(path);
            }
        }

        File.Delete(Path.Combine(directory, ManifestName + ".tmp"));
    }
}
