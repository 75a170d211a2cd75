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

    /// <summary>Writes a file readable by its owner only (0600), atomically (see docs/decisions/0002).</summary>
    public static void Write(string path, byte[] content, bool overwrite) =>
        AtomicFile.WriteAllBytes(path, content, Mode, overwrite);
}
