using System.Runtime.InteropServices;

namespace Atelier.Server.Hosting;

/// <summary>
/// Lowers the scheduling priority of the calling thread alone. On Linux every thread has its own
/// nice value (<c>setpriority</c> on the thread's id), and raising it needs no privilege; a thread
/// that lowers itself is only run when the threads at the server's own priority leave a core
/// idle, which suits CPU work with slack beside work that waits on a socket or a disk.
/// </summary>
internal static partial class ThreadNice
{
    private const int PriorityProcess = 0;

    /// <summary>
    /// Sets the calling thread's nice value to <paramref name="nice"/> (0 to 19). Advice: elsewhere
    /// than on Linux, or if the call fails (raising a priority needs a privilege, so a server
    /// started at a higher nice keeps its own), the thread keeps its priority.
    /// </summary>
    public static void Lower(int nice)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(nice);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(nice, 19);
        if (nice == 0 || !OperatingSystem.IsLinux())
        {
            return;
        }

        _ = SetPriority(PriorityProcess, GetThreadId(), nice);
    }

    [LibraryImport("libc", EntryPoint = "setpriority")]
    private static partial int SetPriority(int which, int who, int priority);

    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetThreadId();
}
