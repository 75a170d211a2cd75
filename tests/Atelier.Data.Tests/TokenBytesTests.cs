using System.Text;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests;

/// <summary>The bytes each token stands for: what constrained decoding matches, so they must add up to the decoded text exactly.</summary>
public class TokenBytesTests
{
    private static readonly string[] Texts = ["hello world", "  déjà vu, 東京 🙂 {\"a\": [1, 2.5e-3, true]}", "tabs\tand\nnewlines\r\n", "ÿ\u0001"];

    private static byte[] Concat(ITextTokenizer tokenizer, string text)
    {
        var ids = new List<int>();
        tokenizer.Encode(text, ids);
        var table = tokenizer.TokenBytes();
        return [.. ids.SelectMany(id => table[id] ?? throw new InvalidOperationException($"text token {id} has no bytes"))];
    }

    [Fact]
    public void TiktokenVocabularies_TokenBytesAddUpToTheDecodedText_AndControlTokensHaveNone()
    {
        foreach (var tokenizer in new ITextTokenizer[] { TestData.O200k, TiktokenTextTokenizer.LoadTekken(new MemoryStream(TinyTekken.Build())) })
        {
            Assert.Equal(tokenizer.VocabularySize, tokenizer.TokenBytes().Count);
            foreach (var text in Texts)
            {
                // What decoding gives (the tiny vocabulary's pattern drops some punctuation, as tiktoken would).
                var ids = new List<int>();
                tokenizer.Encode(text, ids);
                Assert.Equal(Encoding.UTF8.GetBytes(tokenizer.Decode(ids)), Concat(tokenizer, text));
            }

            Assert.Equal(Encoding.UTF8.GetBytes("déjà vu 東京"), Concat(tokenizer, "déjà vu 東京"));
            Assert.Equal(tokenizer.VocabularySize, tokenizer.TokenBytes().Count);

            Assert.Null(tokenizer.TokenBytes()[tokenizer.Control.Bos]);
            Assert.Null(tokenizer.TokenBytes()[tokenizer.Control.Eos]);
        }
    }

    [Fact]
    public void SentencePiece_TokenBytesAreThePiecesWithSpaces_AndBytePiecesTheirByte()
    {
        var tokenizer = SentencePieceTextTokenizer.Load(new MemoryStream(TinySentencePiece.Build()));
        foreach (var text in new[] { "hello", "hello hello", "he oh hell" })
        {
            // SentencePiece's dummy prefix: the encoded text starts with a space.
            Assert.Equal(Encoding.UTF8.GetBytes(" " + text), Concat(tokenizer, text));
        }

        Assert.Null(tokenizer.TokenBytes()[tokenizer.Control.Bos]);
    }
}
