using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Atelier.Inference.Constraints;
using Atelier.Modeling.Sampling;
using Xunit.Abstractions;

namespace Atelier.Inference.Tests.Constraints;

public class ConstrainedEngineTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    /// <summary>64 tokens for the tiny model's 64 logits: 0, 1 control, 2 EOS, then JSON pieces and letters.</summary>
    private static List<byte[]?> TinyPieces()
    {
        var pieces = new List<byte[]?> { null, null, null };
        string[] texts = ["{", "}", "\"", ":", ",", " ", "{\"", "\":", "\"}", "\": ", "true", "false", "null", "[", "]", "-", ".", "e", "ok", "tag", "x", "y", "\", \"", "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "12"];
        foreach (string text in texts)
        {
            pieces.Add(Encoding.UTF8.GetBytes(text));
        }

        for (char c = 'a'; pieces.Count < 64; c++)
        {
            pieces.Add([(byte)c]);
        }

        return pieces;
    }

    [Fact]
    public async Task ATinyRandomModel_UnderASchemaConstraint_GeneratesJsonThatValidates()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var pieces = TinyPieces();
        var vocabulary = new TokenVocabulary(pieces, [2]);
        const string SchemaText = """{"type": "object", "properties": {"ok": {"type": "boolean"}, "n": {"type": "integer"}, "tag": {"enum": ["x", "y"]}, "list": {"type": "array", "items": {"type": "number"}, "maxItems": 3}}, "required": ["ok", "n", "tag"], "additionalProperties": false}""";
        var grammar = JsonGrammar.FromSchema(SchemaText, strict: true);
        using var schema = JsonDocument.Parse(SchemaText);
        using var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 1L << 22 });

        for (int seed = 0; seed < 8; seed++)
        {
            // Greedy for the first, sampled for the others: the mask decides either way.
            var stream = engine.Submit(new GenerationRequest(TinyModels.Prompt(6, seed), 300)
            {
                StopTokenIds = [2],
                LogitsProcessor = new JsonConstraint(vocabulary, grammar),
                Sampling = seed == 0 ? new SamplingOptions() : new SamplingOptions(1.0f, 1.0f, (ulong)seed),
            });
            var tokens = new List<int>();
            await foreach (var t in stream.WithCancellation(CancellationToken.None))
            {
                tokens.Add(t);
            }

            var result = await stream.Completion.WaitAsync(Limit);
            string text = Encoding.UTF8.GetString([.. tokens.Where(t => t != 2).SelectMany(t => pieces[t]!)]);
            output.WriteLine($"seed {seed}: {text}");
            // The schema bounds the value's size, so it always ends before the token limit.
            Assert.Equal(FinishReason.Stop, result.FinishReason);
            using var value = JsonDocument.Parse(text);
            Assert.Null(SchemaValidator.Validate(value.RootElement, schema.RootElement, strict: true));
        }
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void MaskingTime_OnSynthetic32kAnd131kVocabularies_IsReported()
    {
        foreach (int size in (int[])[32_768, 131_072])
        {
            var pieces = SyntheticVocabulary(size, new Random(size));
            var clock = Stopwatch.StartNew();
            var vocabulary = new TokenVocabulary(pieces, [2]);
            output.WriteLine($"{size} tokens: trie of {vocabulary.NodeCount} nodes built in {clock.ElapsedMilliseconds} ms");
            var grammar = JsonGrammar.FromSchema("""{"type": "object", "properties": {"name": {"type": "string"}, "n": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}}}, "required": ["name"]}""");
            (string State, JsonGrammar Grammar, string Prefix)[] states =
            [
                ("object start", grammar, ""),
                ("key (named or free)", grammar, "{\"na"),
                ("value start", grammar, "{\"name\": "),
                ("free string content", grammar, "{\"name\": \"ab"),
                ("string with maxLength", grammar, "{\"tags\": [\"ab"),
                ("inside a number", grammar, "{\"n\": 12"),
                ("json_object free key", JsonGrammar.AnyObject, "{\"k"),
            ];
            foreach (var (state, g, prefix) in states)
            {
                var constraint = new JsonConstraint(vocabulary, g);
                var matcherTokens = Encoding.UTF8.GetBytes(prefix).Select(b => (int)b + 3).ToArray();
                var logits = new float[size];
                constraint.Process(matcherTokens, logits);
                int allowed = logits.Count(l => !float.IsNegativeInfinity(l));
                const int Steps = 20;
                clock.Restart();
                for (int i = 0; i < Steps; i++)
                {
                    // The same state again: Process consumes no new token, so each call is one mask.
                    constraint.Process(matcherTokens, logits);
                }

                output.WriteLine($"  {state,-24} {clock.Elapsed.TotalMilliseconds / Steps,8:F3} ms/step, {allowed} tokens allowed");
                Assert.True(allowed > 0);
            }
        }
    }

    /// <summary>
    /// A byte-level vocabulary shaped like tekken's: ids 0–2 control/EOS, 3–258 the single bytes, then
    /// English words with and without a leading space, JSON punctuation runs, digits, words in other
    /// scripts and fragments of multi-byte characters.
    /// </summary>
    private static List<byte[]?> SyntheticVocabulary(int size, Random random)
    {
        var pieces = new List<byte[]?> { null, null, null };
        for (int b = 0; b < 256; b++)
        {
            pieces.Add([(byte)b]);
        }

        var seen = new HashSet<string>(pieces.Skip(3).Select(p => Convert.ToBase64String(p!)));
        const string Punctuation = "{}[]\":, .-_\n\t\\/'()";
        while (pieces.Count < size)
        {
            int kind = random.Next(10);
            string text = kind switch
            {
                < 4 => (random.Next(2) == 0 ? " " : "") + Word(random, 'a', 26, 1 + random.Next(9)),
                4 => new string([.. Enumerable.Range(0, 1 + random.Next(4)).Select(_ => Punctuation[random.Next(Punctuation.Length)])]),
                5 => random.Next(1000).ToString(System.Globalization.CultureInfo.InvariantCulture),
                6 => (random.Next(2) == 0 ? " " : "") + Word(random, 'а', 32, 1 + random.Next(6)),
                7 => Word(random, '一', 2000, 1 + random.Next(3)),
                8 => (random.Next(2) == 0 ? " " : "") + Word(random, 'à', 30, 1 + random.Next(6)),
                _ => "",
            };
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            if (kind == 9)
            {
                // A fragment of a multi-byte character sequence, as byte-level BPE merges make.
                byte[] cjk = Encoding.UTF8.GetBytes(Word(random, '一', 2000, 2));
                int start = 1 + random.Next(cjk.Length - 2);
                bytes = cjk[start..(start + 1 + random.Next(cjk.Length - start - 1))];
            }

            if (bytes.Length > 0 && seen.Add(Convert.ToBase64String(bytes)))
            {
                pieces.Add(bytes);
            }
        }

        return pieces;
    }

    private static string Word(Random random, char first, int range, int length) =>
        new([.. Enumerable.Range(0, length).Select(_ => (char)(first + random.Next(range)))]);
}
