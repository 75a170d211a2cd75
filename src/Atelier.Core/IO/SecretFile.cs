using System.Security.Cryptography;
using System.Text;

namespace Atelier.Core.IO;

/// <summary>Secrets kept as files of the data directory (keys, tokens): readable by their owner only (0600), written atomically.</summary>
public static class SecretFile
{
    /// <summary>The mode of a secret file.</summary>
    public const UnixFileMode Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    /// <summary>
    /// The base64 secret in <paramref name="path"/>; when there is none, a new random one of
    /// <paramref name="bytes"/> bytes, written there first. An existing secret is never replaced
    /// (what it signed stays valid).
    /// </summary>
    public static byte[] LoadOrCreate(string path, int bytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            return Convert.FromBase64String(File.ReadAllText(path).Trim());
        }

        var secret = RandomNumberGenerator.GetBytes(bytes);
        Write(path, Encoding.ASCII.GetBytes(Convert.ToBase64String(secret) + "\n"), overwrite: false);
        return secret;
    }

    /// <summary>
    /// Refuses a secret file that its group or others can reach (any bit beyond the owner's): a
    /// secret there is not secret. Checked before the file is read, so a readable secret is refused
    /// rather than used. No-op on Windows, whose files have no Unix modes.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="what">What the file holds, for the message (e.g. <c>S3 credentials file</c>).</param>
    /// <exception cref="UnauthorizedAccessException">The file's group or others may read, write or execute it.</exception>
    public static void ThrowIfReachableByOthers(string path, string what)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        // The mode of what the path names: a link (as Kubernetes mounts secrets) is judged by its target.
        var mode = File.GetUnixFileMode(path);
        const UnixFileMode GroupOrOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        if ((mode & GroupOrOthers) != 0)
        {
            throw new UnauthorizedAccessException(
                $"The {what} {path} has mode {Convert.ToString((int)mode, 8)}: group or others can reach it. Make it 0600 (chmod 600).");
        }
    }

    /// <summary>The text of a secret file its owner alone can reach (see <see cref="ThrowIfReachableByOthers"/>).</summary>
    /// <param name="path">The file.</param>
    /// <param name="what">What the file holds, for the messages.</param>
    /// <exception cref="UnauthorizedAccessException">The file's group or others may reach it.</exception>
    public static string ReadOwnerOnly(string path, string what)
    {
        ThrowIfReachableByOthers(path, what);
        return File.ReadAllText(path);
    }

    /// <summary>
    /// A key the operator made and gave to several machines (e.g. every node of a cluster): the file
    /// must exist (it is never created here, or each machine would have its own), be readable by its
    /// owner only, and hold at least <paramref name="minBytes"/> bytes in base64.
    /// </summary>
    /// <param name="path">The file.</param>
    /// <param name="what">What names it, for the messages (a configuration key).</param>
    /// <param name="minBytes">The shortest key accepted.</param>
    public static byte[] ReadSharedKey(string path, string what, int minBytes)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{what}: '{path}' does not exist. Create it once (head -c {minBytes} /dev/urandom | base64 > FILE; chmod 600 FILE) and give every machine that shares it the same file.");
        }

        byte[] key;
        try
        {
            key = Convert.FromBase64String(ReadOwnerOnly(path, what).Trim());
        }
        catch (FormatException)
        {
            throw new InvalidOperationException($"{what}: '{path}' does not hold a base64 key.");
        }

        return key.Length >= minBytes ? key : throw new InvalidOperationException($"{what}: the key in '{path}' has {key.Length} bytes; it needs at least {minBytes}.");
    }

    /// <summary>Writes a file readable by its owner only (0600), atomically (see docs/decisions/0002).</summary>
    public static void Write(string path, byte[] content, bool overwrite) =>
        AtomicFile.WriteAllBytes(path, content, Mode, overwrite);
}
