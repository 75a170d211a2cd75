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

    public static byte[] Build()
    {
        var model = new MemoryStream();
        foreach ((string piece, float score, int type) in Pieces)
        {
            var entry = new MemoryStream();
            WriteBytes(entry, 1, Encoding.UTF8.GetBytes(piece));
            WriteTag(entry, 2, 5);
            entry.Write(BitConverter.GetBytes(score));
            WriteVarintField(entry, 3, (ulong)type);
            WriteBytes(model, 1, entry.ToArray());
        }

        var trainer = new MemoryStream();
        WriteVarintField(trainer, 3, 2);
        WriteVarintField(trainer, 40, 0);
        WriteVarintField(trainer, 41, 1);
        WriteVarintField(trainer, 42, 2);
        WriteVarintField(trainer, 43, unchecked((ulong)-1L));
        WriteBytes(model, 2, trainer.ToArray());

        var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        WriteVarintField(normalizer, 3, 1);
        WriteVarintField(normalizer, 4, 0);
        WriteVarintField(normalizer, 5, 1);
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream s, int field, int wireType) => WriteVarint(s, (ulong)((field << 3) | wireType));

    private static void WriteVarintField(Stream s, int field, ulong value)
    {
        WriteTag(s, field, 0);
        WriteVarint(s, value);
    }

    private static void WriteBytes(Stream s, int field, byte[] bytes)
    {
        WriteTag(s, field, 2);
        WriteVarint(s, (ulong)bytes.Length);
        s.Write(bytes);
    }

    private static void WriteVarint(Stream s, ulong value)
    {
        while (value >= 0x80)
        {
            s.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }

        s.WriteByte((byte)value);
    }
}
