using System.Text;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

public class ShardSourcesTests
{
    [Fact]
    [Trait("Category", "Slow")]
    public async Task FromDatasetDirectory_OfABuiltDataset_LoadsEveryWindowOncePerEpoch()
    {
        using var temp = new LoaderTestShards();
        string output = Path.Combine(temp.Directory, "ds");
        var lines = new StringBuilder();
        for (int i = 0; i < 120; i++)
        {
            string words = string.Join(' ', Enumerable.Range(0, 20 + (i % 17)).Select(w => $"w{(i * 31) + w}"));
            lines.Append("{\"messages\":[{\"role\":\"user\",\"content\":\"Question ").Append(i)
                .Append("\"},{\"role\":\"assistant\",\"content\":\"").Append(words).Append("\"}]}\n");
        }

        DatasetBuildResult result = await DatasetBuilder.BuildAsync(
            new DatasetBuildRequest
            {
                Training = [DatasetInput.FromText("train.jsonl", lines.ToString())],
                Tokenizer = TiktokenTextTokenizer.CreateO200kBase(),
                Options = new DatasetBuildOptions { SequenceLength = 64, WindowsPerShard = 10 },
            },
            output);
        Assert.True(result.Manifest.Shards.Count >= 3);

        IReadOnlyList<ShardSource> sources = ShardSources.FromDatasetDirectory(output);

        Assert.Equal(result.Manifest.Shards.Select(s => (s.Path, s.Rows)), sources.Select(s => (s.Name, s.Rows)));
        Assert.All(sources, s => Assert.NotNull(s.ContentHash));
        var expected = new List<string>();
        foreach (ShardSource source in sources)
        {
            await using Stream stream = await source.OpenAsync(CancellationToken.None);
            await foreach (ShardWindow window in ArrowShardReader.ReadAsync(stream, source.Name))
            {
                expected.Add(Key(window));
            }
        }

        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 17 });
        var seen = new List<string>();
        for (long i = 0; i < loader.WindowsPerEpoch; i++)
        {
            LoaderBatch batch = await loader.NextAsync();
            seen.Add(Key(batch.Windows[0]));
        }

        Assert.Equal(expected.Order(StringComparer.Ordinal), seen.Order(StringComparer.Ordinal));
        Assert.Equal(1, loader.Position.Epoch);
    }

    [Fact]
    public void FromDatasetDirectory_WithoutManifest_SaysItIsNotADatasetVersion()
    {
        using var temp = new LoaderTestShards();

        var error = Assert.Throws<InvalidDataException>(() => ShardSources.FromDatasetDirectory(temp.Directory));

        Assert.Contains("manifest.json", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fingerprint_DependsOnNamesRowsHashesAndOrder()
    {
        static ShardSource S(string name, long rows, string? hash = null) => new(name, rows, _ => throw new InvalidOperationException()) { ContentHash = hash };

        string a = ShardSources.Fingerprint([S("a", 1), S("b", 2)]);

        Assert.Equal(a, ShardSources.Fingerprint([S("a", 1), S("b", 2)]));
        Assert.StartsWith("sha256:", a, StringComparison.Ordinal);
        Assert.NotEqual(a, ShardSources.Fingerprint([S("b", 2), S("a", 1)]));
        Assert.NotEqual(a, ShardSources.Fingerprint([S("a", 1), S("b", 3)]));
        Assert.NotEqual(a, ShardSources.Fingerprint([S("a", 1), S("b", 2, "ff")]));
        Assert.NotEqual(a, ShardSources.Fingerprint([S("a", 1), S("c", 2)]));
    }

    private static string Key(ShardWindow window) =>
        string.Join(',', window.InputIds) + "|" + string.Join(',', window.Labels) + "|" + Convert.ToHexString(window.LossMask) + "|" + string.Join(',', window.Sizes);
}
