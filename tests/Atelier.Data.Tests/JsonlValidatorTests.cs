using System.Text;
using Atelier.Core.Errors;
using Atelier.Data.Validation;

namespace Atelier.Data.Tests;

public sealed class JsonlValidatorTests
{
    private static JsonlValidator Validate(string content, JsonlFormat formats = JsonlFormat.FineTune, int maxLine = 1 << 20, int chunk = int.MaxValue)
    {
        var validator = new JsonlValidator(formats, maxLine, "train.jsonl");
        var bytes = Encoding.UTF8.GetBytes(content);
        for (var i = 0; i < bytes.Length; i += chunk)
        {
            validator.Append(bytes.AsSpan(i, Math.Min(chunk, bytes.Length - i)));
        }

        validator.Complete();
        return validator;
    }

    private static Problem Single(string line)
    {
        var v = Validate(line + "\n");
        Assert.False(v.IsValid(JsonlFormat.FineTune), "expected a problem");
        return Assert.Single(v.Problems(JsonlFormat.FineTune));
    }

    private const string Chat = """{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a"}]}""";

    [Fact]
    public void ValidChat_PassesAsInstruct()
    {
        var v = Validate(Chat + "\n" + Chat + "\n");
        Assert.True(v.IsValid(JsonlFormat.FineTune));
        Assert.Equal(2, v.Lines);
        Assert.Equal("instruct", v.SampleType(JsonlFormat.FineTune));
    }

    [Fact]
    public void PretrainLines_PassAsPretrain()
    {
        var v = Validate("{\"text\":\"a\"}\n{\"text\":\"b\"}");
        Assert.True(v.IsValid(JsonlFormat.FineTune));
        Assert.Equal("pretrain", v.SampleType(JsonlFormat.FineTune));
    }

    [Fact]
    public void InteractionsKey_IsAcceptedLikeMessages()
    {
        Assert.True(Validate(Chat.Replace("messages", "interactions", StringComparison.Ordinal)).IsValid(JsonlFormat.FineTune));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    public void ChunkBoundaries_DoNotChangeTheResult(int chunk)
    {
        var content = Chat + "\n{bad\n" + Chat + "\r\n" + "{\"text\":\"é世界\"}";
        var v = Validate(content, chunk: chunk);
        Assert.Equal(4, v.Lines);
        Assert.Equal([2L, null], v.Problems(JsonlFormat.FineTune).Select(p => p.Line));
    }

    [Fact]
    public void ToolCallConversation_WithMatchingResults_Passes()
    {
        const string line = """
            {"messages":[{"role":"system","content":"s"},{"role":"user","content":"weather?"},
            {"role":"assistant","tool_calls":[{"id":"abcDEF123","type":"function","function":{"name":"get_weather","arguments":"{\"c\":1}"}},{"id":"zzzzzzzz9","function":{"name":"f-2","arguments":"{}"}}]},
            {"role":"tool","tool_call_id":"abcDEF123","content":"sunny"},{"role":"tool","tool_call_id":"zzzzzzzz9","content":"ok"},
            {"role":"assistant","content":"Sunny.","weight":1}],
            "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}]}
            """;
        var v = Validate(line.ReplaceLineEndings("") + "\n");
        Assert.True(v.IsValid(JsonlFormat.FineTune), string.Join("; ", v.Problems(JsonlFormat.FineTune)));
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"assistant","content":"a"}]}""", "start with a system or user", "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":"q"}]}""", "end with an assistant", "messages[0].role")]
    [InlineData("""{"messages":[{"role":"user","content":"q"},{"role":"bot","content":"a"},{"role":"assistant","content":"a"}]}""", "unknown role 'bot'", "messages[1].role")]
    [InlineData("""{"messages":[{"role":"user","content":"q"},{"role":"assistant"}]}""", "needs 'content' or 'tool_calls'", "messages[1]")]
    [InlineData("""{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":2}]}""", "'weight' must be 0 or 1", "messages[1].weight")]
    [InlineData("""{"messages":[{"role":"user"},{"role":"assistant","content":"a"}]}""", "no 'content'", "messages[0].content")]
    [InlineData("""{"messages":[{"role":"user","content":5},{"role":"assistant","content":"a"}]}""", "string or an array", "messages[0].content")]
    [InlineData("""{"messages":[]}""", "is empty", "messages")]
    [InlineData("""{"messages":{}}""", "must be an array", "messages")]
    [InlineData("""{"text":""}""", "'text' is empty", "text")]
    [InlineData("""{"prompt":"x"}""", "neither 'messages'", null)]
    [InlineData("""[1,2]""", "must be a JSON object", null)]
    public void BadLine_IsReportedWithLineFieldAndReason(string line, string reason, string? field)
    {
        var problem = Single(line);
        Assert.Equal(1, problem.Line);
        Assert.Equal(field, problem.Field);
        Assert.Contains(reason, problem.Message, StringComparison.Ordinal);
        Assert.Equal("train.jsonl", problem.File);
    }

    [Theory]
    [InlineData("abc", "9 letters or digits")]
    [InlineData("abcdefgh!", "9 letters or digits")]
    public void ToolCallId_MustBeNineAlphanumerics(string id, string reason)
    {
        var line = $$$"""{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"{{{id}}}","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","content":"r"},{"role":"assistant","content":"a"}]}""";
        var problems = Validate(line + "\n").Problems(JsonlFormat.FineTune);
        Assert.Contains(problems, p => p.Message.Contains(reason, StringComparison.Ordinal) && p.Field == "messages[1].tool_calls[0].id");
    }

    [Fact]
    public void FunctionNameAndArguments_AreChecked()
    {
        const string line = """{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"abcdefghi","function":{"name":"has space","arguments":"{oops"}}]},{"role":"tool","tool_call_id":"abcdefghi","content":"r"},{"role":"assistant","content":"a"}]}""";
        var fields = Validate(line + "\n").Problems(JsonlFormat.FineTune).Select(p => p.Field).ToArray();
        Assert.Contains("messages[1].tool_calls[0].function.name", fields);
        Assert.Contains("messages[1].tool_calls[0].function.arguments", fields);
    }

    [Fact]
    public void AssistantWithContentAndToolCalls_IsRefused()
    {
        var problem = Single("""{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","tool_calls":[{"id":"abcdefghi","function":{"name":"f","arguments":"{}"}}]}]}""");
        Assert.Contains("not both", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingToolResults_AreReported()
    {
        const string line = """{"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"aaaaaaaa1","function":{"name":"f","arguments":"{}"}},{"id":"aaaaaaaa2","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"aaaaaaaa1","content":"r"},{"role":"assistant","content":"a"}]}""";
        var problem = Assert.Single(Validate(line + "\n").Problems(JsonlFormat.FineTune));
        Assert.Contains("aaaaaaaa2", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToolResultWithoutACall_IsReported()
    {
        var problem = Single("""{"messages":[{"role":"user","content":"q"},{"role":"tool","content":"r"},{"role":"assistant","content":"a"}]}""");
        Assert.Contains("must answer a tool call", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidUtf8_IsReportedOnItsLine()
    {
        var v = new JsonlValidator(JsonlFormat.FineTune, 1024);
        v.Append(Encoding.UTF8.GetBytes(Chat + "\n"));
        v.Append([(byte)'{', (byte)'"', (byte)'t', (byte)'e', (byte)'x', (byte)'t', (byte)'"', (byte)':', (byte)'"', 0xC3, 0x28, (byte)'"', (byte)'}', (byte)'\n']);
        v.Complete();
        var problem = Assert.Single(v.Problems(JsonlFormat.FineTune));
        Assert.Equal(2, problem.Line);
        Assert.Contains("UTF-8", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void LineOverTheLimit_IsReportedOnceAndTheNextLineIsStillChecked()
    {
        var content = "{\"text\":\"" + new string('x', 500) + "\"}\n{bad\n";
        var v = Validate(content, maxLine: 100, chunk: 37);
        Assert.Equal([1L, 2L], v.Problems(JsonlFormat.FineTune).Select(p => p.Line));
        Assert.Contains("longer than the limit of 100 bytes", v.Problems(JsonlFormat.FineTune)[0].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EmptyFile_AndBlankLines_AreReported()
    {
        Assert.Contains("no lines", Assert.Single(Validate("").Problems(JsonlFormat.FineTune)).Message, StringComparison.Ordinal);
        var blank = Validate(Chat + "\n\n" + Chat + "\n");
        Assert.Equal(2, Assert.Single(blank.Problems(JsonlFormat.FineTune)).Line);
    }

    [Fact]
    public void ManyProblems_KeepTheFirstHundredAndCountAll()
    {
        var v = Validate(string.Concat(Enumerable.Repeat("[]\n", 250)));
        Assert.Equal(JsonlValidator.MaxProblemsKept, v.Problems(JsonlFormat.FineTune).Count);
        Assert.Equal(250, v.TotalProblems(JsonlFormat.FineTune));
        var error = Assert.Throws<ValidationFailedException>(() => v.ThrowIfInvalid(JsonlFormat.FineTune));
        Assert.Equal(250, error.TotalProblems);
        Assert.Equal(422, error.StatusCode);
    }

    [Fact]
    public void BothFormats_AreJudgedInOnePass()
    {
        var v = Validate("{\"custom_id\":\"1\",\"body\":{}}\n", JsonlFormat.FineTune | JsonlFormat.Batch);
        Assert.True(v.IsValid(JsonlFormat.Batch));
        Assert.False(v.IsValid(JsonlFormat.FineTune));
        Assert.Equal("batch_request", v.SampleType(JsonlFormat.Batch));
    }

    [Theory]
    [InlineData(int.MaxValue)]
    [InlineData(5)]
    public void BothFormatsInOnePass_FindWhatEachFormatAloneFinds(int chunk)
    {
        // The same problems, lines and sample type as two validators with one format each, on a
        // file mixing valid and broken lines of both kinds.
        var content = string.Join("\n",
            Chat,
            "{\"custom_id\":\"a\",\"body\":{\"x\":1}}",
            Chat.Replace("{\"messages\"", "{\"custom_id\":\"c\",\"messages\"", StringComparison.Ordinal),
            "{\"custom_id\":\"\",\"body\":[]}",
            "{\"messages\":[{\"role\":\"assistant\",\"content\":\"a\"}]}",
            "{\"text\":\"t\",\"body\":{}}",
            "{\"messages\":[],\"tools\":[]}",
            "[1]",
            "{bad",
            "",
            Chat + "\r") + "\n";
        var both = Validate(content, JsonlFormat.FineTune | JsonlFormat.Batch, chunk: chunk);
        foreach (var format in new[] { JsonlFormat.FineTune, JsonlFormat.Batch })
        {
            var alone = Validate(content, format, chunk: chunk);
            Assert.Equal(alone.Lines, both.Lines);
            Assert.Equal(alone.TotalProblems(format), both.TotalProblems(format));
            Assert.Equal(alone.Problems(format), both.Problems(format));
            Assert.Equal(alone.SampleType(format), both.SampleType(format));
        }

        Assert.True(both.TotalProblems(JsonlFormat.Batch) > 3 && both.TotalProblems(JsonlFormat.FineTune) > 3);
    }

    [Fact]
    public void ByteOrderMark_IsTolerated()
    {
        Assert.True(Validate("\uFEFF" + Chat + "\n").IsValid(JsonlFormat.FineTune));
    }
}
