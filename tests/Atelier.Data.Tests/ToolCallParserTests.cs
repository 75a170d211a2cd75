using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;
using static Atelier.Data.Tests.Support.TinyVocabularies;

namespace Atelier.Data.Tests;

/// <summary>
/// The tool-call parser against the renderer: a turn the formatter renders for a version, generated back
/// by a model, parses to the calls it came from.
/// </summary>
public sealed class ToolCallParserTests : IDisposable
{
    private const int Eos = 2, Calls = 9, Args = 20, CallId = 21;

    private readonly TestData.TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private MistralModelTokenizer Tekken(string version)
    {
        WriteByteTekken(_dir.Path, version);
        return MistralModelTokenizer.Load(_dir.Path);
    }

    private static TrainingExample Parse(string line) =>
        FineTuneJsonlReader.ParseLine(System.Text.Encoding.UTF8.GetBytes(line), "t.jsonl", 1, 0).Example
        ?? throw new InvalidOperationException("the test line does not parse");

    /// <summary>The tokens of the final assistant turn: from the last [/INST] to the end.</summary>
    private static int[] LastTurn(TokenizedExample example, ITextTokenizer tokenizer) =>
        example.Tokens[(Array.LastIndexOf(example.Tokens, tokenizer.Control.EndInst!.Value) + 1)..];

    [Theory]
    [InlineData("v2")]
    [InlineData("v3")]
    [InlineData("v7")]
    [InlineData("v11")]
    [InlineData("v13")]
    public void RenderedToolCalls_ParseBackToTheSameCalls(string version)
    {
        MistralModelTokenizer tokenizer = Tekken(version);
        TrainingExample example = Parse("""
            {"messages":[{"role":"user","content":"Weather?"},{"role":"assistant","tool_calls":[{"id":"abcDEF123","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":[1,2],\"unit\":{\"c\":true}}"}},{"id":"xyz987XYZ","type":"function","function":{"name":"now","arguments":"{}"}}]}]}
            """);
        var formatter = new MistralInstructFormatter(tokenizer);
        int[] turn = LastTurn(formatter.Format(example), tokenizer);
        int ids = 0;

        AssistantTurn parsed = MistralToolCallParser.Parse(turn, tokenizer, formatter.Version, () => $"gen{++ids:D6}");

        Assert.Null(parsed.ToolCallError);
        Assert.Equal("", parsed.Content);
        // A final turn's call ids are not rendered (mistral-finetune), so the parser gives new ones.
        Assert.Equal(
            [new ToolCall("gen000001", "get_weather", """{"city": "Paris", "days": [1, 2], "unit": {"c": true}}"""), new ToolCall("gen000002", "now", "{}")],
            parsed.ToolCalls);
        Assert.Equal(formatter.ToolCallsTokenId, tokenizer.Control.ToolCalls);
        Assert.Equal(version is "v2" or "v3" or "v7", formatter.ToolCallsAreJsonList);
    }

    [Fact]
    public void V11_ACallIdTheModelWrites_IsKept()
    {
        MistralModelTokenizer tokenizer = Tekken("v11");
        int[] turn = [Calls, .. TekkenText("f"), CallId, .. TekkenText("a1B2c3D4e"), Args, .. TekkenText("""{"x":1}"""), Eos];

        AssistantTurn parsed = MistralToolCallParser.Parse(turn, tokenizer);

        Assert.Equal([new ToolCall("a1B2c3D4e", "f", """{"x": 1}""")], parsed.ToolCalls);
        Assert.Equal("", parsed.Content);
    }

    [Fact]
    public void V7_JsonListWithIds_KeepsThem_AndASingleObjectIsOneCall()
    {
        MistralModelTokenizer tokenizer = Tekken("v7");
        int[] list = [Calls, .. TekkenText("""[{"name": "f", "arguments": {"a": "b"}, "id": "123456789"}]"""), Eos];
        int[] single = [Calls, .. TekkenText("""{"name": "g", "arguments": {}}"""), Eos];

        Assert.Equal([new ToolCall("123456789", "f", """{"a": "b"}""")], MistralToolCallParser.Parse(list, tokenizer).ToolCalls);
        ToolCall call = Assert.Single(MistralToolCallParser.Parse(single, tokenizer).ToolCalls);
        Assert.Equal("g", call.Name);
        Assert.Matches("^[a-zA-Z0-9]{9}$", call.Id);
    }

    [Theory]
    [InlineData("v7", "[{\"name\": \"f\", \"arguments\": {\"a\": ")]
    [InlineData("v7", "[{\"arguments\": {}}]")]
    [InlineData("v13", "f[ARGS]{\"a\": tru")]
    [InlineData("v13", "f")]
    public void MalformedCalls_GiveNoCalls_TheRawTextAsContent_AndSayWhy(string version, string afterMarker)
    {
        MistralModelTokenizer tokenizer = Tekken(version);
        var turn = new List<int>(TekkenText("Hi "));
        turn.Add(Calls);
        string[] parts = afterMarker.Split("[ARGS]");
        turn.AddRange(TekkenText(parts[0]));
        if (parts.Length > 1)
        {
            turn.Add(Args);
            turn.AddRange(TekkenText(parts[1]));
        }

        AssistantTurn parsed = MistralToolCallParser.Parse([.. turn, Eos], tokenizer);

        Assert.Empty(parsed.ToolCalls);
        Assert.NotNull(parsed.ToolCallError);
        Assert.Equal("Hi [TOOL_CALLS]" + afterMarker, parsed.Content);
    }

    [Fact]
    public void TextWithoutCalls_IsTheContent_UpToTheFirstEos()
    {
        MistralModelTokenizer tokenizer = Tekken("v13");
        AssistantTurn parsed = MistralToolCallParser.Parse([.. TekkenText("Just text."), Eos, .. TekkenText("junk")], tokenizer);
        Assert.Equal(new AssistantTurn("Just text.", [], null).Content, parsed.Content);
        Assert.Empty(parsed.ToolCalls);
        Assert.Null(parsed.ToolCallError);
    }

    [Fact]
    public void NewCallIds_AreNineLettersAndDigits()
    {
        var ids = Enumerable.Range(0, 50).Select(_ => MistralToolCallParser.NewCallId()).ToList();
        Assert.All(ids, id => Assert.Matches("^[a-zA-Z0-9]{9}$", id));
        Assert.True(ids.Distinct().Count() > 45);
    }
}

/// <summary>Token bytes for constrained decoding, per tokeniser kind, loaded from model directories.</summary>
public sealed class ModelTokenBytesTests : IDisposable
{
    private readonly TestData.TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Tekken_TextIdsAreTheirBytes_AndControlIdsAreNull()
    {
        WriteByteTekken(_dir.Path, "v11");
        MistralModelTokenizer tokenizer = MistralModelTokenizer.Load(_dir.Path);

        IReadOnlyList<byte[]?> bytes = tokenizer.TokenBytes();

        Assert.Equal(tokenizer.VocabularySize, bytes.Count);
        Assert.All(Enumerable.Range(0, TekkenSpecialCount), id => Assert.Null(bytes[id]));
        Assert.Equal([(byte)'{'], bytes[TekkenText("{")[0]]!);
        Assert.Equal([0xE6], bytes[TekkenSpecialCount + 0xE6]!);
    }

    [Fact]
    public void Tiktoken_EachIdDecodesToItsBytes()
    {
        var tokenizer = TestData.O200k;
        var ids = new List<int>();
        tokenizer.Encode("Hello, 世界 {\"a\": 1}", ids);

        IReadOnlyList<byte[]?> bytes = tokenizer.TokenBytes();

        Assert.Equal("Hello, 世界 {\"a\": 1}", System.Text.Encoding.UTF8.GetString([.. ids.SelectMany(id => bytes[id]!)]));
        Assert.Null(bytes[tokenizer.Control.ToolCalls!.Value]);
        Assert.Null(bytes[tokenizer.Control.Eos]);
    }

    [Fact]
    public void SentencePiece_SpaceMarkIsASpace_AndControlPiecesAreNull()
    {
        File.WriteAllBytes(Path.Combine(_dir.Path, "tokenizer.model.v3"), BuildCharSentencePiece(withControlPieces: true));
        MistralModelTokenizer tokenizer = MistralModelTokenizer.Load(_dir.Path);
        var ids = new List<int>();
        tokenizer.Encode("a b", ids);

        IReadOnlyList<byte[]?> bytes = tokenizer.TokenBytes();

        // SentencePiece's dummy prefix makes the text " a b".
        Assert.Equal(" a b", System.Text.Encoding.UTF8.GetString([.. ids.SelectMany(id => bytes[id]!)]));
        Assert.Null(bytes[tokenizer.Control.Inst!.Value]);
        Assert.Null(bytes[tokenizer.Control.Bos]);
    }
}
