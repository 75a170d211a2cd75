using System.Text;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests;

public class SentencePieceTests
{
    [Fact]
    public void SentencePieceBpeModel_EncodesWithDummyPrefixAndFindsControlPieces()
    {
        SentencePieceTextTokenizer tokenizer = SentencePieceTextTokenizer.Load(new MemoryStream(TinySentencePiece.Build()));
        var ids = new List<int>();

        tokenizer.Encode("hello", ids);

        Assert.Equal([TinySentencePiece.Id("▁hello")], ids);
        Assert.Equal((1, 2), (tokenizer.Control.Bos, tokenizer.Control.Eos));
        Assert.Equal(3, tokenizer.Control.Inst);
        Assert.Equal(4, tokenizer.Control.EndInst);
        Assert.Null(tokenizer.Control.ToolCalls);
        Assert.StartsWith("sentencepiece/sha256:", tokenizer.Identity, StringComparison.Ordinal);
    }
}

/// <summary>Writes a SentencePiece ModelProto (BPE) by hand, in protobuf wire format.</summary>
internal static class TinySentencePiece
{
    private static readonly (string Piece, float Score, int Type)[] Pieces =
    [
        ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("[INST]", 0, 3), ("[/INST]", 0, 3),
        ("▁hello", -1, 1), ("▁hell", -2, 1), ("ll", -3, 1), ("▁he", -4, 1), ("▁h", -5, 1),
        ("▁", -10, 1), ("h", -11, 1), ("e", -12, 1), ("l", -13, 1), ("o", -14, 1),
    ];

    public static int Id(string piece) => Array.FindIndex(Pieces, p => p.Piece == piece);

    public static byte[] Build() => Support.TinyVocabularies.BuildSentencePiece(Pieces);
}
