/// <summary>Cold reads without root: a benchmark's own files are dropped from the page cache.</summary>
internal static partial class PageCache
{
    private const int FadvDontNeed = 4;

    /// <summary>posix_fadvise(DONTNEED) on every file matching <paramref name="pattern"/> under <paramref name="directory"/>; they must be clean (fsynced or only read).</summary>
    public static int Evict(string directory, string pattern = "*")
    {
        var count = 0;
        foreach (var file in Directory.EnumerateFiles(directory, pattern, SearchOption.AllDirectories))
        {
            using var handle = File.OpenHandle(file);
            if (Fadvise((int)handle.DangerousGetHandle(), 0, 0, FadvDontNeed) == 0)
            {
                count++;
            }
        }

        return count;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);
}
