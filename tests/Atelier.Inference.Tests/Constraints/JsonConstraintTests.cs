using Xunit.Abstractions;
using System.Text.Json;
using Atelier.Core.Errors;
using Atelier.Inference.Constraints;

namespace Atelier.Inference.Tests.Constraints;

public class JsonConstraintTests(ITestOutputHelper output)
{
    private static readonly List<byte[]?> Pieces = ConstraintKit.Pieces();
    private static readonly TokenVocabulary Vocabulary = ConstraintKit.Vocabulary(Pieces);

    private static (string Text, bool Stopped) Generate(JsonGrammar grammar, int seed, int maxTokens = 4000)
    {
        var (tokens, stopped) = ConstraintKit.Sample(new JsonConstraint(Vocabulary, grammar), Vocabulary.Size, new Random(seed), maxTokens);
        // An unfinished generation may end inside a character; only a finished one must decode.
        return (stopped ? ConstraintKit.StrictText(tokens) : ConstraintKit.Text(tokens), stopped);
    }

    [Fact]
    public void RandomSchemas_SampledUniformlyUnderTheConstraint_AlwaysParseAndValidate()
    {
        int stopped = 0;
        int runs = 0;
        for (int seed = 0; seed < 250; seed++)
        {
            string schemaText = RandomSchemas.Create(new Random(seed));
            using JsonDocument schema = JsonDocument.Parse(schemaText);
            bool strict = seed % 2 == 0;
            JsonGrammar grammar = JsonGrammar.FromSchema(schema.RootElement, strict);
            for (int sample = 0; sample < 2; sample++)
            {
                runs++;
                var (text, ended) = Generate(grammar, seed * 31 + sample, maxTokens: 1500);
                if (!ended)
                {
                    continue;
                }

                stopped++;
                using JsonDocument value = ParseStrict(text, schemaText);
                Assert.True(SchemaValidator.Validate(value.RootElement, schema.RootElement, strict) is null,
                    $"schema {schemaText} (strict {strict}): {text} fails: {SchemaValidator.Validate(value.RootElement, schema.RootElement, strict)}");
            }
        }

        // Uniform sampling ends most values; open objects (additional properties of any value) may grow
        // past the token limit, as a model's output may: it then ends with finish reason "length".
        Assert.True(stopped > runs * 2 / 3, $"only {stopped} of {runs} generations ended");
        output.WriteLine($"{stopped} of {runs} generations ended with the stop token");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void JsonObjectMode_ProducesObjects_AndAnyValueMode_AnyValue(bool objectMode)
    {
        int stopped = 0;
        for (int seed = 0; seed < 200; seed++)
        {
            var (text, ended) = Generate(objectMode ? JsonGrammar.AnyObject : JsonGrammar.AnyValue, seed, maxTokens: 1500);
            if (!ended)
            {
                continue;
            }

            stopped++;
            using JsonDocument value = ParseStrict(text, objectMode ? "json_object" : "any");
            if (objectMode)
            {
                Assert.Equal(JsonValueKind.Object, value.RootElement.ValueKind);
            }
        }

        output.WriteLine($"{stopped} of 200 generations ended with the stop token");
        Assert.True(stopped > 100, $"only {stopped} of 200 generations ended");
    }

    [Fact]
    public void ACompleteValue_AllowsOnlyTheStopToken()
    {
        var constraint = new JsonConstraint(Vocabulary, JsonGrammar.FromSchema("""{"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"], "additionalProperties": false}"""));
        int[] tokens = [Id("{\""), Id("o"), Id("k"), Id("\": "), Id("true"), Id("}")];
        var logits = new float[Vocabulary.Size];
        constraint.Process(tokens, logits);
        Assert.True(constraint.IsComplete);
        Assert.Equal([ConstraintKit.Eos], Enumerable.Range(0, logits.Length).Where(i => !float.IsNegativeInfinity(logits[i])));
    }

    [Fact]
    public void BeforeTheValueIsComplete_TheStopTokenIsMasked_AndATopLevelNumberMayEndOrGoOn()
    {
        var logits = new float[Vocabulary.Size];
        var constraint = new JsonConstraint(Vocabulary, JsonGrammar.FromSchema("""{"type": "integer"}"""));
        constraint.Process([], logits);
        Assert.True(float.IsNegativeInfinity(logits[ConstraintKit.Eos]));
        Assert.False(float.IsNegativeInfinity(logits[Id("12")]));
        Assert.True(float.IsNegativeInfinity(logits[Id("1.5")]));

        Array.Clear(logits);
        constraint.Process([Id("12")], logits);
        Assert.False(float.IsNegativeInfinity(logits[ConstraintKit.Eos]));
        Assert.False(float.IsNegativeInfinity(logits[Id("1")]));
        Assert.True(float.IsNegativeInfinity(logits[Id(" ")]));
    }

    [Fact]
    public void AGeneratedTokenTheMaskForbade_FailsTheRequest()
    {
        var constraint = new JsonConstraint(Vocabulary, JsonGrammar.AnyObject);
        Assert.Throws<InvalidOperationException>(() => constraint.Process([Id("[]")], new float[Vocabulary.Size]));
    }

    [Fact]
    public void Strings_CarryUtf8AcrossTokens_AndRefuseInvalidBytesAndLoneSurrogates()
    {
        var constraint = new JsonConstraint(Vocabulary, JsonGrammar.FromSchema("""{"type": "string"}"""));
        var logits = new float[Vocabulary.Size];
        constraint.Process([Id("\""), PieceIndex([0xE6, 0x97])], logits);
        // Mid-character: the piece that completes 日 (E6 97 A5) fits; a quote or ASCII does not.
        Assert.False(float.IsNegativeInfinity(logits[PieceIndex([0xA5, 0xE6])]));
        Assert.True(float.IsNegativeInfinity(logits[Id("\"")]));
        Assert.True(float.IsNegativeInfinity(logits[Id("a")]));

        var fresh = new JsonConstraint(Vocabulary, JsonGrammar.FromSchema("""{"type": "string"}"""));
        Array.Clear(logits);
        fresh.Process([Id("\"")], logits);
        Assert.True(float.IsNegativeInfinity(logits[PieceIndex([0xFF])]));
        Assert.True(float.IsNegativeInfinity(logits[PieceIndex([0xED, 0xA0, 0x80])]));
        Assert.True(float.IsNegativeInfinity(logits[Id("\n")]));
        Assert.True(float.IsNegativeInfinity(logits[Id("\\ud83d")]));
        Assert.False(float.IsNegativeInfinity(logits[Id("\\u00e9")]));
        Assert.False(float.IsNegativeInfinity(logits[Id("😀")]));
    }

    [Fact]
    public void Keys_AreTheSchemasNames_EachOnce_AndClosedObjectsTakeNoOther()
    {
        var grammar = JsonGrammar.FromSchema("""{"type": "object", "properties": {"a": {"type": "integer"}, "ab": {"type": "integer"}}, "required": ["ab"]}""", strict: true);
        var constraint = new JsonConstraint(Vocabulary, grammar);
        var logits = new float[Vocabulary.Size];
        constraint.Process([Id("{\""), Id("a"), Id("\":"), Id("1"), Id(","), Id("\"a")], logits);
        // "a" is seen: only "ab" may follow, so the key cannot close here.
        Assert.True(float.IsNegativeInfinity(logits[Id("\":")]));
        Assert.False(float.IsNegativeInfinity(logits[Id("b")]));
        Assert.True(float.IsNegativeInfinity(logits[Id("c")]));
        // And the object cannot close before its required key.
        var early = new JsonConstraint(Vocabulary, grammar);
        Array.Clear(logits);
        early.Process([Id("{\""), Id("a"), Id("\":"), Id("1")], logits);
        Assert.True(float.IsNegativeInfinity(logits[Id("}")]));
        Assert.False(float.IsNegativeInfinity(logits[Id(",")]));
    }

    [Theory]
    [InlineData("""{"type": "string", "pattern": "^a"}""", "pattern", "$.pattern")]
    [InlineData("""{"type": "object", "properties": {"when": {"type": "integer", "minimum": 3}}}""", "minimum", "$.properties.when.minimum")]
    [InlineData("""{"allOf": [{"type": "string"}]}""", "allOf", "$.allOf")]
    [InlineData("""{"type": "array", "items": {"$ref": "https://example.com/s.json"}}""", "$ref", "$.items.$ref")]
    [InlineData("""{"anyOf": [{"type": "string"}], "type": "string"}""", "type", "$.type")]
    public void AnUnsupportedKeyword_IsRefusedWithItsPath(string schema, string keyword, string path)
    {
        var error = Assert.Throws<ValidationFailedException>(() => JsonGrammar.FromSchema(schema));
        Assert.Equal(422, error.StatusCode);
        Assert.Equal(JsonGrammar.UnsupportedSchemaCode, error.Code);
        Assert.Contains($"'{keyword}'", error.Message, StringComparison.Ordinal);
        Assert.Equal(path, Assert.Single(error.Problems).Field);
    }

    [Theory]
    [InlineData("""{"enum": []}""", "$")]
    [InlineData("""{"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]}""", "$.properties.a")]
    [InlineData("""{"type": "object", "required": ["b"], "additionalProperties": false}""", "$.required.b")]
    [InlineData("""{"type": "array", "minItems": 3, "maxItems": 2}""", "$")]
    [InlineData("""{"type": "object", "properties": {"me": {"$ref": "#"}}, "required": ["me"]}""", "$.properties.me")]
    [InlineData("""{"type": "integer", "enum": ["a", "b"]}""", "$")]
    public void ASchemaNoValueSatisfies_IsRefused(string schema, string path)
    {
        var error = Assert.Throws<ValidationFailedException>(() => JsonGrammar.FromSchema(schema));
        Assert.Contains("No value satisfies", error.Message, StringComparison.Ordinal);
        Assert.Equal(path, Assert.Single(error.Problems).Field);
    }

    [Fact]
    public void OptionalPartsNoValueSatisfies_AreNeverOffered()
    {
        var grammar = JsonGrammar.FromSchema("""{"type": "object", "properties": {"a": {"enum": []}, "b": {"anyOf": [{"enum": []}, {"type": "null"}]}}, "required": ["b"], "additionalProperties": false}""");
        for (int seed = 0; seed < 20; seed++)
        {
            var (text, ended) = Generate(grammar, seed);
            Assert.True(ended);
            Assert.Equal("{\"b\":null}", text.Replace(" ", "", StringComparison.Ordinal));
        }
    }

    private static JsonDocument ParseStrict(string text, string what)
    {
        try
        {
            return JsonDocument.Parse(text);
        }
        catch (JsonException e)
        {
            Assert.Fail($"{what}: output {text} does not parse: {e.Message}");
            throw;
        }
    }

    private static int Id(string text) => PieceIndex(System.Text.Encoding.UTF8.GetBytes(text));

    private static int PieceIndex(byte[] bytes)
    {
        for (int i = 0; i < Pieces.Count; i++)
        {
            if (Pieces[i] is { } piece && piece.AsSpan().SequenceEqual(bytes))
            {
                return i;
            }
        }

        throw new ArgumentException("no such piece: " + Convert.ToHexString(bytes));
    }
}
