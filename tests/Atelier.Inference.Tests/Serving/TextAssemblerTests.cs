using System.Text;
using Atelier.Data.Tokenization;
using Atelier.Inference.Serving;
using Atelier.Modeling.Mistral;

namespace Atelier.Inference.Tests.Serving;

public class TextAssemblerTests
{
    // The tiny models' tekken vocabulary: one token per byte, so a multi-byte character spans tokens.
    private static readonly ITextTokenizer Bytes = TiktokenTextTokenizer.LoadTekken(new MemoryStream(Encoding.UTF8.GetBytes(TinyModelWriter.TekkenJson())));

    private static int[] Encode(string text)
    {
        var ids = new List<int>();
        Bytes.Encode(text, ids);
        return [.. ids];
    }

    [Fact]
    public void Deltas_AddUpToTheText_AndNeverSplitACharacter()
    {
        const string Text = "héllo wörld, 東京 🙂!";
        var assembler = new TextAssembler(Bytes, []);
        var deltas = Encode(Text).Select(assembler.Push).ToList();
        deltas.Add(assembler.Finish());
        Assert.Equal(Text, string.Concat(deltas));
        Assert.Equal(Text, assembler.Text);
        Assert.DoesNotContain(deltas, d => d.Contains('\uFFFD', StringComparison.Ordinal));
        // A 4-byte character arrives in one delta, after its last byte.
        Assert.Contains("🙂", deltas);
        Assert.False(assembler.Stopped);
    }

    [Theory]
    [InlineData("wö")]
    [InlineData("ld, 東")]
    [InlineData("o")]
    public void AStopString_EndsTheTextBeforeIt_AndNoDeltaShowsAnyOfIt(string stop)
    {
        const string Text = "héllo wörld, 東京 🙂!";
        var assembler = new TextAssembler(Bytes, ["never", stop]);
        var deltas = new List<string>();
        foreach (var id in Encode(Text))
        {
            deltas.Add(assembler.Push(id));
            if (assembler.Stopped)
            {
                break;
            }
        }

        deltas.Add(assembler.Finish());
        var expected = Text[..Text.IndexOf(stop, StringComparison.Ordinal)];
        Assert.True(assembler.Stopped);
        Assert.Equal(expected, assembler.Text);
        Assert.Equal(expected, string.Concat(deltas));
    }

    [Fact]
    public void WithoutAStopMatch_TheHeldBackTailIsReleasedAtTheEnd()
    {
        var assembler = new TextAssembler(Bytes, ["xyz"]);
        var deltas = Encode("abcxy").Select(assembler.Push).ToList();
        Assert.Equal("abc", string.Concat(deltas));
        Assert.Equal("xy", assembler.Finish());
        Assert.False(assembler.Stopped);
    }
}
