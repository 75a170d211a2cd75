using System.Runtime.InteropServices;
using Atelier.Storage.Blobs;
using Microsoft.Win32.SafeHandles;

namespace Atelier.Storage.Placement;

/// <summary>
/// Tells the OS that committed bytes will not be read back soon (<c>posix_fadvise(DONTNEED)</c>),
/// so their page-cache pages are freed as soon as they are durable and reused by the next writes.
/// A checkpoint's chunks are written once and read only by a restore, usually after a restart:
/// keeping them cached would evict what training reads (its data shards), and writing into a
/// small recycled set of pages costs the kernel far less than into ever fresh ones (on the
/// virtualised hosts measured, about a third of the system time of a persist). Linux only; a
/// no-op for stores that are not local files.
/// </summary>
internal static partial class PageCache
{
    private const int PosixFadvDontNeed = 4;

    /// <summary>Drops the cached pages of the committed blob <paramref name="key"/>; best effort.</summary>
    public static async ValueTask DropAsync(IBlobStore store, string key, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        try
        {
            var stream = await store.OpenReadAsync(key, cancellationToken).ConfigureAwait(false);
            if (stream is null)
            {
                return;
            }

            await using (stream.ConfigureAwait(false))
            {
                if (stream is FileStream file)
                {
                    // The pages are clean (the commit fsynced them), so they are freed, not written.
                    _ = Fadvise(file.SafeFileHandle, 0, 0, PosixFadvDontNeed);
                }
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Advice only: whatever went wrong here (the file already swept, a store that died)
            // must not turn a committed write into a failed one.
        }
    }

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(SafeFileHandle fd, long offset, long length, int advice);
}
