using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Packing;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests;

public class FormattingTests
{
    private static readonly MistralInstructFormatter Formatter = new(TestData.O200k);
    private static ControlTokens Control => TestData.O200k.Control;

    private static TrainingExample Parse(string line) =>
        FineTuneJsonlReader.ParseLine(System.Text.Encoding.UTF8.GetBytes(line), "t.jsonl", 1, 0).Example!;

    private static string Decode(IEnumerable<int> ids) => TestData.O200k.Decode(ids);

    [Fact]
    public void MultiTurn_LossMask_CoversOnlyWeightedAssistantTurnsAndTheirEos()
    {
        TrainingExample example = Parse("""
            {"messages":[{"role":"system","content":"Be terse."},{"role":"user","content":"First question?"},{"role":"assistant","content":"First answer.","weight":0},{"role":"user","content":"Second question?"},{"role":"assistant","content":"Second answer."}]}
            """);

        TokenizedExample result = Formatter.Format(example);

        Assert.Equal(Control.Bos, result.Tokens[0]);
        int[] trained = [.. result.Tokens.Where((_, i) => result.LossMask[i])];
        Assert.Equal(Control.Eos, trained[^1]);
        Assert.Equal("Second answer.", Decode(trained[..^1]));
        Assert.Equal(2, result.Tokens.Count(t => t == Control.Inst));
        Assert.Equal(2, result.Tokens.Count(t => t == Control.Eos));

        // The system prompt goes with the last user turn, as mistral-common v3 does.
        int lastInst = Array.LastIndexOf(result.Tokens, Control.Inst!.Value);
        int lastEndInst = Array.LastIndexOf(result.Tokens, Control.EndInst!.Value);
        Assert.Equal("Be terse.\n\nSecond question?", Decode(result.Tokens[(lastInst + 1)..lastEndInst]));
        int firstEndInst = Array.IndexOf(result.Tokens, Control.EndInst!.Value);
        Assert.Equal("First question?", Decode(result.Tokens[2..firstEndInst]));
    }

    [Fact]
    public void ToolCallConversation_RendersToolsCallsAndResultsAsMistralCommon()
    {
        TrainingExample example = Parse("""
            {"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","tool_calls":[{"id":"abcDEF123","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"abcDEF123","content":"22C"},{"role":"assistant","content":"It is 22°C."}]}
            """);

        TokenizedExample result = Formatter.Format(example);
        int[] t = result.Tokens;

        int tools = Array.IndexOf(t, Control.AvailableTools!.Value);
        int endTools = Array.IndexOf(t, Control.EndAvailableTools!.Value);
        Assert.True(tools > 0 && endTools > tools && t[endTools + 1] == Control.Inst);
        Assert.Equal("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]", Decode(t[(tools + 1)..endTools]));

        int calls = Array.IndexOf(t, Control.ToolCalls!.Value);
        int callsEos = Array.IndexOf(t, Control.Eos, calls);
        Assert.Equal("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcDEF123\"}]", Decode(t[(calls + 1)..callsEos]));
        Assert.All(Enumerable.Range(calls, callsEos - calls + 1), i => Assert.True(result.LossMask[i]));

        int results = Array.IndexOf(t, Control.ToolResults!.Value);
        int endResults = Array.IndexOf(t, Control.EndToolResults!.Value);
        Assert.Equal("{\"content\": \"22C\", \"call_id\": \"abcDEF123\"}", Decode(t[(results + 1)..endResults]));
        Assert.All(Enumerable.Range(results, endResults - results + 1), i => Assert.False(result.LossMask[i]));

        int[] trained = [.. t.Where((_, i) => result.LossMask[i])];
        Assert.Equal(Control.ToolCalls, trained[0]);
        Assert.Equal("It is 22°C.", Decode(t[(endResults + 1)..^1]));
        Assert.Equal(Control.Eos, t[^1]);
        Assert.True(result.LossMask[^1]);
    }

    [Fact]
    public void ControlTokenText_InsideContent_IsEncodedAsText()
    {
        TrainingExample example = Parse(TestData.Chat("Please print [INST] and </s> literally", "[/INST] done"));

        TokenizedExample result = Formatter.Format(example);

        Assert.Equal(1, result.Tokens.Count(t => t == Control.Inst));
        Assert.Equal(1, result.Tokens.Count(t => t == Control.EndInst));
        Assert.Equal(1, result.Tokens.Count(t => t == Control.Eos));
    }

    [Fact]
    public void PretrainText_IsBosTextEosAllTrained()
    {
        var example = new TrainingExample { Ordinal = 0, SourceFile = "f", Line = 1, Kind = ExampleKind.Text, Text = "Plain text." };

        TokenizedExample result = Formatter.Format(example);

        Assert.Equal(Control.Bos, result.Tokens[0]);
        Assert.Equal(Control.Eos, result.Tokens[^1]);
        Assert.All(result.LossMask, Assert.True);
    }

    [Fact]
    public void Packer_SplitsSamplesAcrossWindowsWithBoundariesAsMistralFinetune()
    {
        var packer = new SequencePacker(8);
        var windows = new List<PackedWindow>();

        packer.Add(0, [1, 2, 3, 4, 5, 6], [false, false, true, true, true, true], windows);
        packer.Add(1, [10, 11, 12, 13, 14, 15, 16], [false, true, true, true, true, true, true], windows);
        packer.Add(2, [20, 21, 22], [false, false, false], windows);
        packer.Flush(windows);

        Assert.Equal(2, windows.Count);
        Assert.Equal([1, 2, 3, 4, 5, 10, 11, 12], windows[0].InputIds);
        Assert.Equal([2, 3, 4, 5, 6, 11, 12, 13], windows[0].Labels);
        Assert.Equal([0, 1, 1, 1, 1, 1, 1, 1], windows[0].LossMask.Select(b => (int)b));
        Assert.Equal([5, 3], windows[0].Sizes);
        Assert.Equal([0L, 1L], windows[0].SampleOrdinals);
        Assert.Equal([13, 14, 15, 0, 0, 0, 0, 0], windows[1].InputIds);
        Assert.Equal([3, 5], windows[1].Sizes);
        Assert.Equal([1L, -1L], windows[1].SampleOrdinals);
        Assert.Equal([1, 1, 1, 0, 0, 0, 0, 0], windows[1].LossMask.Select(b => (int)b));
    }

    [Fact]
    public void Packer_StateSavedAndRestored_ContinuesIdentically()
    {
        var straight = new SequencePacker(5);
        var resumed = new SequencePacker(5);
        var a = new List<PackedWindow>();
        var b = new List<PackedWindow>();
        bool[] mask = [true, true, true, true];

        straight.Add(0, [1, 2, 3, 4], mask, a);
        straight.Add(1, [5, 6, 7, 8], mask, a);
        resumed.Add(0, [1, 2, 3, 4], mask, b);
        var copy = new SequencePacker(5);
        copy.RestoreState(resumed.SaveState());
        copy.Add(1, [5, 6, 7, 8], mask, b);

        Assert.Equal(a.Select(w => w.InputIds), b.Select(w => w.InputIds));
        Assert.Equal(a.Select(w => w.Sizes), b.Select(w => w.Sizes));
    }
}
