using System.Diagnostics.CodeAnalysis;
using System.Security.Cryptography;

namespace Atelier.Storage.Placement;

/// <summary>
/// Bytes together with their SHA-256, computed by this type and by nothing else: there is no way
/// to pair bytes with a hash the caller asserts. That is what lets the placement guard record a
/// content-addressed write with this hash instead of hashing the bytes a second time (a chunk
/// store must hash a chunk before writing it, to name it): the hash is correct by construction.
/// <para>
/// The hash is of the bytes as they were when it was computed. The owner of the memory must not
/// change it until the write is committed; a change is caught later, by the hash verification of
/// every read, not by the write.
/// </para>
/// </summary>
public sealed class HashedContent
{
    private HashedContent(ReadOnlyMemory<byte> bytes, string sha256)
    {
        Bytes = bytes;
        Sha256 = sha256;
    }

    /// <summary>The bytes.</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>The SHA-256 of <see cref="Bytes"/>, 64 lower-case hex digits.</summary>
    public string Sha256 { get; }

    /// <summary>Hashes <paramref name="bytes"/>.</summary>
    public static HashedContent Compute(ReadOnlyMemory<byte> bytes)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(bytes.Span, digest);
        return new HashedContent(bytes, Convert.ToHexStringLower(digest));
    }

    /// <summary>
    /// Hashes <paramref name="bytes"/> and returns them as content when they hash to
    /// <paramref name="expectedSha256"/>; false (and no content) when they do not.
    /// </summary>
    public static bool TryVerify(ReadOnlyMemory<byte> bytes, string expectedSha256, [NotNullWhen(true)] out HashedContent? content)
    {
        var computed = Compute(bytes);
        if (string.Equals(computed.Sha256, expectedSha256, StringComparison.Ordinal))
        {
            content = computed;
            return true;
        }

        content = null;
        return false;
    }
}
