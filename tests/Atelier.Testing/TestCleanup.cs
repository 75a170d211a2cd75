using System.Diagnostics;

namespace Atelier.Testing;

/// <summary>
/// What the tests of this process create outside themselves: temporary directories and child
/// processes. Tests remove them when they are done; whatever a failed or crashed test left is
/// removed (directories) or killed (processes) when the test process exits, so a run leaves
/// nothing behind in the temporary directory and no process running.
/// </summary>
public static class TestCleanup
{
    private const string RootPrefix = "atelier-tests-";
    private static readonly List<string> Directories = [];
    private static readonly List<Process> Processes = [];

    /// <summary>
    /// The one directory under the temporary directory that holds everything this test process
    /// creates (<c>atelier-tests-PID-…</c>). Removing it is one recursive delete at exit; if the
    /// test host is stopped before that finishes, the next test process removes it, since no
    /// live process owns it any more.
    /// </summary>
    private static readonly string Root = CreateRoot();

    static TestCleanup() => AppDomain.CurrentDomain.ProcessExit += (_, _) => CleanUp();

    /// <summary>Creates a new empty directory for a test, deleted at exit at the latest.</summary>
    public static string CreateDirectory(string prefix)
    {
        var path = Path.Combine(Root, $"{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }

    private static string CreateRoot()
    {
        var temp = Path.GetTempPath();
        foreach (var stale in Directory.EnumerateDirectories(temp, RootPrefix + "*"))
        {
            var name = Path.GetFileName(stale).AsSpan(RootPrefix.Length);
            var dash = name.IndexOf('-');
            if (dash > 0 && int.TryParse(name[..dash], out var pid) && !IsAlive(pid))
            {
                Delete(stale);
            }
        }

        var root = Path.Combine(temp, $"{RootPrefix}{Environment.ProcessId}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(root);
        return root;
    }

    private static bool IsAlive(int pid)
    {
        if (OperatingSystem.IsLinux())
        {
            return Directory.Exists($"/proc/{pid}");
        }

        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    /// <summary>Registers a directory to delete at exit at the latest.</summary>
    public static string Track(string directory)
    {
        lock (Directories)
        {
            Directories.Add(directory);
        }

        return directory;
    }

    /// <summary>Registers a child process to kill at exit at the latest.</summary>
    public static Process Track(Process process)
    {
        lock (Processes)
        {
            Processes.Add(process);
        }

        return process;
    }

    /// <summary>Deletes a directory now, if it still exists; a failure is left to the exit sweep.</summary>
    public static void Delete(string directory)
    {
        // A process killed a moment ago, or a background task of an in-process server that is
        // still stopping, may still have files closing or appearing there: on a loaded machine
        // that can take seconds, so the tries back off (about 4 s in all).
        const int Attempts = 9;
        for (var attempt = 1; attempt <= Attempts; attempt++)
        {
            try
            {
                if (Directory.Exists(directory))
                {
                    Directory.Delete(directory, recursive: true);
                }

                return;
            }
            catch (IOException) when (attempt < Attempts)
            {
                Thread.Sleep(100 * attempt);
            }
            catch (IOException)
            {
                // Left to the next test process's sweep of stale roots.
                return;
            }
            catch (UnauthorizedAccessException)
            {
                // Made read-only by a permission test: the run's sweep removes it.
                return;
            }
        }
    }

    private static void CleanUp()
    {
        lock (Processes)
        {
            foreach (var process in Processes)
            {
                try
                {
                    if (!process.HasExited)
                    {
                        process.Kill(entireProcessTree: true);
                        process.WaitForExit(10_000);
                    }
                }
                catch (InvalidOperationException)
                {
                    // Never started, or already disposed by its test.
                }
            }
        }

        lock (Directories)
        {
            foreach (var directory in Directories)
            {
                Delete(directory);
            }
        }

        Delete(Root);
    }
}
