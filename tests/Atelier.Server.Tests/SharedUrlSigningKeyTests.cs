using Atelier.Core.IO;
using Atelier.Server.Files;

namespace Atelier.Server.Tests;

/// <summary>
/// <c>server.url_signing_key_file</c>, the key every node of a cluster shares: two signers over one
/// file agree, and a file that is missing, readable by others, not base64 or too short is refused at
/// start with a message that says what to do, never replaced by a key of the node's own.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class SharedUrlSigningKeyTests
{
    private readonly string _dir = TempDirectory.Create("atelier-signing");

    [Fact]
    public void TwoNodesOverOneKeyFile_AcceptEachOthersSignatures()
    {
        var path = Write("shared.key", Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32)) + "\n");
        var a = UrlSigner.FromSharedFile(path);
        var b = UrlSigner.FromSharedFile(path);
        var signature = a.Sign("ws", "file-1", 1_900_000_000, "key-1");
        Assert.True(b.IsValid("ws", "file-1", 1_900_000_000, "key-1", signature));
        Assert.False(b.IsValid("ws", "file-2", 1_900_000_000, "key-1", signature));
        Assert.False(UrlSigner.LoadOrCreate(Path.Combine(_dir, "own.key")).IsValid("ws", "file-1", 1_900_000_000, "key-1", signature));
    }

    [Fact]
    public void AMissingLooseMalformedOrShortKeyFile_IsRefusedWithWhatToDo()
    {
        var missing = Path.Combine(_dir, "missing.key");
        Assert.Contains("does not exist", Assert.Throws<InvalidOperationException>(() => UrlSigner.FromSharedFile(missing)).Message, StringComparison.Ordinal);
        Assert.False(File.Exists(missing), "a missing shared key was created: each node would then have its own");

        var loose = Write("loose.key", Convert.ToBase64String(new byte[32]));
        File.SetUnixFileMode(loose, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        Assert.Contains("chmod", Assert.ThrowsAny<Exception>(() => UrlSigner.FromSharedFile(loose)).Message, StringComparison.Ordinal);

        Assert.Contains("base64", Assert.Throws<InvalidOperationException>(() => UrlSigner.FromSharedFile(Write("text.key", "not a key!"))).Message, StringComparison.Ordinal);
        Assert.Contains("at least 32", Assert.Throws<InvalidOperationException>(() => UrlSigner.FromSharedFile(Write("short.key", Convert.ToBase64String(new byte[8])))).Message, StringComparison.Ordinal);
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(_dir, name);
        SecretFile.Write(path, System.Text.Encoding.ASCII.GetBytes(text), overwrite: false);
        return path;
    }
}
