using System.Runtime.InteropServices;

namespace Atelier.Core.IO;

/// <summary>
/// Crash-safe file writes, the one implementation every assembly uses: the content goes to a
/// temporary file beside the target (a unique name, so two writers never share one), is flushed
/// to disk, renamed over the target, and the directory is flushed, so that after a crash a reader
/// finds the old file or the whole new one, never a part, and the rename itself survives a power
/// cut. See <c>docs/decisions/0002-atomic-files.md</c>.
/// <para>
/// Failures, the same for every method: a failure before the rename (writing, flushing the
/// file, renaming) removes the temporary file and leaves the target as it was, and the exception
/// propagates. A failure to flush the directory after the rename (<see cref="FsyncDirectory"/>)
/// throws <see cref="IOException"/> although the new content is already in place: visible, but
/// not known to survive a power cut, so the caller must treat the write as failed (and may
/// write again: the result is the same). <see cref="FsyncDirectory"/> is the only directory flush
/// in Atelier, so this is the one behaviour.
/// </para>
/// </summary>
public static partial class AtomicFile
{
    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically.</summary>
    /// <param name="path">The target; replaced if it exists (unless <paramref name="overwrite"/> is false).</param>
    /// <param name="write">Writes the content to the stream it is given.</param>
    /// <param name="cancellationToken">Stops the write; the target is left as it was.</param>
    /// <param name="mode">The file's permissions (POSIX); default: the process's umask.</param>
    /// <param name="overwrite">Replace an existing target; when false and the target exists, <see cref="IOException"/> and nothing changes (exclusive create).</param>
    public static async Task WriteAsync(string path, Func<Stream, Task> write, CancellationToken cancellationToken, UnixFileMode? mode = null, bool overwrite = true)
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
            Commit(temp, path, overwrite);
        }
        catch
        {
            DeleteTemp(temp);
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
            DeleteTemp(temp);
            throw;
        }

        FsyncDirectory(directory);
    }

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>, atomically and synchronously.</summary>
    /// <param name="path">The target.</param>
    /// <param name="write">Writes the content to the stream it is given (a streaming write: the content need not be in memory).</param>
    /// <param name="mode">The file's permissions (POSIX); default: the process's umask.</param>
    /// <param name="overwrite">Replace an existing target; when false and the target exists, <see cref="IOException"/> and nothing changes.</param>
    public static void Write(string path, Action<Stream> write, UnixFileMode? mode = null, bool overwrite = true)
    {
        ArgumentNullException.ThrowIfNull(write);
        var (directory, temp) = TempBeside(path);
        WriteAndRename(temp, path, write, mode, overwrite);
        FsyncDirectory(directory);
    }

    /// <summary>
    /// Writes several files into one directory, each atomically (its own temporary file, flushed,
    /// renamed over its target), in order, and flushes the directory once after the last rename
    /// instead of once per file. When this returns, every file is durable under its name.
    /// </summary>
    /// <remarks>
    /// The set is not atomic as a whole: a failure or a crash part-way leaves the files before it
    /// replaced (each whole) and the rest as they were, and no temporary file of the failed one. A
    /// caller that needs all-or-nothing writes the files under new names and then commits a file
    /// that names them (a manifest) with a second call, which is what segment stores do.
    /// </remarks>
    /// <param name="directory">Where the files go.</param>
    /// <param name="files">Each file's name within <paramref name="directory"/> and the callback that writes its content.</param>
    public static void WriteFiles(string directory, IReadOnlyList<(string Name, Action<Stream> Write)> files)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentNullException.ThrowIfNull(files);
        string full = Path.GetFullPath(directory);
        foreach (var (name, write) in files)
        {
            ArgumentNullException.ThrowIfNull(write);

            // The one directory flush covers this directory's entries only, not a subdirectory's.
            if (string.IsNullOrEmpty(name) || Path.GetFileName(name) != name)
            {
                throw new ArgumentException($"'{name}' is not a file name within '{full}'.", nameof(files));
            }

            var (_, temp) = TempBeside(Path.Combine(full, name));
            WriteAndRename(temp, Path.Combine(full, name), write, mode: null, overwrite: true);
        }

        FsyncDirectory(full);
    }

    /// <summary>
    /// Deletes the temporary files that interrupted writes (a crash, a killed process) of files
    /// whose names match <paramref name="fileNamePattern"/> left in <paramref name="directory"/>.
    /// Only for a directory no one is writing such a file into at the time: a temporary file in
    /// use looks the same as a leftover one.
    /// </summary>
    /// <param name="directory">The directory; nothing happens when it does not exist.</param>
    /// <param name="fileNamePattern">A file name or a <see cref="Directory.EnumerateFiles(string, string)"/> pattern (<c>*.seg</c>).</param>
    public static void DeleteTemporaryFiles(string directory, string fileNamePattern)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        ArgumentException.ThrowIfNullOrEmpty(fileNamePattern);
        if (!Directory.Exists(directory))
        {
            return;
        }

        foreach (var leftover in Directory.EnumerateFiles(directory, $".{fileNamePattern}.*.tmp"))
        {
            File.Delete(leftover);
        }
    }

    /// <summary>Writes, flushes and renames one file; on any failure the temporary file is gone and the target is as it was.</summary>
    private static void WriteAndRename(string temp, string path, Action<Stream> write, UnixFileMode? mode, bool overwrite)
    {
        try
        {
            using (var stream = new FileStream(temp, Options(mode, FileOptions.None)))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            Commit(temp, path, overwrite);
        }
        catch
        {
            DeleteTemp(temp);
            throw;
        }
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
    /// Removes a failed write's temporary file. A failure to remove it must not hide the failure
    /// that got here: the caller sees the original exception, and the leftover (a dot-name ending
    /// in <c>.tmp</c>) is what <see cref="DeleteTemporaryFiles"/> sweeps.
    /// </summary>
    private static void DeleteTemp(string temp)
    {
        try
        {
            File.Delete(temp);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
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
