using System.Security.Cryptography;
using System.Text;
using Atelier.Core.IO;
using Microsoft.AspNetCore.WebUtilities;

namespace Atelier.Server.Files;

/// <summary>
/// Signs and checks the download URLs of files (<c>GET /v1/files/{id}/url</c>) with the
/// installation's URL-signing key, an HMAC-SHA256 key kept in the data directory.
/// </summary>
public sealed class UrlSigner
{
    /// <summary>The name of the key's file in the data directory.</summary>
    public const string FileName = "url-signing.key";

    private readonly byte[] _key;

    /// <summary>Creates a signer over <paramref name="key"/>.</summary>
    public UrlSigner(byte[] key)
    {
        ArgumentNullException.ThrowIfNull(key);
        _key = key;
    }

    /// <summary>The signer over the key in <paramref name="path"/>, created (0600) when there is none.</summary>
    public static UrlSigner LoadOrCreate(string path) => new(SecretFile.LoadOrCreate(path, 32));

    /// <summary>
    /// The signer over a key the operator gives every node of a cluster (<c>server.url_signing_key_file</c>),
    /// so that a URL signed by one node is valid on every other behind one address: the file must
    /// exist (it is never created here: each node would create its own), be readable by its owner
    /// only, and hold at least 32 bytes in base64.
    /// </summary>
    public static UrlSigner FromSharedFile(string path) => new(SecretFile.ReadSharedKey(path, "server.url_signing_key_file", 32));

    /// <summary>The signature of a download of <paramref name="fileId"/> until <paramref name="expires"/>, asked for with key <paramref name="keyId"/>.</summary>
    public string Sign(string workspaceId, string fileId, long expires, string keyId) =>
        // Newline-separated: none of the parts can hold one (ids are generated, expires is a number), so
        // no two different sets of parts sign the same bytes.
        WebEncoders.Base64UrlEncode(HMACSHA256.HashData(_key, Encoding.UTF8.GetBytes($"{workspaceId}\n{fileId}\n{expires}\n{keyId}")));

    /// <summary>True when <paramref name="presented"/> is the signature of these parts, compared in constant time.</summary>
    public bool IsValid(string workspaceId, string fileId, long expires, string keyId, string presented)
    {
        ArgumentNullException.ThrowIfNull(presented);
        return CryptographicOperations.FixedTimeEquals(
            Encoding.ASCII.GetBytes(Sign(workspaceId, fileId, expires, keyId)),
            Encoding.ASCII.GetBytes(presented));
    }
}
