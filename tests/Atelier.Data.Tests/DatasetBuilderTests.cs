using System.Text;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tests.Support;
using Parquet.Serialization;

namespace Atelier.Data.Tests;

[Trait("Category", "Slow")]
public class DatasetBuilderTests
{
    private const int Examples = 400;

    /// <summary>
    /// A training file of distinct chats with, planted: 3 exact duplicates (one differing only by
    /// whitespace and NFC), 2 near duplicates (one word changed in ~200), 1 contaminated example,
    /// 2 malformed lines. And an eval file holding the contaminating item.
    /// </summary>
    private static (DatasetInput Train, DatasetInput Eval, string[] EvalWords) Corpus()
    {
        var random = new Random(2026);
        var lines = new List<string>();
        var bodies = new List<string>();
        for (int i = 0; i < Examples; i++)
        {
            string body = string.Join(' ', TestData.RandomWords(random, 60 + random.Next(40)));
            bodies.Add(body);
            lines.Add(TestData.Chat($"Question {i}: summarise.", body));
        }

        string[] longWords = TestData.RandomWords(random, 200);
        string longBody = string.Join(' ', longWords);
        lines.Add(TestData.Chat("Long one", longBody));
        longWords[100] = "changed";
        lines.Add(TestData.Chat("Long one", string.Join(' ', longWords)));
        longWords[150] = "again";
        lines.Add(TestData.Chat("Long one", string.Join(' ', longWords)));

        lines.Insert(50, lines[10]);
        lines.Insert(120, lines[20]);
        lines.Insert(200, TestData.Chat("Question 30: summarise.  ", "  " + bodies[30] + "\r\n"));
        lines.Insert(77, "{\"messages\": [");
        lines.Insert(300, "{\"messages\":[{\"role\":\"user\",\"content\":\"no answer\"}]}");

        string[] evalWords = TestData.RandomWords(random, 30);
        lines.Insert(250, TestData.Chat("Tell me", "Sure: " + string.Join(' ', evalWords.Take(20)) + " and that is all"));
        string eval = TestData.Chat("eval question one", "unrelated words here") + "\n" + TestData.Chat("What about this", string.Join(' ', evalWords)) + "\n";
        return (DatasetInput.FromText("train.jsonl", string.Join('\n', lines) + "\n"), DatasetInput.FromText("eval.jsonl", eval), evalWords);
    }

    private static DatasetBuildRequest Request(int threads = 2)
    {
        (DatasetInput train, DatasetInput eval, _) = Corpus();
        return new DatasetBuildRequest
        {
            Training = [train],
            Eval = [eval],
            Tokenizer = TestData.O200k,
            Options = new DatasetBuildOptions { SequenceLength = 256, WindowsPerShard = 16, BatchSize = 37, MaxDegreeOfParallelism = threads },
        };
    }

    private static SortedDictionary<string, byte[]> Files(string directory) =>
        new(Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories)
            .ToDictionary(f => Path.GetRelativePath(directory, f), File.ReadAllBytes), StringComparer.Ordinal);

    [Fact]
    public async Task Build_OfPlantedCorpus_CountsEveryStageAndWritesAManifestLast()
    {
        using var temp = new TestData.TempDirectory();
        string output = Path.Combine(temp.Path, "ds");

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(Request(), output);

        DatasetCounters c = result.Manifest.Counters;
        Assert.Equal(2, c.Issues);
        Assert.Equal(Examples + 3 + 3 + 1, c.ExamplesRead);
        Assert.Equal(3, c.ExactDuplicates);
        Assert.Equal(2, c.NearDuplicates);
        Assert.Equal(1, c.NearDuplicateClusters);
        Assert.Equal(1, c.Contaminated);
        Assert.Equal(2, c.EvalItems);
        Assert.Equal(Examples + 1, c.ExamplesKept);
        Assert.True(result.Manifest.Shards.Count > 3);
        Assert.False(Directory.Exists(output + ".partial"));
        Assert.True(File.Exists(Path.Combine(output, "manifest.json")));
        Assert.False(File.Exists(Path.Combine(output, "checkpoint.json")));
        Assert.Equal([78L, 302L], result.Report.Issues.Select(i => i.Line));

        string dropped = await File.ReadAllTextAsync(Path.Combine(output, "dropped.jsonl"));
        Assert.Contains("\"reason\":\"contaminated\",\"detail\":\"overlaps eval item eval.jsonl:2\"", dropped, StringComparison.Ordinal);
        Assert.Equal(6, dropped.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public async Task Build_ShardsAndFeatures_AreReadableAndConsistent()
    {
        using var temp = new TestData.TempDirectory();
        DatasetBuildResult result = await DatasetBuilder.BuildAsync(Request(), Path.Combine(temp.Path, "ds"));

        long windows = 0, trained = 0;
        foreach (DatasetFile shard in result.Manifest.Shards)
        {
            using var stream = File.OpenRead(Path.Combine(result.Directory, shard.Path));
            using var reader = new ArrowFileReader(stream);
            RecordBatch batch = (await reader.ReadNextRecordBatchAsync())!;
            var sizes = (ListArray)batch.Column("sizes");
            var mask = (ListArray)batch.Column("loss_mask");
            for (int row = 0; row < batch.Length; row++)
            {
                Assert.Equal(256, ((Int32Array)sizes.GetSlicedValues(row)).Values.ToArray().Sum());
                trained += ((UInt8Array)mask.GetSlicedValues(row)).Values.ToArray().Count(b => b == 1);
            }

            windows += batch.Length;
        }

        Assert.Equal(result.Manifest.Counters.Windows, windows);
        var features = new List<ExampleFeatures>();
        foreach (DatasetFile part in result.Manifest.Features)
        {
            features.AddRange((await ParquetSerializer.DeserializeAsync<ExampleFeatures>(Path.Combine(result.Directory, part.Path))).Data);
        }

        Assert.Equal(result.Manifest.Counters.ExamplesRead, features.Count);
        Assert.Equal(Enumerable.Range(0, features.Count).Select(i => (long)i), features.Select(f => f.Ordinal));
        ExampleFeatures contaminated = Assert.Single(features, f => f.Contaminated);
        Assert.Equal("eval.jsonl:2", contaminated.ContaminationMatch);
        Assert.Equal("contaminated", contaminated.DropReason);
        Assert.Equal(2, features.Count(f => f.DropReason == "near_duplicate" && f.DedupCluster == features.Single(k => k.DropReason is null && k.DedupCluster == f.DedupCluster).Ordinal));
        Assert.All(features.Where(f => f.DropReason is null), f => Assert.True(f.TokenCount > 0));

        // Every trained target of a kept example lands in a window, except each sample's first token (its BOS is never a target).
        long keptTrained = features.Sum(f => (long)f.TrainedTokenCount);
        Assert.Equal(keptTrained, trained);
    }

    [Fact]
    public async Task Build_Twice_GivesByteIdenticalFilesWhateverTheThreadCount()
    {
        using var temp = new TestData.TempDirectory();
        await DatasetBuilder.BuildAsync(Request(threads: 2), Path.Combine(temp.Path, "a"));
        await DatasetBuilder.BuildAsync(Request(threads: 1), Path.Combine(temp.Path, "b"));

        SortedDictionary<string, byte[]> a = Files(Path.Combine(temp.Path, "a"));
        SortedDictionary<string, byte[]> b = Files(Path.Combine(temp.Path, "b"));
        Assert.Equal(a.Keys, b.Keys);
        Assert.All(a, pair => Assert.True(pair.Value.AsSpan().SequenceEqual(b[pair.Key]), pair.Key + " differs"));
    }

    [Fact]
    public async Task Build_InterruptedAfterAShard_LeavesNothingVisibleAndResumesToTheSameBytes()
    {
        using var temp = new TestData.TempDirectory();
        string clean = Path.Combine(temp.Path, "clean");
        string crashed = Path.Combine(temp.Path, "crashed");
        await DatasetBuilder.BuildAsync(Request(), clean);

        var crash = new InvalidOperationException("simulated crash");
        InvalidOperationException thrown = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            DatasetBuilder.BuildAsync(Request(), crashed, null, shards => { if (shards == 3) { throw crash; } }, CancellationToken.None));
        Assert.Same(crash, thrown);
        Assert.False(Directory.Exists(crashed));
        Assert.True(File.Exists(Path.Combine(crashed + ".partial", "checkpoint.json")));

        var stages = new List<string>();
        DatasetBuildResult resumed = await DatasetBuilder.BuildAsync(Request(), crashed, new SyncProgress(p => stages.Add(p.Stage)));

        Assert.Equal(3, resumed.ResumedFromShard);
        Assert.Contains("replaying", stages);
        SortedDictionary<string, byte[]> a = Files(clean);
        SortedDictionary<string, byte[]> b = Files(crashed);
        Assert.Equal(a.Keys, b.Keys);
        Assert.All(a, pair => Assert.True(pair.Value.AsSpan().SequenceEqual(b[pair.Key]), pair.Key + " differs"));
    }

    [Fact]
    public async Task Build_CancelledMidway_LeavesNoVisibleDatasetAndReportsProgressUntilThen()
    {
        using var temp = new TestData.TempDirectory();
        string output = Path.Combine(temp.Path, "ds");
        using var cancellation = new CancellationTokenSource();
        var seen = new List<DatasetBuildProgress>();
        var progress = new SyncProgress(p =>
        {
            seen.Add(p);
            if (p.ShardsWritten >= 2)
            {
                cancellation.Cancel();
            }
        });

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => DatasetBuilder.BuildAsync(Request(), output, progress, cancellation.Token));

        Assert.False(Directory.Exists(output));
        Assert.Contains(seen, p => p.Stage == "building" && p.ExamplesRead > 0 && p.BytesRead > 0 && p.TotalBytes > p.BytesRead);
        DatasetBuildResult resumed = await DatasetBuilder.BuildAsync(Request(), output);
        Assert.True(resumed.ResumedFromShard >= 2);
    }

    [Fact]
    public async Task Build_CancelledWhileItTokenisesABatch_StopsAtTheExampleInProgress()
    {
        using var temp = new TestData.TempDirectory();
        string output = Path.Combine(temp.Path, "ds");
        using var cancellation = new CancellationTokenSource();

        // One worker, so that the batch in progress is the only one tokenising; the cancel comes
        // from inside its first example.
        var tokenizer = new CancellingTokenizer(TestData.O200k, cancellation);
        DatasetBuildRequest request = Request(threads: 1) with { Tokenizer = tokenizer };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => DatasetBuilder.BuildAsync(request, output, null, cancellation.Token));

        // The example in progress finishes its turns; none of the 36 others of its batch starts.
        Assert.True(tokenizer.CallsAfterCancel <= 4, $"{tokenizer.CallsAfterCancel} texts tokenised after the cancel");
        Assert.False(Directory.Exists(output));
    }

    /// <summary>A tokeniser that cancels a build from inside its first encoding and counts the encodings after it.</summary>
    private sealed class CancellingTokenizer(Atelier.Data.Tokenization.ITextTokenizer inner, CancellationTokenSource cancellation) : Atelier.Data.Tokenization.ITextTokenizer
    {
        private int _calls;

        public int CallsAfterCancel => Math.Max(0, Volatile.Read(ref _calls) - 1);

        public string Name => inner.Name;

        public string Identity => inner.Identity;

        public int VocabularySize => inner.VocabularySize;

        public Atelier.Data.Tokenization.ControlTokens Control => inner.Control;

        public void Encode(string text, List<int> destination)
        {
            if (Interlocked.Increment(ref _calls) == 1)
            {
                cancellation.Cancel();
            }

            inner.Encode(text, destination);
        }

        public string Decode(IEnumerable<int> ids) => inner.Decode(ids);

        public IReadOnlyList<byte[]?> TokenBytes() => inner.TokenBytes();
    }

    [Fact]
    public async Task Build_WithChangedOptionsAfterACrash_StartsCleanAndSucceeds()
    {
        using var temp = new TestData.TempDirectory();
        string output = Path.Combine(temp.Path, "ds");
        await Assert.ThrowsAsync<InvalidOperationException>(() =>
            DatasetBuilder.BuildAsync(Request(), output, null, shards => throw new InvalidOperationException(), CancellationToken.None));

        DatasetBuildRequest changed = Request() with { Options = Request().Options with { SequenceLength = 128 } };
        DatasetBuildResult result = await DatasetBuilder.BuildAsync(changed, output);

        Assert.Equal(0, result.ResumedFromShard);
        Assert.Equal(128, result.Manifest.Options.SequenceLength);
    }

    [Fact]
    public async Task Build_IntoAnExistingVersion_IsRefused()
    {
        using var temp = new TestData.TempDirectory();

        await Assert.ThrowsAsync<IOException>(() => DatasetBuilder.BuildAsync(Request(), temp.Path));
    }

    [Fact]
    public async Task Build_OfTextAndParquetCorpora_PacksPretrainDocuments()
    {
        using var temp = new TestData.TempDirectory();
        var rows = Enumerable.Range(0, 50).Select(i => new TextRow { Text = $"Parquet document number {i} has some words in it, and the words are fine." }).ToList();
        string parquet = Path.Combine(temp.Path, "corpus.parquet");
        await ParquetSerializer.SerializeAsync(rows, parquet);
        var text = new StringBuilder();
        for (int i = 0; i < 30; i++)
        {
            text.Append("Plain text document ").Append(i).Append(". Il était une fois, 第").Append(i).Append("章.\n\n");
        }

        var request = new DatasetBuildRequest
        {
            Training = [DatasetInput.FromFile(parquet), DatasetInput.FromText("corpus.txt", text.ToString())],
            Tokenizer = TestData.O200k,
            Options = new DatasetBuildOptions { SequenceLength = 128 },
        };

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(request, Path.Combine(temp.Path, "ds"));

        Assert.Equal(80, result.Manifest.Counters.ExamplesRead);
        // Every token of a kept document is trained except its first (BOS is never a target).
        Assert.Equal(result.Manifest.Counters.Tokens - result.Manifest.Counters.ExamplesKept, result.Manifest.Counters.TrainedTokens);
        Assert.True(result.Manifest.Counters.Windows > 0);
    }

    private sealed class TextRow
    {
        [System.Text.Json.Serialization.JsonPropertyName("text")]
        public string Text { get; set; } = string.Empty;
    }

    private sealed class SyncProgress(Action<DatasetBuildProgress> report) : IProgress<DatasetBuildProgress>
    {
        public void Report(DatasetBuildProgress value) => report(value);
    }
}
