using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;
using Xunit.Abstractions;

namespace Atelier.Data.Tests;

/// <summary>
/// SentencePiece BPE against Google's sentencepiece: a model trained by sentencepiece (configured as
/// Mistral's v1 tokenizer.model) on a seeded corpus, then every document of another seeded corpus
/// encoded by both, ids compared.
/// </summary>
public class SentencePieceExactnessTests(ITestOutputHelper output)
{
    // "{}" is Mistral v1's configuration; the others cover the normaliser's and splitter's other paths.
    [Theory]
    [Trait("Category", "Slow")]
    [InlineData("{}")]
    [InlineData("""{"remove_extra_whitespaces": true, "user_defined_symbols": ["<tool>", "@@", "▁▁▁"]}""")]
    [InlineData("""{"treat_whitespace_as_suffix": true, "add_dummy_prefix": false, "split_digits": false}""")]
    public void BpeModel_OnEveryCorpusDocument_EqualsSentencePiece(string trainerOptions)
    {
        using var directory = new TestData.TempDirectory();
        string model = SentencePieceReference.Train(directory.Path, TrainingSentences(), vocabularySize: 8000, trainerOptions);
        string[] documents = [.. RunsAndFallbacks(), .. TokenizerCorpus.Generate(seed: 17, count: 500)];
        int[][] expected = SentencePieceReference.Encode(model, documents);

        using FileStream stream = File.OpenRead(model);
        SentencePieceTextTokenizer tokenizer = SentencePieceTextTokenizer.Load(stream);

        TokenIdComparison.AssertEveryDocumentEqual(output, "sentencepiece bpe", documents, expected, tokenizer);
        int byteFallbacks = CountBytePieces(model, expected);
        output.WriteLine($"{byteFallbacks} byte-fallback tokens among the reference's");
        Assert.True(byteFallbacks > 100, "the corpus should exercise byte fallback");
        Assert.Equal((1, 2), (tokenizer.Control.Bos, tokenizer.Control.Eos));
        Assert.NotNull(tokenizer.Control.Inst);
    }

    // The reference's ids of <0xNN> pieces (the .vocab file beside the model lists pieces in id order).
    private static int CountBytePieces(string model, int[][] ids)
    {
        string[] vocabulary = File.ReadAllLines(Path.ChangeExtension(model, ".vocab"));
        var bytePieces = new HashSet<int>();
        for (int id = 0; id < vocabulary.Length; id++)
        {
            if (vocabulary[id].StartsWith("<0x", StringComparison.Ordinal))
            {
                bytePieces.Add(id);
            }
        }

        Assert.Equal(256, bytePieces.Count);
        return ids.Sum(document => document.Count(bytePieces.Contains));
    }

    // Training sentences: the corpus's documents cut into lines (sentencepiece trains on lines).
    private static IEnumerable<string> TrainingSentences()
    {
        foreach (string document in TokenizerCorpus.Generate(seed: 4, count: 400))
        {
            foreach (string line in document.Split('\n'))
            {
                string trimmed = line.Replace("\r", "", StringComparison.Ordinal).Replace("\0", "", StringComparison.Ordinal);
                if (trimmed.Length > 0)
                {
                    yield return trimmed;
                }
            }
        }
    }

    // Where BPE tie-breaking shows: runs of three or more equal characters, odd and even, and
    // characters the model never saw (byte fallback).
    private static IEnumerable<string> RunsAndFallbacks()
    {
        string[] units = [" ", "-", "=", "a", "😀", "\t", "ab", "𝟎", "  ", "__", "ǅ", "ẞ", "𒀀", "\u0301"];
        foreach (string unit in units)
        {
            for (int count = 1; count <= 17; count++)
            {
                string run = string.Concat(Enumerable.Repeat(unit, count));
                yield return run;
                yield return "x" + run + "y";
                yield return "    def f():\n" + run + "\n        return 1";
            }
        }

        yield return "";
        yield return " ";
        yield return "ꙮ unseen ꙮꙮ and 𝌆 too";
        yield return "[INST] control pieces are text [/INST]";
        yield return "<s> </s> <unk> <0x41>";
        yield return "   leading, trailing and   inner spaces   ";
        yield return "user symbols <tool>x@@y<tool><tool> @@@ ▁▁▁▁ stay whole";
    }
}
