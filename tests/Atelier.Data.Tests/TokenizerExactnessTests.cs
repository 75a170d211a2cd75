using System.Text;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;
using Xunit.Abstractions;

namespace Atelier.Data.Tests;

/// <summary>
/// The tiktoken tokenisers against the tiktoken npm package (the Rust implementation, compiled to
/// WebAssembly) on a seeded multilingual corpus: every document's ids must be equal.
/// </summary>
public class TokenizerExactnessTests(ITestOutputHelper output)
{
    internal const int Seed = 20261206;
    internal const int DocumentCount = 600;

    private static readonly Lazy<string[]> Corpus = new(() => TokenizerCorpus.Generate(Seed, DocumentCount));

    [Fact]
    [Trait("Category", "Slow")]
    public void O200k_OnEveryCorpusDocument_EqualsTiktoken()
    {
        int[][] expected = TiktokenReference.EncodeBatch("o200k_base", Corpus.Value);

        TokenIdComparison.AssertEveryDocumentEqual(output, "o200k_base", Corpus.Value, expected, TestData.O200k);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Cl100k_OnEveryCorpusDocument_EqualsTiktoken()
    {
        int[][] expected = TiktokenReference.EncodeBatch("cl100k_base", Corpus.Value);

        TokenIdComparison.AssertEveryDocumentEqual(output, "cl100k_base", Corpus.Value, expected, TiktokenTextTokenizer.CreateCl100kBase());
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void TekkenPattern_OnEveryCorpusDocument_EqualsTiktokenWithThatPattern()
    {
        // tekken's pattern over o200k_base's ranks, in both: the pattern is what differs from o200k.
        int[][] expected = TiktokenReference.EncodeBatch("o200k_base", Corpus.Value, TiktokenTextTokenizer.TekkenPattern);

        TokenIdComparison.AssertEveryDocumentEqual(output, "tekken pattern", Corpus.Value, expected, TiktokenTextTokenizer.CreateWithO200kRanks(TiktokenTextTokenizer.TekkenPattern));
    }

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("o200k_base")]
    [InlineData("cl100k_base")]
    public void EveryCodePointInContext_EqualsTiktoken(string encoding)
    {
        // Each code point of planes 0-3 and 14, assigned or not (private use aside), in one probe
        // that puts it before a contraction, between letters, between digits, doubled after a
        // capital and around whitespace. The Unicode tables of .NET 10 and of the reference's Rust
        // regex both know Unicode 16 (U+1C89, new in 16.0, is a letter to both); a code point whose
        // class differed would show here.
        var probes = new List<string>();
        for (int codePoint = 0; codePoint <= 0xEFFFF; codePoint = codePoint == 0x3FFFF ? 0xE0000 : codePoint + 1)
        {
            if (codePoint is >= 0xD800 and <= 0xDFFF || System.Globalization.CharUnicodeInfo.GetUnicodeCategory(codePoint) == System.Globalization.UnicodeCategory.PrivateUse)
            {
                continue;
            }

            string c = char.ConvertFromUtf32(codePoint);
            probes.Add(c + "'s a" + c + "b 1" + c + "2 A" + c + c + "'ll\t" + c + " " + c + "\n");
        }

        int[][] expected = TiktokenReference.EncodeBatch(encoding, probes);

        ITextTokenizer tokenizer = encoding == "o200k_base" ? TestData.O200k : TiktokenTextTokenizer.CreateCl100kBase();
        TokenIdComparison.AssertEveryDocumentEqual(output, encoding + " code-point probes", probes, expected, tokenizer);
    }

    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("ok 𝟎𝟏𝟐[z")]
    [InlineData("𝐇𝐞𝐥𝐥𝐨's 𠀀𠀁 𐌰𐌹𐌽𐍃 🚀🚀🚀 it'ſ")]
    [InlineData("a \n  ")]
    [InlineData("\u0301A b")]
    [InlineData("x  \t\r\n\r\n  y   ")]
    public void O200kAndCl100k_OnTheReportedExamples_EqualTiktoken(string text)
    {
        foreach ((string name, ITextTokenizer tokenizer) in new[] { ("o200k_base", (ITextTokenizer)TestData.O200k), ("cl100k_base", TiktokenTextTokenizer.CreateCl100kBase()) })
        {
            var actual = new List<int>();
            tokenizer.Encode(text, actual);
            Assert.Equal(TiktokenReference.Encode(name, text), actual);
        }
    }

    [Fact]
    public void TekkenJson_WithTheTekkenPattern_UsesTheCodePointPreTokenizer()
    {
        // 𝟎 (U+1D7CE) is a digit: tekken's \p{N} makes it a piece alone, so "a𝟎" is two pieces.
        var pieces = TiktokenPreTokenizer.ForPattern(TiktokenTextTokenizer.TekkenPattern)!.PreTokenize("a𝟎𝟏 x").ToArray();

        Assert.Equal([(0, 1), (1, 2), (3, 2), (5, 2)], pieces);
        Assert.Null(TiktokenPreTokenizer.ForPattern(@"\p{L}+|\s+"));
    }
}

/// <summary>Compares a tokeniser's ids with a reference's, document by document.</summary>
internal static class TokenIdComparison
{
    public static void AssertEveryDocumentEqual(ITestOutputHelper output, string name, IReadOnlyList<string> documents, int[][] expected, ITextTokenizer tokenizer)
    {
        Assert.Equal(documents.Count, expected.Length);
        int different = 0;
        string? first = null;
        long tokens = 0;
        var actual = new List<int>();
        for (int d = 0; d < documents.Count; d++)
        {
            actual.Clear();
            tokenizer.Encode(documents[d], actual);
            tokens += expected[d].Length;
            if (actual.SequenceEqual(expected[d]))
            {
                continue;
            }

            different++;
            first ??= Describe(d, documents[d], expected[d], actual);
        }

        output.WriteLine($"{name}: {documents.Count} documents compared, {tokens} reference tokens, {different} different");
        Assert.True(different == 0, $"{name}: {different} of {documents.Count} documents differ from the reference; the first:\n{first}");
    }

    private static string Describe(int index, string document, int[] expected, List<int> actual)
    {
        int at = 0;
        while (at < expected.Length && at < actual.Count && expected[at] == actual[at])
        {
            at++;
        }

        int from = Math.Max(0, at - 3);
        return $"document {index} ({Escape(document)}): first different id at {at}; " +
            $"reference [{string.Join(", ", expected.Skip(from).Take(10))}], actual [{string.Join(", ", actual.Skip(from).Take(10))}] from position {from}";
    }

    private static string Escape(string text)
    {
        var builder = new StringBuilder();
        foreach (Rune rune in (text.Length > 400 ? text[..400] : text).EnumerateRunes())
        {
            if (rune.Value < 0x20 || rune.Value is >= 0x7F and < 0xA0 || Rune.IsWhiteSpace(rune) && rune.Value != ' ')
            {
                builder.Append($"\\u{rune.Value:X4}");
            }
            else
            {
                builder.Append(rune.ToString());
            }
        }

        return builder.ToString();
    }
}
