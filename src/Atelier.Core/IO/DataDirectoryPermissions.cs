using System.Runtime.InteropServices;

namespace Atelier.Core.IO;

/// <summary>
/// Keeps the data directory private to the server's user: directories 0700, files 0600. The catalog,
/// the audit log, the keys and every blob are written by many components (SQLite with its WAL and
/// shared-memory files among them), so rather than give each its own create mode the process sets
/// its umask to 077 when it opens a data directory, and the start tightens what an earlier version
/// or an operator left more open.
/// </summary>
public static class DataDirectoryPermissions
{
    /// <summary>Directories: read, write and search for the owner only.</summary>
    public const UnixFileMode DirectoryMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Files: read and write for the owner only.</summary>
    public const UnixFileMode FileMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// Sets the process umask to 077, creates <paramref name="dataDirectory"/> (0700) when missing and
    /// tightens every directory and file under it. Returns how many modes it changed. No-op on Windows.
    /// </summary>
    public static int Restrict(string dataDirectory)
    {
        ArgumentException.ThrowIfNullOrEmpty(dataDirectory);
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(dataDirectory);
            return 0;
        }

        // Process-wide, and meant to be: anything this server creates holds data or secrets.
        _ = NativeMethods.Umask(0x3F); // 077 octal
        Directory.CreateDirectory(dataDirectory, DirectoryMode);
        var changed = Tighten(dataDirectory, DirectoryMode);
        var pending = new Stack<string>();
        pending.Push(dataDirectory);
        while (pending.TryPop(out var directory))
        {
            foreach (var entry in new DirectoryInfo(directory).EnumerateFileSystemInfos())
            {
                // A link may point outside the data directory (a location on another disk); its
                // target's modes are its owner's business.
                if (entry.LinkTarget is not null)
                {
                    continue;
                }

                if (entry is DirectoryInfo)
                {
                    changed += Tighten(entry.FullName, DirectoryMode);
                    pending.Push(entry.FullName);
                }
                else
                {
                    changed += Tighten(entry.FullName, FileMode);
                }
            }
        }

        return changed;
    }

    /// <summary>Creates a directory of the server's own, private to its user (0700; as is on Windows).</summary>
    public static void CreatePrivateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
        }
        else
        {
            Directory.CreateDirectory(path, DirectoryMode);
        }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static int Tighten(string path, UnixFileMode mode)
    {
        var current = File.GetUnixFileMode(path);

        // Only ever remove bits: group and other lose everything, the owner keeps what it had.
        var wanted = current & mode;
        if (wanted == current)
        {
            return 0;
        }

        File.SetUnixFileMode(path, wanted);
        return 1;
    }

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "umask")]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        internal static extern uint Umask(uint mask);
    }
}
