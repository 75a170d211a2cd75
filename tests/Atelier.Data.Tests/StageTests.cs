using System.Runtime.InteropServices;
using Atelier.Data.Decontamination;
using Atelier.Data.Dedup;
using Atelier.Data.Model;
using Atelier.Data.Quality;
using Atelier.Data.Tests.Support;

namespace Atelier.Data.Tests;

public class StageTests
{
    private static TrainingExample Text(string text, long ordinal = 0, string file = "f.txt", long line = 1) =>
        new() { Ordinal = ordinal, SourceFile = file, Line = line, Kind = ExampleKind.Text, Text = text };

    private static ulong[] Words(string text)
    {
        var words = new List<ulong>();
        WordHasher.HashWords(text, words);
        return [.. words];
    }

    private static HashSet<ulong> Shingles(string text, int n)
    {
        var grams = new List<ulong>();
        WordHasher.HashNGrams(Words(text), n, grams);
        return [.. grams];
    }

    private static double TrueJaccard(string a, string b)
    {
        HashSet<ulong> x = Shingles(a, 5), y = Shingles(b, 5);
        return (double)x.Intersect(y).Count() / x.Union(y).Count();
    }

    /// <summary>
    /// Two documents of <paramref name="length"/> distinct words sharing their first
    /// <paramref name="shared"/> words: shingle Jaccard is (shared-4) / (2(length-4) - (shared-4)).
    /// </summary>
    private static (string A, string B) Pair(Random random, int length, int shared)
    {
        string[] a = TestData.RandomWords(random, length);
        string[] b = [.. a.Take(shared), .. TestData.RandomWords(random, length - shared)];
        return (string.Join(' ', a), string.Join(' ', b));
    }

    [Fact]
    public void ExactDedup_AfterNormalisation_FindsTheFirstOccurrence()
    {
        var normalizer = new TextNormalizer(new NormalizationOptions());
        var dedup = new ExactDeduplicator();
        TrainingExample first = normalizer.Normalize(Text("Caf\u00e9 au lait", 0));
        TrainingExample second = normalizer.Normalize(Text("  Cafe\u0301 au lait \r\n", 7));
        TrainingExample other = normalizer.Normalize(Text("Cafe au lait", 8));

        Assert.True(dedup.TryAdd(ExactDeduplicator.ContentHash(first), 0, out _));
        Assert.False(dedup.TryAdd(ExactDeduplicator.ContentHash(second), 7, out long duplicateOf));
        Assert.Equal(0, duplicateOf);
        Assert.True(dedup.TryAdd(ExactDeduplicator.ContentHash(other), 8, out _));
    }

    [Fact]
    public void ExactDedup_ChatsDifferingOnlyByRoleOrWeight_AreDistinct()
    {
        TrainingExample Chat(ChatRole role, int? weight) => new()
        {
            Ordinal = 0,
            SourceFile = "f",
            Line = 1,
            Kind = ExampleKind.Chat,
            Messages = [new ChatMessage { Role = role, Content = "q" }, new ChatMessage { Role = ChatRole.Assistant, Content = "a", Weight = weight }],
        };

        Assert.NotEqual(ExactDeduplicator.ContentHash(Chat(ChatRole.User, null)), ExactDeduplicator.ContentHash(Chat(ChatRole.System, null)));
        Assert.NotEqual(ExactDeduplicator.ContentHash(Chat(ChatRole.User, 1)), ExactDeduplicator.ContentHash(Chat(ChatRole.User, 0)));
        Assert.Equal(ExactDeduplicator.ContentHash(Chat(ChatRole.User, 1)), ExactDeduplicator.ContentHash(Chat(ChatRole.User, null)));
    }

    [Theory]
    [InlineData(200, 190, 0.90)]
    [InlineData(200, 170, 0.73)]
    public void MinHash_PlantedNearDuplicates_AreClustered(int length, int shared, double expectedJaccard)
    {
        var random = new Random(42);
        var hasher = new MinHasher(new MinHashOptions());
        int found = 0;
        const int Pairs = 20;
        for (int p = 0; p < Pairs; p++)
        {
            (string a, string b) = Pair(random, length, shared);
            Assert.Equal(expectedJaccard, TrueJaccard(a, b), 2);
            var index = new MinHashLshIndex();
            Assert.False(index.TryFindCluster(BandKeys(hasher, a), 10, out _));
            if (index.TryFindCluster(BandKeys(hasher, b), 11, out long cluster))
            {
                Assert.Equal(10, cluster);
                found++;
            }
        }

        // 1-(1-s^8)^14: 0.9997 at s=0.90, 0.69 at s=0.73; allow sampling noise on 20 pairs.
        double expected = new MinHashOptions().CandidateProbability(expectedJaccard);
        Assert.InRange(found / (double)Pairs, expected - 0.2, 1.0);
    }

    [Fact]
    public void MinHash_DissimilarDocuments_AreNotClustered()
    {
        var random = new Random(7);
        var hasher = new MinHasher(new MinHashOptions());
        int found = 0;
        for (int p = 0; p < 50; p++)
        {
            (string a, string b) = Pair(random, 200, 100);
            Assert.InRange(TrueJaccard(a, b), 0.30, 0.35);
            var index = new MinHashLshIndex();
            index.TryFindCluster(BandKeys(hasher, a), 0, out _);
            found += index.TryFindCluster(BandKeys(hasher, b), 1, out _) ? 1 : 0;
        }

        // Probability at s=0.33 is 0.002 per pair.
        Assert.True(found <= 1, $"{found} false positives");
    }

    [Fact]
    public void MinHash_EstimatedJaccard_IsCloseToTheTrueOne()
    {
        var random = new Random(1);
        var hasher = new MinHasher(new MinHashOptions());
        (string a, string b) = Pair(random, 400, 300);
        Span<uint> left = stackalloc uint[hasher.SignatureLength];
        Span<uint> right = stackalloc uint[hasher.SignatureLength];
        hasher.TryCompute([.. Shingles(a, 5)], left);
        hasher.TryCompute([.. Shingles(b, 5)], right);

        Assert.InRange(MinHasher.EstimateJaccard(left, right), TrueJaccard(a, b) - 0.12, TrueJaccard(a, b) + 0.12);
    }

    [Fact]
    public void MinHash_ProbabilityCurve_MatchesTheFormula()
    {
        var options = new MinHashOptions();

        Assert.Equal(1 - Math.Pow(1 - Math.Pow(0.8, 8), 14), options.CandidateProbability(0.8), 12);
        Assert.InRange(options.CandidateProbability(0.75), 0.76, 0.78);
        Assert.InRange(options.CandidateProbability(0.5), 0.05, 0.06);
    }

    private static ulong[] BandKeys(MinHasher hasher, string text)
    {
        Span<uint> signature = stackalloc uint[hasher.SignatureLength];
        Assert.True(hasher.TryCompute([.. Shingles(text, hasher.Options.ShingleSize)], signature));
        ulong[] keys = new ulong[hasher.Options.Bands];
        hasher.BandKeys(signature, keys);
        return keys;
    }

    [Fact]
    public void Decontamination_PlantedThirteenGram_NamesTheEvalItem()
    {
        var random = new Random(3);
        string[] evalWords = TestData.RandomWords(random, 40);
        var decontaminator = new Decontaminator(new DecontaminationOptions());
        decontaminator.AddEvalItem(Text(string.Join(' ', TestData.RandomWords(random, 30)), file: "eval.jsonl", line: 1));
        decontaminator.AddEvalItem(Text(string.Join(' ', evalWords), file: "eval.jsonl", line: 2));
        string[] filler = TestData.RandomWords(random, 60);

        string contaminated = string.Join(' ', filler.Take(30)) + " " + string.Join(' ', evalWords.Skip(10).Take(13)).ToUpperInvariant() + ", " + string.Join(' ', filler.Skip(30));
        string twelveOnly = string.Join(' ', filler.Take(30)) + " " + string.Join(' ', evalWords.Skip(10).Take(12)) + " " + string.Join(' ', filler.Skip(30));

        Assert.Equal(new EvalItemReference("eval.jsonl", 2), decontaminator.FindOverlap(Words(contaminated), []));
        Assert.Null(decontaminator.FindOverlap(Words(twelveOnly), []));
    }

    [Fact]
    public void Decontamination_ShortEvalItem_MatchesWhenContainedWhole()
    {
        var decontaminator = new Decontaminator(new DecontaminationOptions());
        decontaminator.AddEvalItem(Text("What is the capital of Burkina Faso?", file: "eval.txt", line: 9));

        Assert.NotNull(decontaminator.FindOverlap(Words("Quiz: what is the capital of Burkina Faso? Answer: Ouagadougou."), []));
        Assert.Null(decontaminator.FindOverlap(Words("What is the capital of France?"), []));
    }

    [Fact]
    public void Quality_GopherRules_RejectShortAndSymbolHeavyTextsAndPassProse()
    {
        var filter = new GopherQualityFilter(new QualityOptions { Enabled = true });
        string prose = string.Concat(Enumerable.Repeat("The history of the city is long and the people who live there have stories to tell with pride. ", 6));
        string hashtags = string.Join(' ', Enumerable.Repeat("#tag #more the and words", 20));

        Assert.Null(filter.FirstFailedRule(GopherQualityFilter.Score(prose)));
        Assert.Equal("too_few_words", filter.FirstFailedRule(GopherQualityFilter.Score("Too short to be a document.")));
        Assert.Equal("symbol_to_word_ratio", filter.FirstFailedRule(GopherQualityFilter.Score(hashtags)));
    }

    [Fact]
    public void Quality_DuplicateLines_AreMeasured()
    {
        QualityScores scores = GopherQualityFilter.Score("a line\nanother\na line\na line");

        Assert.Equal(0.5, scores.DuplicateLineFraction);
    }

    [Fact]
    public void Words_OfCjkText_AreOneCharEach()
    {
        Assert.Equal(4, Words("日本語だ").Length);
        Assert.Equal(Words("Hello, World!"), Words("hello world"));
    }
}
