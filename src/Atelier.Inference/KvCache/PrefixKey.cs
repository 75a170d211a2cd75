using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Atelier.Inference.KvCache;

/// <summary>
/// The identity of one full block of cached keys and values: a hash chain over every token from the
/// start of the sequence up to the block's end, rooted in the adapter and the cache salt.
/// </summary>
/// <remarks>
/// The same tokens under another adapter give other keys and values (the adapter changes every
/// projection), so the adapter is part of the root: vLLM shared KV across adapters for a while
/// (vllm#3264). The salt (one per workspace) keeps one tenant from learning, through a faster first
/// token, that another tenant sent a prompt. 128 bits of SHA-256: a collision would silently serve
/// another prompt's cache, so a fast 64-bit hash is not enough.
/// </remarks>
internal readonly record struct PrefixKey(ulong Hi, ulong Lo)
{
    /// <summary>The root of a chain: what every block of a sequence under this adapter and salt hangs from.</summary>
    public static PrefixKey Root(string? adapterId, string salt)
    {
        var text = $"atelier.kv.v1\0{adapterId?.Length ?? -1}:{adapterId}\0{salt.Length}:{salt}";
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(text), digest);
        return From(digest);
    }

    /// <summary>The key of the block holding <paramref name="tokens"/>, following the block keyed <paramref name="parent"/>.</summary>
    public static PrefixKey Next(PrefixKey parent, ReadOnlySpan<int> tokens)
    {
        var length = 16 + (tokens.Length * sizeof(int));
        var rented = length > 1024 ? ArrayPool<byte>.Shared.Rent(length) : null;
        var buffer = rented is null ? stackalloc byte[length] : rented.AsSpan(0, length);
        try
        {
            BinaryPrimitives.WriteUInt64LittleEndian(buffer, parent.Hi);
            BinaryPrimitives.WriteUInt64LittleEndian(buffer[8..], parent.Lo);
            for (var i = 0; i < tokens.Length; i++)
            {
                BinaryPrimitives.WriteInt32LittleEndian(buffer[(16 + (i * sizeof(int)))..], tokens[i]);
            }

            Span<byte> digest = stackalloc byte[32];
            SHA256.HashData(buffer, digest);
            return From(digest);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    private static PrefixKey From(ReadOnlySpan<byte> digest)
        => new(BinaryPrimitives.ReadUInt64LittleEndian(digest), BinaryPrimitives.ReadUInt64LittleEndian(digest[8..]));
}
