using System.IO.Hashing;
using System.Runtime.InteropServices;
using Atelier.Data.Model;

namespace Atelier.Data.Dedup;

/// <summary>
/// Exact dedup on a 128-bit hash of the normalised conversation (roles, contents, tool calls,
/// tools) or text. The first occurrence in input order is kept; later ones are duplicates of it.
/// Memory: about 40 bytes per distinct example.
/// </summary>
public sealed class ExactDeduplicator
{
    private readonly Dictionary<UInt128, long> _firstByHash = [];

    /// <summary>Distinct examples seen.</summary>
    public int DistinctCount => _firstByHash.Count;

    /// <summary>The content hash of an example (pure, thread-safe).</summary>
    public static UInt128 ContentHash(TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var hash = new XxHash128();
        Span<byte> tag = stackalloc byte[1];
        if (example.Kind == ExampleKind.Text)
        {
            tag[0] = 0xFF;
            hash.Append(tag);
            hash.Append(MemoryMarshal.AsBytes(example.Text.AsSpan()));
            return hash.GetCurrentHashAsUInt128();
        }

        foreach (ChatMessage message in example.Messages!)
        {
            tag[0] = (byte)message.Role;
            hash.Append(tag);
            AppendString(ref hash, message.Content);
            if (message.ToolCalls is not null)
            {
                foreach (ToolCall call in message.ToolCalls)
                {
                    AppendString(ref hash, call.Name);
                    AppendString(ref hash, call.Arguments);
                }
            }

            // The weight changes what is trained, so two conversations differing only by it are distinct.
            tag[0] = (byte)(message.Weight ?? 1);
            hash.Append(tag);
        }

        AppendString(ref hash, example.ToolsJson);
        return hash.GetCurrentHashAsUInt128();
    }

    /// <summary>
    /// Records an example's hash. Returns true when it is new; false, with the ordinal of the first
    /// occurrence, when it is a duplicate.
    /// </summary>
    public bool TryAdd(UInt128 contentHash, long ordinal, out long firstOrdinal)
    {
        ref long slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_firstByHash, contentHash, out bool exists);
        if (exists)
        {
            firstOrdinal = slot;
            return false;
        }

        slot = ordinal;
        firstOrdinal = ordinal;
        return true;
    }

    private static void AppendString(ref XxHash128 hash, string? value)
    {
        Span<byte> length = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(length, value?.Length ?? -1);
        hash.Append(length);
        if (value is not null)
        {
            hash.Append(MemoryMarshal.AsBytes(value.AsSpan()));
        }
    }
}
