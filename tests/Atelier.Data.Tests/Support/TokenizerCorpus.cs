using System.Globalization;
using System.Text;

namespace Atelier.Data.Tests.Support;

/// <summary>
/// Seeded multilingual documents for comparing tokenisers with their references: the places where
/// pre-tokenisers and BPE encoders go wrong (astral letters and digits, combining marks, whitespace
/// runs with mixed line breaks, indentation, contractions in mixed case, digit runs, punctuation
/// runs, runs of one repeated character), mixed at random.
/// </summary>
internal static class TokenizerCorpus
{
    private static readonly string[] Words =
    [
        "hello", "world", "tokeniser", "The", "QUICK", "brown", "Fox", "naïve", "café", "Größe", "straße", "ÆSIR", "œuvre",
        "Привет", "мир", "ЁЖИК", "Γειά", "σου", "ΚΌΣΜΕ", "你好", "世界", "機器學習", "日本語", "カタカナ", "ひらがな", "한국어", "안녕하세요",
        "مرحبا", "بالعالم", "שלום", "नमस्ते", "दुनिया", "สวัสดี", "ქართული", "Ǆemal", "ǅungla", "ʰello", "x\u0301y", "e\u0301te\u0301",
        "ﬁne", "İstanbul", "ıi", "ẞ", "ᾼ", "Ⅻ", "½", "²³", "١٢٣", "٣٤٥٦", "𝐇𝐞𝐥𝐥𝐨", "𝔉𝔯𝔞𝔨𝔱𝔲𝔯", "𐐀𐐨𐐹", "𐌰𐌹𐌽𐍃", "𞤀𞤢𞤣𞤤𞤢𞤥",
        "𠀀𠀁𠀂", "𪚥", "𝒜𝒷𝒸", "𐓏𐓘𐓻", "𑀅𑀓𑀩𑀸", "𓀀𓀁𓂀", "𒀀𒀁",
    ];

    private static readonly string[] Contractions =
    [
        "it's", "It'S", "WE'RE", "they'Ve", "I'M", "you'LL", "he'D", "don't", "DON'T", "it'ſ", "'s", "'S", "''s", "'re", "o'clock",
        "rock'n'roll", "𝐢𝐭's", "ΑΒ's", "Éte'Ll", "x'", "y''", "'",
    ];

    private static readonly string[] Punctuation =
    [
        "!", "!!!", "...", "…", "-----", "--", "/**/", "//", "/", "?!/", "<|endoftext|>", "[INST]", "[/INST]", "{}", "()", "=>", "::", "#", "@", "$",
        "%", "&&", "||", "«»", "„“", "—", "·", "©®™", "∑∫√", "→", "♥", "\u200d", "\ufe0f", "\u00ad", "\u001f", "\u001c", "\u0000", "\u007f",
    ];

    private static readonly string[] Emoji =
    [
        "🌍", "🚀", "👩‍💻", "👍🏽", "🇫🇷", "❤️", "😀😀😀", "🎉", "🧑‍🤝‍🧑", "1️⃣", "🏳️‍🌈",
    ];

    private static readonly string[] Whitespace =
    [
        " ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r\n\r\n", " \n", "\n ", " \r\n  ", "\t\n\t", "\r", "\u00a0", "\u3000", "\u2028", "\u2029",
        "\u0085", "\u000b", "\u000c", "\u2003", "\u202f", "\u205f", "\u1680", " \u00a0 ", "\n\n\n   ",
    ];

    private static readonly string[] CodeLines =
    [
        "def f(x):", "    return x ** 2  # square", "        if (a && b) {", "\t\tyield i;", "}", "  - item: 1", "    - item: 2", "#include <stdio.h>",
        "for (int i = 0; i < 10; i++) {", "    printf(\"%d\\n\", i);", "x = [1,2,3]", "// comment", "/* block */", "SELECT * FROM t WHERE id=42;",
        "    ", "\t", "if x:\r\n    pass", "        ", "--------------------", "================", "    '''docstring'''",
    ];

    // Code-point ranges that Unicode assigned long ago (3.1 to 9.0), letters, digits, marks and
    // symbols outside the Basic Multilingual Plane and inside it, drawn from at random.
    private static readonly (int First, int Last)[] Ranges =
    [
        (0x0041, 0x007A), (0x00C0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F),
        (0x0E00, 0x0E5B), (0x1100, 0x11FF), (0x0300, 0x036F), (0x1E00, 0x1FFF), (0x2000, 0x206F), (0x2070, 0x209C), (0x2150, 0x218B),
        (0x2190, 0x23FF), (0x2460, 0x24FF), (0x3000, 0x30FF), (0x4E00, 0x4FFF), (0xAC00, 0xAD00), (0xFF00, 0xFFEF),
        (0x10300, 0x1034A), (0x10400, 0x1044F), (0x104A0, 0x104A9), (0x10107, 0x10133), (0x11000, 0x1106F), (0x1D165, 0x1D169),
        (0x1D400, 0x1D7FF), (0x1E900, 0x1E959), (0x1F300, 0x1F64F), (0x1F900, 0x1F9FF), (0x20000, 0x2A6D6), (0x13000, 0x1342E),
        (0x12000, 0x12399), (0x1F1E6, 0x1F1FF), (0x1F3FB, 0x1F3FF), (0xE0100, 0xE01EF),
    ];

    /// <summary>Generates <paramref name="count"/> documents from <paramref name="seed"/>.</summary>
    public static string[] Generate(int seed, int count)
    {
        var random = new Random(seed);
        var documents = new string[count];
        var builder = new StringBuilder();
        for (int d = 0; d < count; d++)
        {
            builder.Clear();
            int segments = random.Next(5, 60);
            for (int s = 0; s < segments; s++)
            {
                AppendSegment(random, builder);
            }

            documents[d] = builder.ToString();
        }

        return documents;
    }

    private static void AppendSegment(Random random, StringBuilder builder)
    {
        switch (random.Next(13))
        {
            case 0:
            case 1:
                builder.Append(Pick(random, Words));
                break;
            case 2:
                builder.Append(Pick(random, Contractions));
                break;
            case 3:
                builder.Append(Pick(random, Punctuation));
                break;
            case 4:
                builder.Append(Pick(random, Emoji));
                break;
            case 5:
            case 6:
                builder.Append(Pick(random, Whitespace));
                break;
            case 7:
                builder.Append(Pick(random, CodeLines)).Append(random.Next(3) == 0 ? "\r\n" : "\n");
                break;
            case 8:
                // Digit runs, ASCII or astral (𝟎 U+1D7CE...) or Arabic-Indic, of every length around 3.
                int digits = random.Next(1, 12);
                int zero = random.Next(4) switch { 0 => 0x1D7CE, 1 => 0x0660, 2 => 0x1D7EC, _ => '0' };
                for (int i = 0; i < digits; i++)
                {
                    builder.Append(char.ConvertFromUtf32(zero + random.Next(10)));
                }

                break;
            case 9:
                // A run of one repeated character or string: indentation, rules, emoji.
                string unit = random.Next(6) switch
                {
                    0 => " ",
                    1 => "-",
                    2 => "=",
                    3 => Pick(random, Emoji),
                    4 => "\t",
                    _ => RandomCodePoint(random),
                };
                builder.Append(string.Concat(Enumerable.Repeat(unit, random.Next(2, 24))));
                break;
            default:
                int length = random.Next(1, 8);
                for (int i = 0; i < length; i++)
                {
                    builder.Append(RandomCodePoint(random));
                }

                break;
        }
    }

    private static string Pick(Random random, string[] items) => items[random.Next(items.Length)];

    private static string RandomCodePoint(Random random)
    {
        while (true)
        {
            (int first, int last) = Ranges[random.Next(Ranges.Length)];
            int codePoint = random.Next(first, last + 1);
            if (codePoint is >= 0xD800 and <= 0xDFFF || CharUnicodeInfo.GetUnicodeCategory(codePoint) == UnicodeCategory.OtherNotAssigned)
            {
                continue;
            }

            return char.ConvertFromUtf32(codePoint);
        }
    }
}
