using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Atelier.Data.Tokenization;

/// <summary>
/// The pre-tokenisers of o200k_base, cl100k_base and tekken, written as scanners over Unicode code
/// points. tiktoken runs its pattern with Rust's regex, which sees code points; .NET's
/// <see cref="System.Text.RegularExpressions.Regex"/> sees UTF-16 code units, so a letter or digit
/// outside the Basic Multilingual Plane (𝟎, 𝐀, CJK extension B, Gothic) is two surrogates that match
/// neither <c>\p{L}</c> nor <c>\p{N}</c>, and the pieces differ from tiktoken's. Each scanner
/// implements its pattern's alternatives in order, with the backtracking the regex engine would do
/// (<c>\s+(?!\S)</c> gives back one space, <c>\s*[\r\n]+</c> ends at the last line break of a
/// whitespace run), and <c>\s</c> as Unicode's White_Space property, as Rust's regex reads it.
/// </summary>
internal sealed class TiktokenPreTokenizer : PreTokenizer
{
    private const byte Letter = 1;      // \p{L}
    private const byte Number = 2;      // \p{N}
    private const byte Space = 4;       // \s: the White_Space property
    private const byte Upperish = 8;    // [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]
    private const byte Lowerish = 16;   // [\p{Ll}\p{Lm}\p{Lo}\p{M}]
    private const byte LineBreak = 32;  // [\r\n]

    // The classes of the Basic Multilingual Plane, one byte per UTF-16 unit (64 KiB, built once);
    // code points past it are classified when met (they are rare in text).
    private static readonly byte[] BmpClasses = BuildBmpClasses();

    private readonly Scheme _scheme;

    private TiktokenPreTokenizer(Scheme scheme) => _scheme = scheme;

    private enum Scheme
    {
        /// <summary>o200k_base: case-aware letter runs, contractions as suffixes, 1-3 digits, <c>[\r\n/]*</c> after punctuation.</summary>
        O200k,

        /// <summary>cl100k_base: contractions first, plain letter runs, 1-3 digits, <c>[\r\n]*</c> after punctuation.</summary>
        Cl100k,

        /// <summary>Mistral's tekken: o200k_base without contractions and with single digits.</summary>
        Tekken,
    }

    /// <summary>o200k_base's pre-tokeniser.</summary>
    public static TiktokenPreTokenizer O200k { get; } = new(Scheme.O200k);

    /// <summary>cl100k_base's pre-tokeniser.</summary>
    public static TiktokenPreTokenizer Cl100k { get; } = new(Scheme.Cl100k);

    /// <summary>tekken's pre-tokeniser.</summary>
    public static TiktokenPreTokenizer Tekken { get; } = new(Scheme.Tekken);

    /// <summary>
    /// The scanner of <paramref name="pattern"/> when it is, character for character, one of the
    /// patterns implemented here; null for any other pattern.
    /// </summary>
    public static TiktokenPreTokenizer? ForPattern(string pattern) => pattern switch
    {
        TiktokenTextTokenizer.O200kPattern => O200k,
        TiktokenTextTokenizer.Cl100kPattern => Cl100k,
        TiktokenTextTokenizer.TekkenPattern => Tekken,
        _ => null,
    };

    /// <inheritdoc />
    public override IEnumerable<(int Offset, int Length)> PreTokenize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return PreTokenize(text.AsSpan());
    }

    /// <inheritdoc />
    public override IEnumerable<(int Offset, int Length)> PreTokenize(ReadOnlySpan<char> text)
    {
        var pieces = new List<(int Offset, int Length)>(text.Length / 4 + 1);
        int start = 0;
        while (start < text.Length)
        {
            int end = NextPieceEnd(text, start);
            pieces.Add((start, end - start));
            start = end;
        }

        return pieces;
    }

    // Where the piece that starts at start ends (exclusive, in UTF-16 units; always past start).
    private int NextPieceEnd(ReadOnlySpan<char> text, int start)
    {
        int end = _scheme == Scheme.Cl100k ? MatchCl100k(text, start) : MatchO200kOrTekken(text, start);
        System.Diagnostics.Debug.Assert(end > start, "every code point is matched by some alternative");
        return end;
    }

    // [^\r\n\p{L}\p{N}]?[U]*[L]+C?|[^\r\n\p{L}\p{N}]?[U]+[L]*C?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
    // with U = [\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}], L = [\p{Ll}\p{Lm}\p{Lo}\p{M}], C the contractions
    // (o200k) or nothing, and \p{N} instead of \p{N}{1,3} (tekken).
    private int MatchO200kOrTekken(ReadOnlySpan<char> text, int i)
    {
        byte first = ClassAt(text, i, out int firstLength);
        bool prefix = IsPrefix(first);
        int end;

        // The first alternative with the optional prefix taken, then not taken; then the second alike.
        if (prefix && (end = MatchUpperThenLower(text, i + firstLength)) > 0)
        {
            return end;
        }

        if ((end = MatchUpperThenLower(text, i)) > 0)
        {
            return end;
        }

        if (prefix && (end = MatchUpperRun(text, i + firstLength)) > 0)
        {
            return end;
        }

        if ((end = MatchUpperRun(text, i)) > 0)
        {
            return end;
        }

        if ((first & Number) != 0)
        {
            return MatchNumbers(text, i, _scheme == Scheme.Tekken ? 1 : 3);
        }

        if ((end = MatchPunctuation(text, i, slashToo: true)) > 0)
        {
            return end;
        }

        return MatchWhitespace(text, i);
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    private static int MatchCl100k(ReadOnlySpan<char> text, int i)
    {
        int end = MatchContraction(text, i);
        if (end > i)
        {
            return end;
        }

        byte first = ClassAt(text, i, out int firstLength);

        // The prefix is never a letter, so giving it back cannot make \p{L}+ match: no backtracking.
        if (IsPrefix(first) && i + firstLength < text.Length && (ClassAt(text, i + firstLength, out _) & Letter) != 0)
        {
            return Run(text, i + firstLength, Letter);
        }

        if ((first & Letter) != 0)
        {
            return Run(text, i, Letter);
        }

        if ((first & Number) != 0)
        {
            return MatchNumbers(text, i, 3);
        }

        if ((end = MatchPunctuation(text, i, slashToo: false)) > 0)
        {
            return end;
        }

        return MatchWhitespace(text, i);
    }

    // [U]*[L]+C? from p, or -1. The greedy [U]* takes the whole run of U; when the next code point is
    // not in L, the engine gives back code points of the run one at a time until the one given back is
    // in L too (Lm, Lo, M), and [L]+ matches just that one (the one after it, when there is one, is
    // not in L, or it would have been found first). Scanning forward while remembering the last such
    // code point gives the same answer without going back.
    private int MatchUpperThenLower(ReadOnlySpan<char> text, int p)
    {
        int e = p;
        int lastLowerEnd = -1;
        byte c = 0;
        int length = 0;
        while (e < text.Length && ((c = ClassAt(text, e, out length)) & Upperish) != 0)
        {
            e += length;
            if ((c & Lowerish) != 0)
            {
                lastLowerEnd = e;
            }
        }

        if (e < text.Length && (c & Lowerish) != 0)
        {
            return MatchContractionSuffix(text, Run(text, e, Lowerish));
        }

        return lastLowerEnd > 0 ? MatchContractionSuffix(text, lastLowerEnd) : -1;
    }

    // [U]+[L]*C? from p, or -1: the optional tail always matches, so the greedy runs are the match.
    private int MatchUpperRun(ReadOnlySpan<char> text, int p)
    {
        int e = Run(text, p, Upperish);
        return e == p ? -1 : MatchContractionSuffix(text, Run(text, e, Lowerish));
    }

    private int MatchContractionSuffix(ReadOnlySpan<char> text, int p)
    {
        if (_scheme == Scheme.Tekken)
        {
            return p;
        }

        int end = MatchContraction(text, p);
        return end > p ? end : p;
    }

    // (?i:'s|'t|'re|'ve|'m|'ll|'d) at p: the end, or p when none matches. Rust's (?i) folds with
    // Unicode's simple case folding, so 's' also matches U+017F LATIN SMALL LETTER LONG S.
    private static int MatchContraction(ReadOnlySpan<char> text, int p)
    {
        if (p + 1 >= text.Length || text[p] != '\'')
        {
            return p;
        }

        char a = text[p + 1];
        char b = p + 2 < text.Length ? text[p + 2] : '\0';
        return a switch
        {
            's' or 'S' or '\u017F' or 't' or 'T' or 'm' or 'M' or 'd' or 'D' => p + 2,
            'r' or 'R' when b is 'e' or 'E' => p + 3,
            'v' or 'V' when b is 'e' or 'E' => p + 3,
            'l' or 'L' when b is 'l' or 'L' => p + 3,
            _ => p,
        };
    }

    // \p{N}{1,max} at p (p holds a number).
    private static int MatchNumbers(ReadOnlySpan<char> text, int p, int max)
    {
        int e = p;
        for (int count = 0; count < max && e < text.Length; count++)
        {
            if ((ClassAt(text, e, out int length) & Number) == 0)
            {
                break;
            }

            e += length;
        }

        return e;
    }

    // ' ?[^\s\p{L}\p{N}]+[\r\n/]*' (or [\r\n]*) at p, or -1. '/' is itself punctuation, so the
    // tail only starts after a line break; possessive or not, the runs cannot give anything back
    // that the next part could use.
    private static int MatchPunctuation(ReadOnlySpan<char> text, int p, bool slashToo)
    {
        int q = p;
        if (text[q] == ' ' && q + 1 < text.Length && IsPunctuation(ClassAt(text, q + 1, out _)))
        {
            q++;
        }

        if (!IsPunctuation(ClassAt(text, q, out _)))
        {
            return -1;
        }

        int e = q;
        while (e < text.Length && IsPunctuation(ClassAt(text, e, out int length)))
        {
            e += length;
        }

        while (e < text.Length && (text[e] is '\r' or '\n' || (slashToo && text[e] == '/')))
        {
            e++;
        }

        return e;
    }

    // \s*[\r\n]+|\s+(?!\S)|\s+ at p (p holds whitespace). Every White_Space code point is in the
    // Basic Multilingual Plane, so each is one UTF-16 unit.
    private static int MatchWhitespace(ReadOnlySpan<char> text, int p)
    {
        int e = p;
        int lastLineBreak = -1;
        while (e < text.Length && (BmpClasses[text[e]] & Space) != 0)
        {
            if (text[e] is '\r' or '\n')
            {
                lastLineBreak = e;
            }

            e++;
        }

        System.Diagnostics.Debug.Assert(e > p, "the other alternatives cover every code point that is not whitespace");

        // \s*[\r\n]+: \s* gives back until a line break follows; [\r\n]+ then takes that last one.
        if (lastLineBreak >= 0)
        {
            return lastLineBreak + 1;
        }

        // \s+(?!\S): at the end of the text the whole run; before a non-space, all but the last
        // space (which is left to join the next piece, as in " word"); else \s+ takes the one space.
        if (e == text.Length || e - 1 == p)
        {
            return e;
        }

        return e - 1;
    }

    private static int Run(ReadOnlySpan<char> text, int p, byte @class)
    {
        int e = p;
        while (e < text.Length && (ClassAt(text, e, out int length) & @class) != 0)
        {
            e += length;
        }

        return e;
    }

    // [^\r\n\p{L}\p{N}]
    private static bool IsPrefix(byte c) => (c & (Letter | Number | LineBreak)) == 0;

    // [^\s\p{L}\p{N}]
    private static bool IsPunctuation(byte c) => (c & (Letter | Number | Space)) == 0;

    private static byte ClassAt(ReadOnlySpan<char> text, int i, out int length)
    {
        char c = text[i];
        if (!char.IsSurrogate(c))
        {
            length = 1;
            return BmpClasses[c];
        }

        // A well-formed surrogate pair is one code point; a lone surrogate (not valid UTF-16) is
        // classified alone as Cs, i.e. punctuation, and becomes U+FFFD in the UTF-8 that BPE sees.
        if (Rune.DecodeFromUtf16(text[i..], out Rune rune, out length) != System.Buffers.OperationStatus.Done)
        {
            length = 1;
            return BmpClasses[c];
        }

        return Classify(rune.Value);
    }

    private static byte[] BuildBmpClasses()
    {
        var classes = new byte[0x10000];
        for (int c = 0; c < classes.Length; c++)
        {
            classes[c] = Classify(c);
        }

        return classes;
    }

    private static byte Classify(int codePoint)
    {
        byte c = 0;
        switch (CharUnicodeInfo.GetUnicodeCategory(codePoint))
        {
            case UnicodeCategory.UppercaseLetter:
            case UnicodeCategory.TitlecaseLetter:
                c = Letter | Upperish;
                break;
            case UnicodeCategory.LowercaseLetter:
                c = Letter | Lowerish;
                break;
            case UnicodeCategory.ModifierLetter:
            case UnicodeCategory.OtherLetter:
                c = Letter | Upperish | Lowerish;
                break;
            case UnicodeCategory.NonSpacingMark:
            case UnicodeCategory.SpacingCombiningMark:
            case UnicodeCategory.EnclosingMark:
                c = Upperish | Lowerish;
                break;
            case UnicodeCategory.DecimalDigitNumber:
            case UnicodeCategory.LetterNumber:
            case UnicodeCategory.OtherNumber:
                c = Number;
                break;
        }

        if (IsWhiteSpace(codePoint))
        {
            c |= Space;
        }

        if (codePoint is '\r' or '\n')
        {
            c |= LineBreak;
        }

        return c;
    }

    // Unicode's White_Space property (PropList.txt), which is what \s means to Rust's regex. It is
    // not char.IsWhiteSpace and not .NET's \s: neither is defined as this property.
    private static bool IsWhiteSpace(int c) =>
        c is (>= 0x09 and <= 0x0D) or 0x20 or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;
}
