using System.Globalization;
using System.IO.Hashing;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Atelier.Data.Model;

namespace Atelier.Data;

/// <summary>
/// Splits text into words for near-dup shingles and decontamination n-grams, hashing each word
/// (lower-cased, punctuation dropped) to 64 bits. Scripts written without spaces (Han, kana, Thai)
/// count one character as one word, so their n-grams mean something too.
/// </summary>
internal static class WordHasher
{
    /// <summary>Multiplier of the polynomial n-gram hash (odd, large).</summary>
    private const ulong NGramPrime = 0x9E3779B97F4A7C15UL;

    public static void HashWords(ReadOnlySpan<char> text, List<ulong> destination)
    {
        Span<char> word = stackalloc char[64];
        int length = 0;
        int i = 0;
        while (i < text.Length)
        {
            char c = text[i];
            int width = 1;
            UnicodeCategory category;
            int cp = c;
            if (c < 0x80)
            {
                if ((uint)((c | 0x20) - 'a') <= 'z' - 'a' || (uint)(c - '0') <= 9)
                {
                    Append(ref word, ref length, (char)(c is >= 'A' and <= 'Z' ? c | 0x20 : c));
                }
                else
                {
                    Flush(word, ref length, destination);
                }

                i++;
                continue;
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                cp = char.ConvertToUtf32(c, text[i + 1]);
                width = 2;
                category = CharUnicodeInfo.GetUnicodeCategory(cp);
            }
            else
            {
                category = CharUnicodeInfo.GetUnicodeCategory(c);
            }

            if (IsSingleCharWord(cp))
            {
                Flush(word, ref length, destination);
                destination.Add(HashChars(text.Slice(i, width)));
            }
            else if (category is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter
                     or UnicodeCategory.ModifierLetter or UnicodeCategory.OtherLetter or UnicodeCategory.DecimalDigitNumber
                     or UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark)
            {
                if (width == 1)
                {
                    Append(ref word, ref length, char.ToLowerInvariant(c));
                }
                else
                {
                    Append(ref word, ref length, c);
                    Append(ref word, ref length, text[i + 1]);
                }
            }
            else
            {
                Flush(word, ref length, destination);
            }

            i += width;
        }

        Flush(word, ref length, destination);
    }

    /// <summary>A role mask with every role of a conversation.</summary>
    public const int AllRoles = (1 << (int)ChatRole.System) | (1 << (int)ChatRole.User) | (1 << (int)ChatRole.Assistant) | (1 << (int)ChatRole.Tool);

    /// <summary>The mask of <paramref name="roles"/>, for <see cref="HashWords(TrainingExample, List{ulong}, int)"/>.</summary>
    public static int RoleMask(IEnumerable<ChatRole> roles)
    {
        int mask = 0;
        foreach (ChatRole role in roles)
        {
            mask |= 1 << (int)role;
        }

        return mask;
    }

    /// <summary>Hashes the conversation text of an example (all contents, tool arguments) into words.</summary>
    public static void HashWords(TrainingExample example, List<ulong> destination) => HashWords(example, destination, AllRoles);

    /// <summary>
    /// Hashes into words the text of the messages whose role is in <paramref name="roleMask"/>: their
    /// content and, for assistant turns, the arguments of their tool calls. A plain text example is
    /// hashed whole. Tool schemas (the example's <c>tools</c>) are never words: they are shared
    /// boilerplate, not content.
    /// </summary>
    public static void HashWords(TrainingExample example, List<ulong> destination, int roleMask)
    {
        if (example.Kind == ExampleKind.Text)
        {
            HashWords(example.Text, destination);
            return;
        }

        foreach (ChatMessage message in example.Messages!)
        {
            if ((roleMask & (1 << (int)message.Role)) == 0)
            {
                continue;
            }

            if (message.Content is not null)
            {
                HashWords(message.Content, destination);
            }

            if (message.ToolCalls is not null)
            {
                foreach (ToolCall call in message.ToolCalls)
                {
                    HashWords(call.Arguments, destination);
                }
            }
        }
    }

    /// <summary>
    /// Hashes every window of <paramref name="n"/> consecutive words (one window of all words when
    /// there are fewer) with a rolling polynomial hash, then a 64-bit finaliser.
    /// </summary>
    public static void HashNGrams(ReadOnlySpan<ulong> words, int n, List<ulong> destination)
    {
        if (words.Length == 0)
        {
            return;
        }

        if (words.Length < n)
        {
            destination.Add(HashWindow(words));
            return;
        }

        ulong power = 1;
        for (int k = 1; k < n; k++)
        {
            power *= NGramPrime;
        }

        ulong hash = 0;
        for (int k = 0; k < n; k++)
        {
            hash = (hash * NGramPrime) + words[k];
        }

        destination.Add(Mix(hash));
        for (int k = n; k < words.Length; k++)
        {
            hash = ((hash - (words[k - n] * power)) * NGramPrime) + words[k];
            destination.Add(Mix(hash));
        }
    }

    /// <summary>The hash of one window, equal to what <see cref="HashNGrams"/> yields for it.</summary>
    public static ulong HashWindow(ReadOnlySpan<ulong> words)
    {
        ulong hash = 0;
        foreach (ulong w in words)
        {
            hash = (hash * NGramPrime) + w;
        }

        return Mix(hash);
    }

    /// <summary>A strong 64-bit finaliser (splitmix64).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Mix(ulong x)
    {
        x ^= x >> 30;
        x *= 0xBF58476D1CE4E5B9UL;
        x ^= x >> 27;
        x *= 0x94D049BB133111EBUL;
        x ^= x >> 31;
        return x;
    }

    private static bool IsSingleCharWord(int cp) =>
        cp is (>= 0x3040 and <= 0x30FF) or (>= 0x3400 and <= 0x4DBF) or (>= 0x4E00 and <= 0x9FFF)
            or (>= 0xF900 and <= 0xFAFF) or (>= 0x20000 and <= 0x3FFFF) or (>= 0x0E00 and <= 0x0E7F);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Append(ref Span<char> word, ref int length, char c)
    {
        // Words longer than the buffer are truncated: their hash is still stable and distinct enough.
        if (length < word.Length)
        {
            word[length++] = c;
        }
    }

    private static void Flush(Span<char> word, ref int length, List<ulong> destination)
    {
        if (length > 0)
        {
            destination.Add(HashChars(word[..length]));
            length = 0;
        }
    }

    private static ulong HashChars(ReadOnlySpan<char> chars) => XxHash3.HashToUInt64(MemoryMarshal.AsBytes(chars));
}
