using System.Buffers;
using System.Text;

namespace Atelier.Data;

/// <summary>
/// Unicode NFC with tables generated from the Unicode data (see <c>generate_nfc_tables.py</c>).
/// Atelier runs with invariant globalization, where <see cref="string.Normalize()"/> returns its
/// input unchanged, so composition is done here. The fast path scans once and returns the same
/// string when nothing can change (all of ASCII, most CJK).
/// </summary>
internal static partial class UnicodeNfc
{
    private const int SBase = 0xAC00, LBase = 0x1100, VBase = 0x1161, TBase = 0x11A7;
    private const int LCount = 19, VCount = 21, TCount = 28, NCount = VCount * TCount, SCount = LCount * NCount;

    // One bit per BMP char whose NFC quick-check value is not Yes, and one per BMP char with a
    // non-zero combining class: the quick check (UAX #15) reads only these two bitsets.
    private static readonly ulong[] QuickCheckNotYesBits = BuildBits(QuickCheckNotYes);
    private static readonly ulong[] CombiningClassBits = BuildBits(CccKeys);

    public static string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        int first = FirstMaybeChanging(text);
        return first < 0 ? text : NormalizeSlow(text, Math.Max(0, first - 1));
    }

    /// <summary>The NFC quick check: the index where the text may stop being NFC, or -1 when it is NFC.</summary>
    private static int FirstMaybeChanging(string text)
    {
        ReadOnlySpan<char> span = text;
        int i = span.IndexOfAnyInRange('\u0300', '\uffff');
        if (i < 0)
        {
            return -1;
        }

        int lastClass = 0;
        for (; i < span.Length; i++)
        {
            char c = span[i];
            if (c < 0x300)
            {
                lastClass = 0;
                continue;
            }

            int cc;
            if (char.IsHighSurrogate(c) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                int cp = char.ConvertToUtf32(c, span[i + 1]);
                if (QuickCheckNotYes.BinarySearch(cp) >= 0)
                {
                    return i;
                }

                cc = CombiningClass(cp);
                i++;
            }
            else
            {
                if (IsSet(QuickCheckNotYesBits, c))
                {
                    return i;
                }

                cc = IsSet(CombiningClassBits, c) ? CombiningClass(c) : 0;
            }

            if (cc != 0 && lastClass > cc)
            {
                return i;
            }

            lastClass = cc;
        }

        return -1;
    }

    private static bool IsSet(ulong[] bits, char c) => (bits[c >> 6] & (1UL << (c & 63))) != 0;

    private static ulong[] BuildBits(ReadOnlySpan<int> codePoints)
    {
        ulong[] bits = new ulong[65536 / 64];
        foreach (int cp in codePoints)
        {
            if (cp < 0x10000)
            {
                bits[cp >> 6] |= 1UL << (cp & 63);
            }
        }

        return bits;
    }

    private static string NormalizeSlow(string text, int from)
    {
        // Back up to the previous starter so a composition with the char before 'from' is seen.
        while (from > 0 && CombiningClass(text[from]) != 0)
        {
            from--;
        }

        int[] buffer = ArrayPool<int>.Shared.Rent((text.Length - from) * 4 + 16);
        try
        {
            int count = 0;
            for (int i = from; i < text.Length; i++)
            {
                int cp = text[i];
                if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
                {
                    cp = char.ConvertToUtf32(text[i], text[i + 1]);
                    i++;
                }

                if (count + 32 > buffer.Length)
                {
                    int[] larger = ArrayPool<int>.Shared.Rent(buffer.Length * 2);
                    buffer.AsSpan(0, count).CopyTo(larger);
                    ArrayPool<int>.Shared.Return(buffer);
                    buffer = larger;
                }

                count += Decompose(cp, buffer.AsSpan(count));
            }

            Span<int> cps = buffer.AsSpan(0, count);
            CanonicalOrder(cps);
            count = Compose(cps);

            var builder = new StringBuilder(text.Length);
            builder.Append(text, 0, from);
            for (int i = 0; i < count; i++)
            {
                int cp = buffer[i];
                if (cp < 0x10000)
                {
                    builder.Append((char)cp);
                }
                else
                {
                    builder.Append(char.ConvertFromUtf32(cp));
                }
            }

            return builder.ToString();
        }
        finally
        {
            ArrayPool<int>.Shared.Return(buffer);
        }
    }

    private static int Decompose(int cp, Span<int> destination)
    {
        if (cp >= SBase && cp < SBase + SCount)
        {
            int s = cp - SBase;
            destination[0] = LBase + (s / NCount);
            destination[1] = VBase + (s % NCount / TCount);
            int t = s % TCount;
            if (t == 0)
            {
                return 2;
            }

            destination[2] = TBase + t;
            return 3;
        }

        int index = DecompositionKeys.BinarySearch(cp);
        if (index < 0)
        {
            destination[0] = cp;
            return 1;
        }

        ReadOnlySpan<int> values = DecompositionValues[DecompositionOffsets[index]..DecompositionOffsets[index + 1]];
        values.CopyTo(destination);
        return values.Length;
    }

    private static void CanonicalOrder(Span<int> cps)
    {
        // Insertion sort by combining class within runs of non-starters (runs are short).
        for (int i = 1; i < cps.Length; i++)
        {
            int cc = CombiningClass(cps[i]);
            if (cc == 0)
            {
                continue;
            }

            int j = i;
            int cp = cps[i];
            while (j > 0)
            {
                int previous = CombiningClass(cps[j - 1]);
                if (previous <= cc)
                {
                    break;
                }

                cps[j] = cps[j - 1];
                j--;
            }

            cps[j] = cp;
        }
    }

    private static int Compose(Span<int> cps)
    {
        if (cps.Length == 0)
        {
            return 0;
        }

        int starterPos = 0;
        int starter = cps[0];
        int lastClass = CombiningClass(starter);
        if (lastClass != 0)
        {
            lastClass = 256;
        }

        int write = 1;
        for (int read = 1; read < cps.Length; read++)
        {
            int cp = cps[read];
            int cc = CombiningClass(cp);
            int composite = ComposePair(starter, cp);
            if (composite >= 0 && (lastClass < cc || lastClass == 0))
            {
                cps[starterPos] = composite;
                starter = composite;
                continue;
            }

            if (cc == 0)
            {
                starterPos = write;
                starter = cp;
            }

            lastClass = cc;
            cps[write++] = cp;
        }

        return write;
    }

    private static int ComposePair(int first, int second)
    {
        if (first >= LBase && first < LBase + LCount && second >= VBase && second < VBase + VCount)
        {
            return SBase + ((((first - LBase) * VCount) + (second - VBase)) * TCount);
        }

        if (first >= SBase && first < SBase + SCount && (first - SBase) % TCount == 0 && second > TBase && second < TBase + TCount)
        {
            return first + (second - TBase);
        }

        int index = CompositionKeys.BinarySearch(((long)first << 21) | (uint)second);
        return index >= 0 ? CompositionValues[index] : -1;
    }

    private static int CombiningClass(int cp)
    {
        if (cp < 0x300)
        {
            return 0;
        }

        int index = CccKeys.BinarySearch(cp);
        return index >= 0 ? CccValues[index] : 0;
    }
}
