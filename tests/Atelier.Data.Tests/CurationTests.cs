using System.Text.Json;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Atelier.Data.Building;
using Atelier.Data.Decontamination;
using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;

namespace Atelier.Data.Tests;

/// <summary>
/// Curation on data shaped like real fine-tuning sets: every training and validation example
/// shares one long system prompt and one tool schema; only user and assistant turns differ.
/// </summary>
public class CurationTests
{
    private const string SystemPrompt =
        "You are the support assistant of Atelier Bank. Answer politely and precisely, in the language of the customer, " +
        "never give investment advice, never reveal internal procedures, and always suggest contacting an adviser for " +
        "questions about loans, mortgages or insurance products that need a personal assessment of the situation.";

    private const string Tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"lookup_account\",\"description\":\"Look up the balance and the last " +
        "transactions of the customer's account by its number, for the current customer only\",\"parameters\":{\"type\":\"object\"," +
        "\"properties\":{\"account\":{\"type\":\"string\",\"description\":\"the account number of the customer\"}},\"required\":[\"account\"]}}}]";

    private static string Example(string user, string assistant) =>
        "{\"messages\":[{\"role\":\"system\",\"content\":" + TestData.Json(SystemPrompt) + "},{\"role\":\"user\",\"content\":" + TestData.Json(user) +
        "},{\"role\":\"assistant\",\"content\":" + TestData.Json(assistant) + "}],\"tools\":" + Tools + "}";

    private static (List<string> Train, List<string> Valid, string[] LeakedAnswer) SharedPromptCorpus(int train, int valid)
    {
        var random = new Random(17);
        var lines = new List<string>();
        for (int i = 0; i < train; i++)
        {
            lines.Add(Example($"Question {i}: " + string.Join(' ', TestData.RandomWords(random, 8 + random.Next(8))), string.Join(' ', TestData.RandomWords(random, 10 + random.Next(20)))));
        }

        var validation = new List<string>();
        for (int i = 0; i < valid; i++)
        {
            validation.Add(Example($"Eval {i}: " + string.Join(' ', TestData.RandomWords(random, 8 + random.Next(8))), string.Join(' ', TestData.RandomWords(random, 10 + random.Next(20)))));
        }

        // The one real leak: a training example that holds a validation example's answer.
        string[] answer = TestData.RandomWords(random, 25);
        validation.Add(Example("What are the opening hours of the branch in Lyon?", string.Join(' ', answer)));
        lines.Add(Example("When is the Lyon branch open?", "Here you go: " + string.Join(' ', answer.Take(16)) + "."));
        return (lines, validation, answer);
    }

    private static DatasetBuildRequest Request(IEnumerable<string> train, IEnumerable<string> valid, DatasetBuildOptions? options = null) => new()
    {
        Training = [DatasetInput.FromText("train.jsonl", string.Join('\n', train) + "\n")],
        Eval = [DatasetInput.FromText("valid.jsonl", string.Join('\n', valid) + "\n")],
        Tokenizer = TestData.O200k,
        Options = options ?? new DatasetBuildOptions { SequenceLength = 512, MaxDegreeOfParallelism = 2 },
    };

    [Fact]
    public async Task Build_TrainingAndValidationSharingSystemPromptAndTools_DropsOnlyThePlantedLeak()
    {
        using var temp = new TestData.TempDirectory();
        (List<string> train, List<string> valid, _) = SharedPromptCorpus(80, 8);

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(Request(train, valid), Path.Combine(temp.Path, "ds"));

        DatasetCounters c = result.Manifest.Counters;
        Assert.Equal(81, c.ExamplesRead);
        Assert.Equal(9, c.EvalItems);
        Assert.Equal(1, c.Contaminated);
        Assert.Equal(0, c.NearDuplicates);
        Assert.Equal(80, c.ExamplesKept);
        Assert.Equal(1, c.ExamplesDropped);
        string dropped = Assert.Single(File.ReadAllLines(Path.Combine(result.Directory, "dropped.jsonl")));
        Assert.Contains("\"reason\":\"contaminated\",\"detail\":\"overlaps eval item valid.jsonl:9\"", dropped, StringComparison.Ordinal);
        Assert.Contains("Lyon", dropped, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Build_WhenDecontaminationAlsoComparesSystemPrompts_DropsEveryExample()
    {
        // The configurable roles are honoured: comparing system prompts (never the default) flags
        // everything, which is the failure the default avoids.
        using var temp = new TestData.TempDirectory();
        (List<string> train, List<string> valid, _) = SharedPromptCorpus(20, 4);
        var options = new DatasetBuildOptions
        {
            SequenceLength = 512,
            Decontamination = new DecontaminationOptions { Roles = [ChatRole.System, ChatRole.User, ChatRole.Assistant] },
        };
        string output = Path.Combine(temp.Path, "ds");

        var error = await Assert.ThrowsAsync<EmptyDatasetException>(() => DatasetBuilder.BuildAsync(Request(train, valid, options), output));

        Assert.Equal(21, error.Counters.Contaminated);
        Assert.Equal("The build kept no example: kept 0 of 21 examples; dropped 21 contaminated.", error.Message);
        Assert.False(Directory.Exists(output));
        Assert.False(Directory.Exists(output + ".partial"));
    }

    [Fact]
    public async Task Build_ThatKeepsNothing_FailsWithTheCountsAndLeavesNoVersion()
    {
        using var temp = new TestData.TempDirectory();
        string same = TestData.Chat("hello there", "general kenobi");
        string[] lines = [same, same, same, "{\"messages\": [", "{\"messages\":[{\"role\":\"user\",\"content\":\"no answer\"}]}"];
        var request = new DatasetBuildRequest
        {
            Training = [DatasetInput.FromText("train.jsonl", string.Join('\n', lines) + "\n")],
            Eval = [DatasetInput.FromText("valid.jsonl", TestData.Chat("hello there", "general kenobi") + "\n")],
            Tokenizer = TestData.O200k,
            Options = new DatasetBuildOptions { SequenceLength = 64, Decontamination = new DecontaminationOptions { MinItemWords = 2 } },
        };
        string output = Path.Combine(temp.Path, "ds");

        var error = await Assert.ThrowsAsync<EmptyDatasetException>(() => DatasetBuilder.BuildAsync(request, output));

        Assert.Equal("The build kept no example: kept 0 of 3 examples; dropped 1 contaminated, 2 exact_duplicate; 2 invalid lines.", error.Message);
        Assert.Equal(422, error.StatusCode);
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Path));
    }

    [Fact]
    public async Task Build_Manifest_CountsTheLinesOfItsReportFiles()
    {
        using var temp = new TestData.TempDirectory();
        (List<string> train, List<string> valid, _) = SharedPromptCorpus(30, 3);
        train.Add(train[0]);
        train.Add(train[1]);
        train.Add("not json");

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(Request(train, valid), Path.Combine(temp.Path, "ds"));

        foreach (string name in new[] { "dropped.jsonl", "issues.jsonl" })
        {
            DatasetFile file = Assert.Single(result.Manifest.Reports, r => r.Path == name);
            Assert.Equal(File.ReadAllLines(Path.Combine(result.Directory, name)).Length, file.Rows);
        }

        Assert.Equal(3, Assert.Single(result.Manifest.Reports, r => r.Path == "dropped.jsonl").Rows);
        using var manifest = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(result.Directory, "manifest.json")));
        Assert.Equal(3, manifest.RootElement.GetProperty("counters").GetProperty("examples_dropped").GetInt64());
    }

    [Fact]
    public async Task Build_OfPretrainingText_CountsAsTrainedOnlyTheTargetsTheWindowsTrainOn()
    {
        // Every token of a text is trained but the first: BOS is never a target once packed.
        using var temp = new TestData.TempDirectory();
        var random = new Random(3);
        var texts = Enumerable.Range(0, 40).Select(_ => string.Join(' ', TestData.RandomWords(random, 30 + random.Next(30))));
        var request = new DatasetBuildRequest
        {
            Training = [DatasetInput.FromText("corpus.txt", string.Join("\n\n", texts) + "\n", DataFormat.Text)],
            Tokenizer = TestData.O200k,
            Options = new DatasetBuildOptions { SequenceLength = 64 },
        };

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(request, Path.Combine(temp.Path, "ds"));

        long inWindows = 0;
        foreach (DatasetFile shard in result.Manifest.Shards)
        {
            using var stream = File.OpenRead(Path.Combine(result.Directory, shard.Path));
            using var reader = new ArrowFileReader(stream);
            while (await reader.ReadNextRecordBatchAsync() is { } batch)
            {
                var mask = (ListArray)batch.Column("loss_mask");
                for (int row = 0; row < batch.Length; row++)
                {
                    inWindows += ((UInt8Array)mask.GetSlicedValues(row)).Values.ToArray().Count(b => b == 1);
                }
            }
        }

        DatasetCounters c = result.Manifest.Counters;
        Assert.Equal(40, c.ExamplesKept);
        Assert.Equal(c.Tokens - c.ExamplesKept, c.TrainedTokens);
        Assert.Equal(inWindows, c.TrainedTokens);
    }

    [Fact]
    public void Decontamination_IgnoresSystemPromptsAndToolSchemas_ButFindsAnAnswerInTheUserTurn()
    {
        var decontaminator = new Decontaminator(new DecontaminationOptions());
        var random = new Random(5);
        string[] answer = TestData.RandomWords(random, 20);
        decontaminator.AddEvalItem(Chat("eval.jsonl", 1, SystemPrompt, "What is the answer?", string.Join(' ', answer)));

        Assert.Null(Overlap(decontaminator, Chat("train.jsonl", 1, SystemPrompt, "Something else entirely", "A different reply with its own words")));
        Assert.NotNull(Overlap(decontaminator, Chat("train.jsonl", 2, "Be brief.", "Repeat after me: " + string.Join(' ', answer.Take(13)), "Done.")));
    }

    [Fact]
    public void Decontamination_EvalItemsShorterThanTheMinimum_AreCountedNotIndexed()
    {
        var decontaminator = new Decontaminator(new DecontaminationOptions());
        decontaminator.AddEvalItem(Chat("eval.jsonl", 1, SystemPrompt, "Thanks!", "You are welcome."));
        decontaminator.AddEvalItem(Chat("eval.jsonl", 2, SystemPrompt, "Is the Lyon branch open on Sunday?", "No."));

        Assert.Equal(1, decontaminator.ShortItemCount);
        Assert.Equal(1, decontaminator.ItemCount);
        Assert.Null(Overlap(decontaminator, Chat("train.jsonl", 1, SystemPrompt, "Thanks!", "You are welcome. Anything else?")));
        Assert.NotNull(Overlap(decontaminator, Chat("train.jsonl", 2, SystemPrompt, "Quick one: is the Lyon branch open on Sunday?", "No. Closed.")));
    }

    [Fact]
    public void Decontamination_WithoutRoles_IsRefused() =>
        Assert.Throws<ArgumentException>(() => new Decontaminator(new DecontaminationOptions { Roles = [] }));

    private static EvalItemReference? Overlap(Decontaminator decontaminator, TrainingExample example)
    {
        var words = new List<ulong>();
        decontaminator.HashWords(example, words);
        return decontaminator.FindOverlap(words.ToArray(), []);
    }

    private static TrainingExample Chat(string file, long line, string system, string user, string assistant) => new()
    {
        Ordinal = line - 1,
        SourceFile = file,
        Line = line,
        Kind = ExampleKind.Chat,
        Messages =
        [
            new ChatMessage { Role = ChatRole.System, Content = system },
            new ChatMessage { Role = ChatRole.User, Content = user },
            new ChatMessage { Role = ChatRole.Assistant, Content = assistant },
        ],
        ToolsJson = Tools,
    };
}
