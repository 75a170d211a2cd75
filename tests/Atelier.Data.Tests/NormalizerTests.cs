using Atelier.Data.Model;

namespace Atelier.Data.Tests;

public class NormalizerTests
{
    private static readonly TextNormalizer Normalizer = new(new NormalizationOptions());

    [Theory]
    [InlineData("Cafe\u0301", "Caf\u00e9")]
    [InlineData("A\u030a", "\u00c5")]
    [InlineData("\u1100\u1161\u11a8", "\uac01")]
    [InlineData("q\u0307\u0323", "q\u0323\u0307")]
    [InlineData("\u1e0b\u0323", "\u1e0d\u0307")]
    [InlineData("\u212b", "\u00c5")]
    [InlineData("日本語のテキスト", "日本語のテキスト")]
    [InlineData("\u30ab\u3099", "\u30ac")]
    public void Nfc_ComposesAsUnicodeSays(string input, string expected)
    {
        Assert.Equal(expected, UnicodeNfc.Normalize(input));
    }

    [Fact]
    public void Nfc_OnGeneratedVectors_EqualsPythonUnicodedata()
    {
        using var document = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "nfc-vectors.json")));
        Assert.Equal(UnicodeNfc.UnicodeVersion, document.RootElement.GetProperty("unicode").GetString());
        int checkedCases = 0;
        foreach (System.Text.Json.JsonElement pair in document.RootElement.GetProperty("cases").EnumerateArray())
        {
            string input = pair[0].GetString()!;
            Assert.Equal(pair[1].GetString(), UnicodeNfc.Normalize(input));
            checkedCases++;
        }

        Assert.Equal(400, checkedCases);
    }

    [Fact]
    public void Normalize_RemovesControlsAndTidiesWhitespace()
    {
        string input = "  \uFEFFHello\u0007 world\u00A0!  \r\nnext line\t\r\n\r\n\r\n\r\n\r\nlast\u200B  ";

        Assert.Equal("Hello world !\nnext line\n\n\nlast", Normalizer.Normalize(input));
    }

    [Fact]
    public void Normalize_KeepsCodeIndentation()
    {
        const string code = "def f():\n    return 1";

        Assert.Same(code, Normalizer.Normalize(code));
    }

    [Fact]
    public void Normalize_OfAChat_NormalisesEveryContent()
    {
        var example = new TrainingExample
        {
            Ordinal = 0,
            SourceFile = "f",
            Line = 1,
            Kind = ExampleKind.Chat,
            Messages = [new ChatMessage { Role = ChatRole.User, Content = " e\u0301 " }, new ChatMessage { Role = ChatRole.Assistant, Content = "ok" }],
        };

        TrainingExample normalized = Normalizer.Normalize(example);

        Assert.Equal("\u00e9", normalized.Messages![0].Content);
        Assert.Same(example.Messages[1], normalized.Messages[1]);
    }
}
