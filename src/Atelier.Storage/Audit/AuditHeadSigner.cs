using System.Security.Cryptography;
using System.Text;
using Atelier.Core.IO;

namespace Atelier.Storage.Audit;

/// <summary>
/// The key that signs audit heads: ECDSA P-256, kept as PKCS#8 PEM in a file readable by its
/// owner only. Asymmetric, so that whoever holds an exported head can check it with the public key
/// it carries (or one they pinned) without any secret of the server's.
/// </summary>
public sealed class AuditHeadSigner : IDisposable
{
    /// <summary>The key file's name in the data directory.</summary>
    public const string FileName = "audit-signing.key";

    private readonly ECDsa _key;
    private readonly byte[] _publicKey;

    private AuditHeadSigner(ECDsa key)
    {
        _key = key;
        _publicKey = key.ExportSubjectPublicKeyInfo();
        KeyId = KeyIdOf(_publicKey);
    }

    /// <summary>SHA-256 of the SubjectPublicKeyInfo, lower-case hex.</summary>
    public string KeyId { get; }

    /// <summary>The public key: SubjectPublicKeyInfo (DER).</summary>
    public ReadOnlySpan<byte> PublicKey => _publicKey;

    /// <summary>A signer over a fresh key that lives in memory only.</summary>
    public static AuditHeadSigner CreateEphemeral() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>
    /// Loads the key at <paramref name="path"/>, or creates one there (mode 0600, written
    /// atomically) when there is none. An existing key is never replaced: heads exported earlier
    /// name it.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is not an ECDSA P-256 private key.</exception>
    public static AuditHeadSigner LoadOrCreate(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!File.Exists(path))
        {
            using var created = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            try
            {
                AtomicFile.WriteAllBytes(path, Encoding.ASCII.GetBytes(created.ExportPkcs8PrivateKeyPem() + "\n"), UnixFileMode.UserRead | UnixFileMode.UserWrite, overwrite: false);
            }
            catch (IOException) when (File.Exists(path))
            {
                // Another process created it first: use theirs, as the heads it signs will name it.
            }
        }

        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(File.ReadAllText(path));
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            throw new InvalidDataException($"The audit signing key '{path}' is not a PKCS#8 PEM ECDSA key: {e.Message}", e);
        }

        if (!IsP256(key))
        {
            key.Dispose();
            throw new InvalidDataException($"The audit signing key '{path}' is not on the P-256 curve.");
        }

        return new AuditHeadSigner(key);
    }

    /// <summary>Signs the statement that event <paramref name="seq"/> has hash <paramref name="hash"/>.</summary>
    public AuditHead Sign(long seq, string hash, DateTimeOffset signedAt)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(seq);
        ArgumentException.ThrowIfNullOrEmpty(hash);
        var signature = _key.SignData(AuditHead.SignedBytes(seq, hash, signedAt), HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
        return new AuditHead
        {
            Seq = seq,
            Hash = hash,
            SignedAt = signedAt,
            KeyId = KeyId,
            PublicKey = Convert.ToBase64String(_publicKey),
            Signature = Convert.ToBase64String(signature),
        };
    }

    /// <summary>
    /// Signs a document other than a head (an erasure report) with the same key, so whoever trusts
    /// the audit heads' key trusts the document: ECDSA P-256 with SHA-256 over
    /// <paramref name="canonicalBytes"/>, IEEE P1363, base64. The caller's canonical bytes must begin
    /// with a format name of their own, so a document can never be taken for a head.
    /// </summary>
    public string SignDocument(ReadOnlySpan<byte> canonicalBytes) =>
        Convert.ToBase64String(_key.SignData(canonicalBytes, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation));

    /// <summary>The public key as base64 (SubjectPublicKeyInfo), as heads carry it.</summary>
    public string PublicKeyBase64 => Convert.ToBase64String(_publicKey);

    /// <summary>The key id of a SubjectPublicKeyInfo: its SHA-256, lower-case hex.</summary>
    public static string KeyIdOf(ReadOnlySpan<byte> subjectPublicKeyInfo) => Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo));

    internal static bool IsP256(ECDsa key) =>
        key.ExportParameters(false).Curve is { IsNamed: true, Oid.Value: var oid } && oid == ECCurve.NamedCurves.nistP256.Oid.Value;

    /// <inheritdoc />
    public void Dispose() => _key.Dispose();
}
