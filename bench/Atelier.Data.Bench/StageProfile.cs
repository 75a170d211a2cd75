using System.Diagnostics;
using System.Runtime.InteropServices;
using Atelier.Data.Dedup;
using Atelier.Data.Model;
using Atelier.Data.Quality;

namespace Atelier.Data.Bench;

/// <summary>Times each per-example stage alone, on one thread, over the corpus.</summary>
internal static class StageProfile
{
    public static void Run(string path)
    {
        string[] documents = File.ReadAllText(path).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        double mb = documents.Sum(d => (long)System.Text.Encoding.UTF8.GetByteCount(d)) / 1048576.0;
        var normalizer = new TextNormalizer(new NormalizationOptions());
        var hasher = new MinHasher(new MinHashOptions());
        var words = new List<ulong>();
        var grams = new List<ulong>();
        uint[] signature = new uint[hasher.SignatureLength];
        ulong[] keys = new ulong[14];

        void Time(string name, Action<string> action)
        {
            foreach (string d in documents.Take(documents.Length / 20))
            {
                action(d);
            }

            var watch = Stopwatch.StartNew();
            foreach (string d in documents)
            {
                action(d);
            }

            Console.WriteLine($"  {name,-22} {mb / watch.Elapsed.TotalSeconds,8:F1} MB/s");
        }

        Console.WriteLine($"stages on one thread, {mb:F1} MB:");
        Time("nfc", d => UnicodeNfc.Normalize(d));
        Time("normalize (all)", d => normalizer.Normalize(d));
        Time("content hash", d => ExactDeduplicator.ContentHash(new TrainingExample { Ordinal = 0, SourceFile = "f", Line = 1, Kind = ExampleKind.Text, Text = d }));
        Time("word hashes", d => { words.Clear(); WordHasher.HashWords(d, words); });
        Time("5-gram shingles", d => { words.Clear(); WordHasher.HashWords(d, words); grams.Clear(); WordHasher.HashNGrams(CollectionsMarshal.AsSpan(words), 5, grams); });
        Time("minhash (incl. above)", d =>
        {
            words.Clear();
            WordHasher.HashWords(d, words);
            grams.Clear();
            WordHasher.HashNGrams(CollectionsMarshal.AsSpan(words), 5, grams);
            hasher.TryCompute(CollectionsMarshal.AsSpan(grams), signature);
            hasher.BandKeys(signature, keys);
        });
        Time("gopher scores", d => GopherQualityFilter.Score(d));
    }
}
