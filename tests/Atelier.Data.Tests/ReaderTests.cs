using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;
using Parquet.Serialization;

namespace Atelier.Data.Tests;

public class ReaderTests
{
    private static List<ReadResult> ReadJsonl(string content) =>
        [.. FineTuneJsonlReader.Read(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)), "train.jsonl")];

    [Fact]
    public void Jsonl_WithMalformedLines_ReportsEachByLineAndKeepsTheValidOnes()
    {
        string content = string.Join('\n',
            TestData.Chat("hi", "hello"),
            "{not json",
            "{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}",
            "",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\",\"weight\":2}]}",
            "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]}",
            "{\"foo\":1}",
            "{\"text\":\"a pretraining document\"}");

        List<ReadResult> results = ReadJsonl(content);

        Assert.Equal([1L, 8L], results.Where(r => r.Example is not null).Select(r => r.Example!.Line));
        Assert.Equal([0L, 1L], results.Where(r => r.Example is not null).Select(r => r.Example!.Ordinal));
        DataIssue[] issues = [.. results.Where(r => r.Issue is not null).Select(r => r.Issue!)];
        Assert.Equal([2L, 3L, 5L, 6L, 7L], issues.Select(i => i.Line));
        Assert.All(issues, i => Assert.Equal("train.jsonl", i.File));
        Assert.Equal("messages[0].role", issues[1].Field);
        Assert.Equal("messages[1].weight", issues[2].Field);
        Assert.Contains("ends with an assistant", issues[3].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Jsonl_WithToolsAndToolCalls_ParsesTheConversation()
    {
        const string line = """
            {"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Weather in Paris?"},{"role":"assistant","tool_calls":[{"id":"abcDEF123","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"}}]},{"role":"tool","tool_call_id":"abcDEF123","name":"get_weather","content":"22C"},{"role":"assistant","content":"22°C in Paris.","weight":1}]}
            """;

        TrainingExample example = Assert.Single(ReadJsonl(line)).Example!;

        Assert.Equal(ExampleKind.Chat, example.Kind);
        Assert.Equal(5, example.Messages!.Count);
        Assert.Equal("[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\"}}}]", example.ToolsJson);
        ToolCall call = Assert.Single(example.Messages[2].ToolCalls!);
        Assert.Equal(("abcDEF123", "get_weather"), (call.Id, call.Name));
        Assert.Equal("abcDEF123", example.Messages[3].ToolCallId);
    }

    [Fact]
    public void Jsonl_WithToolCallWithoutResult_IsReported()
    {
        const string line = """
            {"messages":[{"role":"user","content":"q"},{"role":"assistant","tool_calls":[{"id":"abcDEF123","function":{"name":"f","arguments":"{}"}}]},{"role":"assistant","content":"a"}]}
            """;

        DataIssue issue = Assert.Single(ReadJsonl(line)).Issue!;

        Assert.Contains("no tool result", issue.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Jsonl_WithInvalidUtf8_ReportsTheLine()
    {
        byte[] bytes = [.. System.Text.Encoding.UTF8.GetBytes("{\"text\":\"ok\"}\n{\"text\":\""), 0xC3, 0x28, .. System.Text.Encoding.UTF8.GetBytes("\"}\n")];

        List<ReadResult> results = [.. FineTuneJsonlReader.Read(new MemoryStream(bytes), "f.jsonl")];

        Assert.NotNull(results[0].Example);
        Assert.Equal(2, results[1].Issue!.Line);
    }

    [Fact]
    public void Jsonl_WithLineOverTheLimit_ReportsItAndReadsOn()
    {
        string content = "{\"text\":\"" + new string('x', 5000) + "\"}\n{\"text\":\"short\"}\n";

        List<ReadResult> results = [.. FineTuneJsonlReader.Read(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)), "f.jsonl", maxLineBytes: 1000)];

        Assert.Equal(1, results[0].Issue!.Line);
        Assert.Equal("short", results[1].Example!.Text);
        Assert.Equal(2, results[1].Example!.Line);
    }

    [Fact]
    public void Text_SplitOnBlankLines_GivesDocumentsWithTheirFirstLine()
    {
        const string content = "first doc\nstill first\n\n\nsecond doc\n\nthird\n";

        List<ReadResult> results = [.. TextCorpusReader.Read(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)), "c.txt", TextDocumentSplit.BlankLine)];

        Assert.Equal(["first doc\nstill first", "second doc", "third"], results.Select(r => r.Example!.Text));
        Assert.Equal([1L, 5L, 7L], results.Select(r => r.Example!.Line));
    }

    [Fact]
    public async Task Parquet_TextColumn_IsReadRowByRow()
    {
        var rows = Enumerable.Range(0, 10).Select(i => new Row { Id = i, Text = i == 3 ? null : "document " + i }).ToList();
        using var stream = new MemoryStream();
        await ParquetSerializer.SerializeAsync(rows, stream);
        stream.Position = 0;

        var results = new List<ReadResult>();
        await foreach (ReadResult r in ParquetCorpusReader.ReadAsync(stream, "c.parquet", "text"))
        {
            results.Add(r);
        }

        Assert.True(results.Count(r => r.Example is not null) == 9, string.Join(";", results.Where(r => r.Issue is not null).Select(r => r.Issue!.ToString())));
        Assert.Equal(4, results.Single(r => r.Issue is not null).Issue!.Line);
        Assert.Equal("document 9", results[^1].Example!.Text);
        Assert.Equal(10, results[^1].Example!.Line);
    }

    private sealed class Row
    {
        [System.Text.Json.Serialization.JsonPropertyName("id")]
        public int Id { get; set; }

        [System.Text.Json.Serialization.JsonPropertyName("text")]
        public string? Text { get; set; }
    }
}
