using Atelier.Storage.Blobs;

namespace Atelier.Storage.Audit;

/// <summary>
/// A file of zeros, written while there is space, that is given up when a deletion finds the disk
/// full: deleting must work on a full disk, and a deletion writes too (its catalog change and its
/// audit event). Released, it leaves room for those writes; it is written again by the first append
/// that finds space. See docs/decisions/0003-deleting-on-a-full-disk.md.
/// </summary>
public sealed class SpaceReserve
{
    private readonly Lock _gate = new();

    /// <summary>A reserve of <paramref name="bytes"/> at <paramref name="path"/>; nothing is written until <see cref="TryRestore"/>.</summary>
    public SpaceReserve(string path, long bytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Path = path;
        Bytes = bytes;
    }

    /// <summary>The reserve file.</summary>
    public string Path { get; }

    /// <summary>Its size.</summary>
    public long Bytes { get; }

    /// <summary>True while the reserve is on disk, whole.</summary>
    public bool IsHeld
    {
        get
        {
            var info = new FileInfo(Path);
            return info.Exists && info.Length == Bytes;
        }
    }

    /// <summary>Writes the reserve when it is missing; false when the disk has no room for it yet.</summary>
    public bool TryRestore()
    {
        lock (_gate)
        {
            if (IsHeld || Bytes == 0)
            {
                return true;
            }

            try
            {
                // Zeros actually written, not a sparse length: a sparse file would free nothing.
                using (var stream = new FileStream(Path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0))
                {
                    var zeros = new byte[64 * 1024];
                    for (long written = 0; written < Bytes; written += zeros.Length)
                    {
                        stream.Write(zeros, 0, (int)Math.Min(zeros.Length, Bytes - written));
                    }

                    stream.Flush(flushToDisk: true);
                }

                return true;
            }
            catch (IOException e) when (LocalDirectoryBlobStore.IsDiskFull(e))
            {
                File.Delete(Path);
                return false;
            }
        }
    }

    /// <summary>Deletes the reserve, freeing its space; false when there was none to give.</summary>
    public bool Release()
    {
        lock (_gate)
        {
            if (!File.Exists(Path))
            {
                return false;
            }

            File.Delete(Path);
            return true;
        }
    }
}
