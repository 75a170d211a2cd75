using Atelier.Core.Errors;
using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;
using static Atelier.Data.Tests.Support.TinyVocabularies;

namespace Atelier.Data.Tests;

/// <summary>
/// Token ids of each tokeniser version's chat format, derived by hand from mistral-common's
/// <c>InstructTokenizerV1/V3/V7/V11</c> rules over vocabularies whose ids are known: a byte-level
/// tekken (text byte b is id b + 100) and a character-level SentencePiece model (see <see cref="TinyVocabularies"/>).
/// The loss mask follows mistral-finetune: assistant tokens and their &lt;/s&gt;, unless weight is 0.
/// </summary>
public sealed class ChatRenderingTests : IDisposable
{
    // Byte tekken special ids (mistral-common's order).
    private const int Bos = 1, Eos = 2, Inst = 3, EndInst = 4, Tools = 5, EndTools = 6, Results = 7, EndResults = 8, Calls = 9;
    private const int SystemPrompt = 17, EndSystemPrompt = 18, ToolContent = 19, Args = 20, CallId = 21;

    // Character SentencePiece v3 control pieces (ids 3..9, Mistral v3's order).
    private const int SpInst = 3, SpEndInst = 4, SpCalls = 5, SpTools = 6, SpEndTools = 7, SpResults = 8, SpEndResults = 9;

    private readonly TestData.TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private static TrainingExample Parse(string line) =>
        FineTuneJsonlReader.ParseLine(System.Text.Encoding.UTF8.GetBytes(line), "t.jsonl", 1, 0).Example
        ?? throw new InvalidOperationException("the test line does not parse");

    private MistralModelTokenizer Tekken(string version)
    {
        WriteByteTekken(_dir.Path, version);
        return MistralModelTokenizer.Load(_dir.Path);
    }

    private MistralModelTokenizer SentencePiece(string fileName, bool withControlPieces)
    {
        File.WriteAllBytes(Path.Combine(_dir.Path, fileName), BuildCharSentencePiece(withControlPieces));
        return MistralModelTokenizer.Load(_dir.Path);
    }

    /// <summary>A token sequence: ints are ids, strings are text encoded by <paramref name="text"/>, a bool switches training on or off for what follows.</summary>
    private static (int[] Tokens, bool[] Mask) Expect(Func<string, int[]> text, params object[] parts)
    {
        var tokens = new List<int>();
        var mask = new List<bool>();
        bool trained = false;
        foreach (object part in parts)
        {
            switch (part)
            {
                case bool t:
                    trained = t;
                    break;
                case int id:
                    tokens.Add(id);
                    mask.Add(trained);
                    break;
                case string s:
                    foreach (int id in text(s))
                    {
                        tokens.Add(id);
                        mask.Add(trained);
                    }

                    break;
            }
        }

        return ([.. tokens], [.. mask]);
    }

    private static void AssertRendered((int[] Tokens, bool[] Mask) expected, TokenizedExample actual)
    {
        Assert.Equal(expected.Tokens, actual.Tokens);
        Assert.Equal(expected.Mask, actual.LossMask);
    }

    [Fact]
    public void V1_SystemPromptGoesWithTheFirstUserTurn_AndInstMarkersAreText()
    {
        MistralModelTokenizer tokenizer = SentencePiece("tokenizer.model", withControlPieces: false);
        TrainingExample example = Parse("""
            {"messages":[{"role":"system","content":"Be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo","weight":0},{"role":"user","content":"ok"},{"role":"assistant","content":"go"}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        // <s> ▁[INST]▁Be▁brief\n\nhi▁[/INST] ▁yo</s> ▁[INST]▁ok▁[/INST] ▁go</s>: one encode call per turn.
        Assert.Equal(MistralTokenizerVersion.V1, tokenizer.Version);
        AssertRendered(
            Expect(
                t => PieceText(t, withControlPieces: false),
                Bos, "[INST] Be brief\n\nhi [/INST]", "yo", Eos, "[INST] ok [/INST]", true, "go", Eos),
            result);
    }

    [Fact]
    public void V1_ToolCalls_AreRefusedAsMistralCommonDoes()
    {
        MistralModelTokenizer tokenizer = SentencePiece("tokenizer.model", withControlPieces: false);
        TrainingExample example = Parse("""
            {"messages":[{"role":"user","content":"w"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"},{"role":"assistant","content":"ok"}]}
            """);

        var error = Assert.Throws<BadRequestException>(() => new MistralInstructFormatter(tokenizer).Format(example));
        Assert.Contains("v1", error.Message, StringComparison.Ordinal);
        Assert.StartsWith("t.jsonl:1: ", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void V3_SystemPromptWithLastUser_ToolsBeforeIt_CallsWithIds_ResultsAsJson()
    {
        MistralModelTokenizer tokenizer = SentencePiece("tokenizer.model.v3", withControlPieces: true);
        TrainingExample example = Parse("""
            {"tools":[{"function":{"parameters":{},"name":"f"},"type":"function"}],"messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b "},{"role":"user","content":"w?"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"2"},{"role":"assistant","content":"ok"}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        // Tools are dumped as mistral-common's Tool model (type, then name, description, parameters);
        // assistant text loses trailing spaces; a JSON tool result is embedded as JSON (2, not "2").
        Assert.Equal(MistralTokenizerVersion.V3, tokenizer.Version);
        AssertRendered(
            Expect(
                t => PieceText(t, withControlPieces: true),
                Bos, SpInst, "a", SpEndInst, true, "b", Eos, false,
                SpTools, """[{"type": "function", "function": {"name": "f", "description": "", "parameters": {}}}]""", SpEndTools,
                SpInst, "S\n\nw?", SpEndInst,
                true, SpCalls, """[{"name": "f", "arguments": {"x": 1}, "id": "c1"}]""", Eos, false,
                SpResults, """{"content": 2, "call_id": "c1"}""", SpEndResults,
                true, "ok", Eos),
            result);
    }

    [Fact]
    public void V3_ConsecutiveUserTurnsMerge_AndAConversationOpeningWithTheAssistantGetsAnEmptyUserTurn()
    {
        MistralModelTokenizer tokenizer = SentencePiece("tokenizer.model.v3", withControlPieces: true);
        var example = new TrainingExample
        {
            Ordinal = 0,
            SourceFile = "t",
            Line = 1,
            Kind = ExampleKind.Chat,
            Messages =
            [
                new ChatMessage { Role = ChatRole.System, Content = "S" },
                new ChatMessage { Role = ChatRole.Assistant, Content = "x" },
                new ChatMessage { Role = ChatRole.User, Content = "a" },
                new ChatMessage { Role = ChatRole.User, Content = "b" },
                new ChatMessage { Role = ChatRole.Assistant, Content = "y" },
            ],
        };

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        AssertRendered(
            Expect(
                t => PieceText(t, withControlPieces: true),
                Bos, SpInst, SpEndInst, true, "x", Eos, false, SpInst, "S\n\na\n\nb", SpEndInst, true, "y", Eos),
            result);
    }

    [Fact]
    public void V7_SystemPromptsStayInPlace_ToolResultsCarryTheIdBeforeToolContent()
    {
        MistralModelTokenizer tokenizer = Tekken("v7");
        TrainingExample example = Parse("""
            {"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}}],"messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b","weight":0},{"role":"system","content":"T"},{"role":"user","content":"c"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":{"x":"é"}}}]},{"role":"tool","tool_call_id":"c1","content":"{\"t\":2}"},{"role":"assistant","content":"ok"}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        // Non-ASCII stays UTF-8 in JSON (ensure_ascii=False); v7 writes tool content as given.
        Assert.Equal(MistralTokenizerVersion.V7, tokenizer.Version);
        AssertRendered(
            Expect(
                TekkenText,
                Bos, SystemPrompt, "S", EndSystemPrompt, Inst, "a", EndInst, "b", Eos,
                SystemPrompt, "T", EndSystemPrompt,
                Tools, """[{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}]""", EndTools,
                Inst, "c", EndInst,
                true, Calls, """[{"name": "f", "arguments": {"x": "é"}, "id": "c1"}]""", Eos, false,
                Results, "c1", ToolContent, """{"t":2}""", EndResults,
                true, "ok", Eos),
            result);
    }

    [Fact]
    public void V11_ToolCallsAreNameCallIdArgs_AndAFinalCallHasNoId()
    {
        MistralModelTokenizer tokenizer = Tekken("v11");
        TrainingExample example = Parse("""
            {"messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\": 1}"}}]},{"role":"tool","tool_call_id":"c1","content":"r"},{"role":"assistant","tool_calls":[{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        // mistral-finetune drops the final turn's call ids: an id is random, so not something to learn.
        Assert.Equal(MistralTokenizerVersion.V11, tokenizer.Version);
        AssertRendered(
            Expect(
                TekkenText,
                Bos, Inst, "a", EndInst,
                true, Calls, "f", CallId, "c1", Args, """{"x": 1}""", Eos, false,
                Results, "c1", ToolContent, "r", EndResults,
                true, Calls, "g", Args, "{}", Eos),
            result);
    }

    [Fact]
    public void V13_ToolsBeforeTheFirstUserTurn_NoCallIds_ResultsInTheOrderOfTheCalls()
    {
        MistralModelTokenizer tokenizer = Tekken("v13");
        TrainingExample example = Parse("""
            {"tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{}}}],"messages":[{"role":"system","content":"S"},{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}},{"id":"c2","type":"function","function":{"name":"g","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c2","content":"s"},{"role":"tool","tool_call_id":"c1","content":"r"},{"role":"assistant","content":"ok"}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer).Format(example);

        Assert.Equal(MistralTokenizerVersion.V13, tokenizer.Version);
        AssertRendered(
            Expect(
                TekkenText,
                Bos, SystemPrompt, "S", EndSystemPrompt,
                Tools, """[{"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}]""", EndTools,
                Inst, "a", EndInst, true, "b", Eos, false, Inst, "c", EndInst,
                true, Calls, "f", Args, """{"x": 1}""", Calls, "g", Args, "{}", Eos, false,
                Results, "r", EndResults, Results, "s", EndResults,
                true, "ok", Eos),
            result);
    }

    [Fact]
    public void V2_DropsToolTurnsBeforeTheLastUserTurn_AndWritesNoCallIds()
    {
        MistralModelTokenizer tokenizer = Tekken("v3");
        TrainingExample example = Parse("""
            {"messages":[{"role":"user","content":"a"},{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","name":"f","content":"r"},{"role":"assistant","content":"b"},{"role":"user","content":"c"},{"role":"assistant","tool_calls":[{"id":"c2","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c2","name":"f","content":"s"},{"role":"assistant","content":"d"}]}
            """);

        TokenizedExample result = new MistralInstructFormatter(tokenizer, MistralTokenizerVersion.V2).Format(example);

        AssertRendered(
            Expect(
                TekkenText,
                Bos, Inst, "a", EndInst, true, "b", Eos, false, Inst, "c", EndInst,
                true, Calls, """[{"name": "f", "arguments": {}}]""", Eos, false,
                Results, """[{"name": "f", "content": "s"}]""", EndResults,
                true, "d", Eos),
            result);
    }

    [Fact]
    public void PretrainText_IsBosTextEos_AllTrained_InEveryVersion()
    {
        MistralModelTokenizer tokenizer = Tekken("v7");
        var example = new TrainingExample { Ordinal = 0, SourceFile = "f", Line = 1, Kind = ExampleKind.Text, Text = "hi" };

        AssertRendered(Expect(TekkenText, true, Bos, "hi", Eos), new MistralInstructFormatter(tokenizer).Format(example));
    }
}
