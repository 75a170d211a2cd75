using System.Text;
using System.Text.Json;
using Atelier.Data.Validation;

namespace Atelier.Data.Tests;

/// <summary>
/// The hand-written direct scan may only answer where it answers exactly what the reader scans
/// answer: the fine-tune kind of <see cref="FastLineScan.FineTune"/> when it gives one, and the
/// batch facts of <see cref="FastLineScan.Batch"/> for every line it calls well-formed. Checked on
/// seeded random lines and byte-level mutations of them (broken grammar, escapes, numbers).
/// </summary>
public sealed class DirectLineScanTests
{
    private static readonly string[] Pieces =
    [
        "\"role\":\"user\"", "\"role\":\"assistant\"", "\"role\":\"system\"", "\"role\":\"tool\"", "\"role\":\"us\\u0065r\"", "\"role\":5",
        "\"content\":\"hi\"", "\"content\":\"\"", "\"content\":null", "\"content\":[{\"type\":\"text\",\"text\":\"x\"}]", "\"content\":7",
        "\"content\":\"caf\\u00e9 \\\"quoted\\\" \\n\\t\\\\ /\"", "\"content\":\"emoji \\ud83d\\ude00\"", "\"content\":\"lone \\ud83d end\"",
        "\"content\":\"bad \\x escape\"", "\"content\":\"données, 日本語\"", "\"content\":\"raw\ttab\"",
        "\"weight\":0", "\"weight\":1", "\"weight\":1.0", "\"weight\":0.5", "\"weight\":1e0", "\"weight\":\"1\"", "\"weight\":-0",
        "\"tool_calls\":[{\"id\":\"abcdefghi\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]", "\"tool_call_id\":\"abcdefghi\"",
        "\"extra\":{\"a\":[1,-2.5e+3,{\"b\":null,\"c\":true,\"d\":false}]}", "\"us\\u0065r\":1", "\"name\" : \"spaced\" ",
    ];

    private static readonly string[] TopPieces =
    [
        "\"custom_id\":\"r1\"", "\"custom_id\":\"\"", "\"custom_id\":3", "\"custom_id\":\"r\\u0031\"", "\"body\":{\"x\":[1]}", "\"body\":[]",
        "\"body\":null", "\"other\":true", "\"tools\":[]", "\"interactions\":[]", "\"meta\":{\"k\":1}", "\"text\":\"raw\"", "\"text\":\"\"",
        "\"text\":5", "\"cust\\u006fm_id\":\"x\"", "\"deep\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ];

    // Bytes that make or break JSON, for the mutations.
    private const string Mutations = "\"{}[],:\\ u0123456789.-+eEtfnrl\t\r\u0001x";

    [Fact]
    public void DirectScan_AnswersOnlyWhatTheReaderScansAnswer()
    {
        var random = new Random(20261207);
        var sureFineTune = 0;
        var sureBatch = 0;
        var malformed = 0;
        for (var i = 0; i < 60_000; i++)
        {
            var line = RandomLine(random);
            if (random.Next(3) == 0)
            {
                line = Mutate(line, random);
            }

            var bytes = Encoding.UTF8.GetBytes(line);
            var wellFormed = IsWellFormedObject(bytes);
            malformed += wellFormed ? 0 : 1;
            if (!DirectLineScan.TryScan(bytes, out var kind, out var idOk, out var bodyOk))
            {
                continue;
            }

            Assert.True(wellFormed, $"the direct scan accepted a line the reader rejects: {line}");
            Assert.True(FastLineScan.Batch(bytes, out var readerIdOk, out var readerBodyOk), line);
            Assert.True(idOk == readerIdOk && bodyOk == readerBodyOk, $"batch facts differ (direct {idOk}/{bodyOk}, reader {readerIdOk}/{readerBodyOk}) for: {line}");
            sureBatch++;
            if (kind != LineKind.Invalid)
            {
                Assert.True(FastLineScan.FineTune(bytes) == kind, $"the direct scan said {kind} but the reader scan said {FastLineScan.FineTune(bytes)} for: {line}");
                sureFineTune++;
            }
        }

        // The generator must exercise every side for the check to mean something.
        Assert.True(sureFineTune > 2_000, $"only {sureFineTune} lines got a fine-tune kind from the direct scan");
        Assert.True(sureBatch > 10_000, $"only {sureBatch} lines got batch facts from the direct scan");
        Assert.True(malformed > 5_000, $"only {malformed} malformed lines were generated");
    }

    [Theory]
    [InlineData("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}", "Instruct")]
    [InlineData(" {\"messages\" : [ {\"role\" : \"system\", \"content\":\"s\"} , {\"role\":\"user\",\"content\":\"caf\\u00e9\"},{\"role\":\"assistant\",\"content\":\"a\",\"weight\":0}] } \t", "Instruct")]
    [InlineData("{\"text\":\"a document\",\"source\":{\"url\":null,\"n\":[1,2.5e-3]}}", "Pretrain")]
    [InlineData("{\"custom_id\":\"r1\",\"body\":{\"messages\":[]}}", "Invalid")]
    public void DirectScan_SettlesOrdinaryLines(string line, string expected)
    {
        var bytes = Encoding.UTF8.GetBytes(line);
        Assert.True(DirectLineScan.TryScan(bytes, out var kind, out _, out _));
        Assert.Equal(expected, kind.ToString());
        Assert.Equal(FastLineScan.FineTune(bytes), kind);
    }

    [Theory]
    [InlineData("{\"messages\":[]}x")]
    [InlineData("{\"a\":01}")]
    [InlineData("{\"a\":1.}")]
    [InlineData("{\"a\":\"\\uD83D\"}")]
    [InlineData("{\"a\":[1,]}")]
    [InlineData("{\"a\":tru}")]
    [InlineData("[{\"a\":1}]")]
    [InlineData("{\"a\":\"unterminated}")]
    [InlineData("{\"a\":1}{\"b\":2}")]
    public void DirectScan_IsUnsureOfWhatItDoesNotJudge(string line)
    {
        Assert.False(DirectLineScan.TryScan(Encoding.UTF8.GetBytes(line), out _, out _, out _));
    }

    private static bool IsWellFormedObject(byte[] bytes)
    {
        try
        {
            using var document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 64 });
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static string Mutate(string line, Random random)
    {
        var builder = new StringBuilder(line);
        for (var n = random.Next(1, 3); n > 0 && builder.Length > 0; n--)
        {
            var at = random.Next(builder.Length);
            switch (random.Next(3))
            {
                case 0:
                    builder.Remove(at, 1);
                    break;
                case 1:
                    builder.Insert(at, Mutations[random.Next(Mutations.Length)]);
                    break;
                default:
                    builder[at] = Mutations[random.Next(Mutations.Length)];
                    break;
            }
        }

        return builder.ToString();
    }

    private static string RandomLine(Random random)
    {
        var top = new List<string>();
        if (random.Next(5) != 0)
        {
            var messages = Enumerable.Range(0, random.Next(0, 5)).Select(_ =>
                "{" + string.Join(",", Enumerable.Range(0, random.Next(0, 4)).Select(_ => Pieces[random.Next(Pieces.Length)])) + "}");

            // Bias towards well-formed conversations so that many lines are valid.
            if (random.Next(2) == 0)
            {
                messages = new[] { "{\"role\":\"user\",\"content\":\"q\"}" }.Concat(messages).Append("{\"role\":\"assistant\",\"content\":\"a\"}");
            }

            top.Add("\"messages\":[" + string.Join(",", messages) + "]");
        }

        for (var n = random.Next(0, 3); n > 0; n--)
        {
            top.Insert(random.Next(top.Count + 1), TopPieces[random.Next(TopPieces.Length)]);
        }

        return "{" + string.Join(random.Next(4) == 0 ? " , " : ",", top) + "}";
    }
}
