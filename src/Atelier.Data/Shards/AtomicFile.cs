namespace Atelier.Data.Shards;

/// <summary>
/// Crash-safe file writes: content goes to a temporary file beside the target, is flushed to disk,
/// then renamed over the target, and the directory is synced, so a reader sees the old file, or the
/// whole new one, never a part.
/// </summary>
internal static class AtomicFile
{
    public static async Task WriteAsync(string path, Func<Stream, Task> write, CancellationToken cancellationToken)
    {
        string temp = path + ".tmp";
        await using (var stream = new FileStream(temp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.Asynchronous))
        {
            await write(stream).ConfigureAwait(false);
            await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    public static Task WriteAllBytesAsync(string path, byte[] content, CancellationToken cancellationToken) =>
        WriteAsync(path, s => s.WriteAsync(content, cancellationToken).AsTask(), cancellationToken);

    /// <summary>Makes a rename inside <paramref name="directory"/> durable (no-op where directories cannot be opened).</summary>
    public static void SyncDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            using var handle = File.OpenHandle(directory, FileMode.Open, FileAccess.Read);
            RandomAccess.FlushToDisk(handle);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            // Some filesystems refuse to open or fsync a directory; the rename is still atomic there.
        }
    }
}
