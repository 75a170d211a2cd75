using System.Text;
using System.Text.Json;
using Atelier.Data.Validation;

namespace Atelier.Data.Tests;

/// <summary>
/// The fast scan may only ever say "certainly valid" for lines the full rules also accept, with
/// the same kind. Checked on seeded random mutations of chat, pretrain and batch lines.
/// </summary>
public sealed class FastLineScanValidationTests
{
    private static readonly string[] Pieces =
    [
        "\"role\":\"user\"", "\"role\":\"assistant\"", "\"role\":\"system\"", "\"role\":\"tool\"", "\"role\":\"bot\"", "\"role\":5",
        "\"content\":\"hi\"", "\"content\":\"\"", "\"content\":null", "\"content\":[{\"type\":\"text\",\"text\":\"x\"}]", "\"content\":7",
        "\"weight\":0", "\"weight\":1", "\"weight\":0.5", "\"weight\":\"1\"",
        "\"tool_calls\":[{\"id\":\"abcdefghi\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]", "\"tool_call_id\":\"abcdefghi\"",
        "\"extra\":{\"a\":[1,2,{\"b\":null}]}", "\"us\\u0065r\":1",
    ];

    [Fact]
    public void FastScan_NeverAcceptsALineTheFullRulesReject()
    {
        var random = new Random(20261122);
        var accepted = 0;
        for (var i = 0; i < 20_000; i++)
        {
            var line = RandomLine(random);
            var bytes = Encoding.UTF8.GetBytes(line);
            var fast = FastLineScan.FineTune(bytes);
            if (fast == LineKind.Invalid)
            {
                continue;
            }

            accepted++;
            var sink = new ProblemSink(null);
            using var document = JsonDocument.Parse(bytes);
            var full = FineTuneLineRules.Validate(document.RootElement, 1, sink);
            Assert.True(sink.Total == 0 && full == fast, $"fast scan said {fast} but the full rules said {full} with [{string.Join("; ", sink.Kept)}] for: {line}");
        }

        // The generator must produce enough valid lines for the check to mean something.
        Assert.True(accepted > 500, $"only {accepted} lines were accepted by the fast scan");
    }

    [Fact]
    public void FastBatchScan_AgreesWithTheFullRules()
    {
        var random = new Random(7);
        string[] parts = ["\"custom_id\":\"r1\"", "\"custom_id\":\"\"", "\"custom_id\":3", "\"body\":{\"x\":[1]}", "\"body\":[]", "\"body\":null", "\"other\":true"];
        for (var i = 0; i < 5_000; i++)
        {
            var fields = Enumerable.Range(0, random.Next(0, 4)).Select(_ => parts[random.Next(parts.Length)]);
            var line = "{" + string.Join(",", fields) + "}";
            var bytes = Encoding.UTF8.GetBytes(line);
            Assert.True(FastLineScan.Batch(bytes, out var idOk, out var bodyOk), line);
            var fastSink = new ProblemSink(null);
            BatchLineRules.Report(idOk, bodyOk, 1, fastSink);
            var fullSink = new ProblemSink(null);
            using var document = JsonDocument.Parse(bytes);
            BatchLineRules.Validate(document.RootElement, 1, fullSink);
            Assert.Equal(fullSink.Kept.Select(p => p.Message), fastSink.Kept.Select(p => p.Message));
        }
    }

    [Fact]
    public void CombinedScan_AnswersExactlyWhatTheTwoScansAnswer()
    {
        // The one-pass scan used while the purpose is unknown must agree with the two scans it
        // replaces on every line: the fine-tune kind, and the batch verdict whenever it gives one.
        var random = new Random(20261207);
        string[] batchParts = ["\"custom_id\":\"r1\"", "\"custom_id\":\"\"", "\"custom_id\":3", "\"body\":{\"x\":[1]}", "\"body\":[]", "\"body\":null"];
        var batchKnown = 0;
        for (var i = 0; i < 20_000; i++)
        {
            var line = RandomLine(random);
            if (random.Next(3) == 0)
            {
                // Batch properties before, among or after the fine-tune ones, sometimes twice.
                var extra = string.Join(",", Enumerable.Range(0, random.Next(1, 3)).Select(_ => batchParts[random.Next(batchParts.Length)]));
                line = random.Next(2) == 0 ? "{" + extra + "," + line[1..] : line[..^1] + "," + extra + "}";
            }

            if (random.Next(20) == 0)
            {
                line = random.Next(2) == 0 ? line + " x" : line[..^random.Next(1, 4)];
            }

            var bytes = Encoding.UTF8.GetBytes(line);
            var kind = FastLineScan.FineTuneAndBatch(bytes, out var known, out var idOk, out var bodyOk);
            Assert.True(FastLineScan.FineTune(bytes) == kind, $"fine-tune kind differs for: {line}");
            var separate = FastLineScan.Batch(bytes, out var separateIdOk, out var separateBodyOk);
            if (known)
            {
                batchKnown++;
                Assert.True(separate && idOk == separateIdOk && bodyOk == separateBodyOk, $"batch verdict differs for: {line}");
            }
        }

        Assert.True(batchKnown > 500, $"only {batchKnown} lines got a batch verdict from the combined scan");
    }

    private static string RandomLine(Random random)
    {
        switch (random.Next(10))
        {
            case 0:
                return random.Next(2) == 0 ? "{\"text\":\"raw\"}" : "{\"text\":\"\"}";
            case 1:
                return "{\"messages\":[],\"text\":\"both\"}";
            default:
                var messages = Enumerable.Range(0, random.Next(1, 5)).Select(_ =>
                    "{" + string.Join(",", Enumerable.Range(0, random.Next(1, 4)).Select(_ => Pieces[random.Next(Pieces.Length)])) + "}");

                // Bias towards well-formed conversations so that many lines are valid.
                if (random.Next(2) == 0)
                {
                    messages = new[] { "{\"role\":\"user\",\"content\":\"q\"}" }.Concat(messages).Append("{\"role\":\"assistant\",\"content\":\"a\"}");
                }

                var extra = random.Next(4) == 0 ? ",\"tools\":[]" : random.Next(4) == 0 ? ",\"meta\":{\"k\":1}" : "";
                return "{\"messages\":[" + string.Join(",", messages) + "]" + extra + "}";
        }
    }
}
