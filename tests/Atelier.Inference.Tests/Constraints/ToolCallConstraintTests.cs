using System.Text;
using System.Text.Json;
using Atelier.Data.Formatting;
using Atelier.Data.Tokenization;
using Atelier.Inference.Constraints;

namespace Atelier.Inference.Tests.Constraints;

public class ToolCallConstraintTests
{
    private static readonly List<byte[]?> Pieces = ConstraintKit.Pieces();
    private static readonly TokenVocabulary Vocabulary = ConstraintKit.Vocabulary(Pieces);
    private static readonly ToolCallTokens Tokens = new(ConstraintKit.ToolCalls, ConstraintKit.Args);

    private const string WeatherSchema = """{"type": "object", "properties": {"city": {"type": "string", "maxLength": 8}, "days": {"type": "integer"}}, "required": ["city"], "additionalProperties": false}""";
    private const string SearchSchema = """{"type": "object", "properties": {"q": {"enum": ["a", "ab"]}}, "required": ["q"], "additionalProperties": false}""";

    private static readonly Dictionary<string, string> Schemas = new() { ["get_weather"] = WeatherSchema, ["search"] = SearchSchema, ["get"] = "{}" };

    private static List<ToolCallFunction> Functions(params string[] names) =>
        [.. names.Select(n => new ToolCallFunction(n, Schemas[n] == "{}" ? JsonGrammar.AnyObject : JsonGrammar.FromSchema(Schemas[n], strict: true)))];

    [Theory]
    [InlineData(MistralTokenizerVersion.V3, true)]
    [InlineData(MistralTokenizerVersion.V7, false)]
    [InlineData(MistralTokenizerVersion.V11, true)]
    [InlineData(MistralTokenizerVersion.V13, false)]
    public void ForcedCalls_ParseIntoCallsOfTheGivenFunctions_WithValidArguments(MistralTokenizerVersion version, bool parallel)
    {
        var syntax = version >= MistralTokenizerVersion.V11 ? ToolCallSyntax.NameThenArguments : ToolCallSyntax.JsonList;
        var tokenizer = new PieceTokenizer();
        int ended = 0;
        for (int seed = 0; seed < 100; seed++)
        {
            // "get" prefixes "get_weather": the name must still end where a function's does.
            string[] allowed = seed % 3 == 0 ? ["search"] : ["get_weather", "search", "get"];
            var constraint = new ToolCallConstraint(Vocabulary, syntax, Tokens, Functions(allowed), parallel);
            var (tokens, stopped) = ConstraintKit.Sample(constraint, Vocabulary.Size, new Random(seed), 1500);
            if (!stopped)
            {
                continue;
            }

            ended++;
            Assert.Equal(ConstraintKit.ToolCalls, tokens[0]);
            AssistantTurn turn = MistralToolCallParser.Parse(tokens, tokenizer, version);
            Assert.True(turn.ToolCallError is null, $"{ConstraintKit.Text(tokens)}: {turn.ToolCallError}");
            Assert.NotEmpty(turn.ToolCalls);
            Assert.True(parallel || turn.ToolCalls.Count == 1);
            foreach (var call in turn.ToolCalls)
            {
                Assert.Contains(call.Name, allowed);
                using JsonDocument arguments = JsonDocument.Parse(call.Arguments);
                using JsonDocument schema = JsonDocument.Parse(Schemas[call.Name]);
                Assert.Equal(JsonValueKind.Object, arguments.RootElement.ValueKind);
                Assert.Null(SchemaValidator.Validate(arguments.RootElement, schema.RootElement, strict: true));
            }
        }

        Assert.True(ended > 60, $"only {ended} of 100 generations ended");
    }

    [Fact]
    public void TheFirstToken_IsForcedToBeToolCalls_AndTheNameToBeOneOfTheFunctions()
    {
        var constraint = new ToolCallConstraint(Vocabulary, ToolCallSyntax.NameThenArguments, Tokens, Functions("search"));
        var logits = new float[Vocabulary.Size];
        constraint.Process([], logits);
        Assert.Equal([ConstraintKit.ToolCalls], Finite(logits));

        Array.Clear(logits);
        constraint.Process([ConstraintKit.ToolCalls], logits);
        Assert.DoesNotContain(ConstraintKit.Args, Finite(logits));
        Assert.Contains(Index("search"), Finite(logits));
        Assert.DoesNotContain(Index("get"), Finite(logits));

        Array.Clear(logits);
        constraint.Process([ConstraintKit.ToolCalls, Index("search")], logits);
        Assert.Equal([ConstraintKit.Args], Finite(logits));
    }

    [Fact]
    public void WithTextFirst_TextIsFree_UntilTheModelOpensACall()
    {
        var constraint = new ToolCallConstraint(Vocabulary, ToolCallSyntax.JsonList, Tokens, Functions("search"), textFirst: true);
        var logits = new float[Vocabulary.Size];
        constraint.Process([Index("ab"), Index(" ")], logits);
        Assert.Equal(Vocabulary.Size, Finite(logits).Count);

        constraint.Process([Index("ab"), Index(" "), ConstraintKit.ToolCalls], logits);
        // Now the call list is forced: it opens with '[' and holds at least one call.
        Assert.All(Finite(logits), i => Assert.Equal((byte)'[', Pieces[i]![0]));
        Assert.Contains(Index("[{\""), Finite(logits));
        Assert.DoesNotContain(Index("[]"), Finite(logits));
    }

    private static List<int> Finite(float[] logits) => [.. Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i]))];

    private static int Index(string text) => Pieces.FindIndex(p => p is not null && p.AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(text)));

    /// <summary>A tokeniser over <see cref="ConstraintKit.Pieces"/>: decoding only, as the parser needs.</summary>
    private sealed class PieceTokenizer : ITextTokenizer
    {
        public string Name => "pieces";

        public string Identity => "pieces";

        public int VocabularySize => Pieces.Count;

        public ControlTokens Control { get; } = new()
        {
            Bos = ConstraintKit.Bos,
            Eos = ConstraintKit.Eos,
            ToolCalls = ConstraintKit.ToolCalls,
            Args = ConstraintKit.Args,
            CallId = ConstraintKit.CallId,
        };

        public void Encode(string text, List<int> destination) => throw new NotSupportedException();

        public string Decode(IEnumerable<int> ids) => Encoding.UTF8.GetString([.. ids.SelectMany(id => Pieces[id] ?? [])]);

        public IReadOnlyList<byte[]?> TokenBytes() => Pieces;
    }
}
