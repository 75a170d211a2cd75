using System.Runtime.InteropServices;

namespace Atelier.Storage.Blobs;

/// <summary>
/// fsync of directories. .NET flushes files (<see cref="FileStream.Flush(bool)"/>) but has no API
/// to flush a directory, and without it a rename can be lost by a power cut even though the file's
/// bytes were on disk. POSIX only; on Windows renames are journaled by NTFS.
/// </summary>
internal static partial class Durability
{
    private const int ORdOnly = 0;

    /// <summary>Flushes the directory entry table of <paramref name="directory"/> to stable storage.</summary>
    public static void FsyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var fd = Open(directory, ORdOnly);
        if (fd < 0)
        {
            throw new IOException($"Cannot open directory '{directory}' to flush it (errno {Marshal.GetLastPInvokeError()}).");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of directory '{directory}' failed (errno {Marshal.GetLastPInvokeError()}).");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
