using System.Runtime.InteropServices;

namespace Atelier.Core.IO;

/// <summary>
/// Crash-safe file writes, the one implementation every assembly uses: the content goes to a
/// temporary file beside the target (a unique name, so two writers never share one), is flushed
/// to disk, renamed over the target, and the directory is flushed, so that after a crash a reader
/// finds the old file or the whole new one, never a part, and the rename itself survives a power
/// cut. See <c>docs/decisions/0002-atomic-files.md</c>.
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    /// <param name="path">The target; replaced if it exists.</param>
    /// <param name="write">Writes the content to the stream it is given.</param>
    /// <param name="cancellationToken">Stops the write; the target is left as it was.</param>
    /// <param name="mode">The file's permissions (POSIX); default: the process's umask.</param>
    public static async Task WriteAsync(string path, Func<Stream, Task> write, CancellationToken cancellationToken, UnixFileMode? mode = null)
    {
        ArgumentNullException.ThrowIfNull(write);
        var (directory, temp) = TempBeside(path);
        try
        {
            var stream = new FileStream(temp, Options(mode, FileOptions.Asynchronous));
            await using (stream.ConfigureAwait(false))
            {
                await write(stream).ConfigureAwait(false);
                await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
            }

            cancellationToken.ThrowIfCancellationRequested();
            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        FsyncDirectory(directory);
    }

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/>, atomically.</summary>
    public static Task WriteAllBytesAsync(string path, ReadOnlyMemory<byte> content, CancellationToken cancellationToken, UnixFileMode? mode = null) =>
        WriteAsync(path, s => s.WriteAsync(content, cancellationToken).AsTask(), cancellationToken, mode);

    /// <summary>Writes <paramref name="content"/> to <paramref name="path"/>, atomically and synchronously.</summary>
    /// <param name="path">The target.</param>
    /// <param name="content">The bytes.</param>
    /// <param name="mode">The file's permissions (POSIX); default: the process's umask.</param>
    /// <param name="overwrite">Replace an existing target; when false and the target exists, <see cref="IOException"/> and nothing changes.</param>
    public static void WriteAllBytes(string path, ReadOnlySpan<byte> content, UnixFileMode? mode = null, bool overwrite = true)
    {
        var (directory, temp) = TempBeside(path);
        try
        {
            using (var stream = new FileStream(temp, Options(mode, FileOptions.None)))
            {
                stream.Write(content);
                stream.Flush(flushToDisk: true);
            }

            Commit(temp, path, overwrite);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        FsyncDirectory(directory);
    }

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically and synchronously.</summary>
    public static void Write(string path, Action<Stream> write, UnixFileMode? mode = null)
    {
        ArgumentNullException.ThrowIfNull(write);
        var (directory, temp) = TempBeside(path);
        try
        {
            using (var stream = new FileStream(temp, Options(mode, FileOptions.None)))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            Commit(temp, path, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }

        FsyncDirectory(directory);
    }

    private static void Commit(string temp, string path, bool overwrite)
    {

        if (overwrite)
        {
            File.Move(temp, path, overwrite: true);
        }
        else
        {
            MoveNoReplace(temp, path);
        }
    }

    /// <summary>
    /// Flushes the directory entry table of <paramref name="directory"/> to stable storage: .NET
    /// flushes files but has no API for directories, and without this a rename can be lost by a
    /// power cut although the file's bytes were on disk. POSIX only (NTFS journals renames).
    /// </summary>
    /// <exception cref="IOException">The directory cannot be opened or flushed. A filesystem that
    /// does not support flushing directories (EINVAL) is not an error: its renames are as durable
    /// as it makes them.</exception>
    public static void FsyncDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
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
            if (Fsync(fd) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != EInval)
            {
                throw new IOException($"Flushing directory '{directory}' failed (errno {errno}).", errno);
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

    private static (string Directory, string Temp) TempBeside(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var full = Path.GetFullPath(path);
        var directory = Path.GetDirectoryName(full)!;
        return (directory, Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp"));
    }

    private static FileStreamOptions Options(UnixFileMode? mode, FileOptions options)
    {
        var result = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 1 << 16, Options = options };
        if (mode is { } m && !OperatingSystem.IsWindows())
        {
            result.UnixCreateMode = m;
        }

        return result;
    }

    private const int ORdOnly = 0;
    private const int EExist = 17;
    private const int EInval = 22;

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
