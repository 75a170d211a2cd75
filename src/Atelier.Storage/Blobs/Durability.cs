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

    /// <summary>
    /// Moves <paramref name="source"/> to <paramref name="destination"/> unless the destination
    /// exists, atomically: two writers committing the same key cannot both win. .NET's
    /// <c>File.Move(overwrite: false)</c> checks and then renames, and <c>rename(2)</c> replaces;
    /// <c>link(2)</c> fails with EEXIST instead, after which the source is unlinked.
    /// </summary>
    /// <exception cref="IOException">The destination exists, or the move failed.</exception>
    public static void MoveNoReplace(string source, string destination)
    {
        if (OperatingSystem.IsWindows())
        {
            File.Move(source, destination, overwrite: false);
            return;
        }

        if (Link(source, destination) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw errno == EExist
                ? new IOException($"'{destination}' already exists.")
                : new IOException($"Cannot link '{source}' to '{destination}' (errno {errno}).", errno);
        }

        if (Unlink(source) != 0)
        {
            throw new IOException($"Cannot remove '{source}' after linking it to '{destination}' (errno {Marshal.GetLastPInvokeError()}).");
        }
    }

    private const int EExist = 17;

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Link(string oldPath, string newPath);

    [LibraryImport("libc", EntryPoint = "unlink", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Unlink(string path);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
