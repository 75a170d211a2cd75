using System.Text.Json;
using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests;

/// <summary>
/// Conversations whose tokens and loss masks were checked against mistral-common's own code
/// (<c>mistral-common/check.py</c> runs its normaliser and <c>InstructTokenizerV1/V2/V3/V7/V11</c> over
/// the same tiny vocabularies, with mistral-finetune's mask). The formatter must keep producing them.
/// </summary>
public sealed class MistralCommonGoldenTests
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (JsonElement c in Golden().RootElement.EnumerateArray())
        {
            data.Add(c.GetProperty("name").GetString()!);
        }

        return data;
    }

    private static JsonDocument Golden() =>
        JsonDocument.Parse(File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "mistral-common", "golden.json")));

    [Theory]
    [MemberData(nameof(Cases))]
    public void Conversation_RendersAsMistralCommonDoes(string name)
    {
        using JsonDocument golden = Golden();
        JsonElement c = golden.RootElement.EnumerateArray().Single(e => e.GetProperty("name").GetString() == name);
        using var dir = new TestData.TempDirectory();
        MistralTokenizerVersion? forced = null;
        switch (c.GetProperty("version").GetString())
        {
            case "v1":
                File.WriteAllBytes(Path.Combine(dir.Path, "tokenizer.model"), TinyVocabularies.BuildCharSentencePiece(withControlPieces: false));
                break;
            case "v3sp":
                File.WriteAllBytes(Path.Combine(dir.Path, "tokenizer.model.v3"), TinyVocabularies.BuildCharSentencePiece(withControlPieces: true));
                break;
            case "v2":
                // No v2 tokeniser was released; the v3 byte tekken's vocabulary rendered in v2's format.
                TinyVocabularies.WriteByteTekken(dir.Path, "v3");
                forced = MistralTokenizerVersion.V2;
                break;
            case var version:
                TinyVocabularies.WriteByteTekken(dir.Path, version!);
                break;
        }

        MistralModelTokenizer tokenizer = MistralModelTokenizer.Load(dir.Path);
        MistralInstructFormatter formatter = forced is { } v ? new(tokenizer, v) : new(tokenizer);
        TrainingExample example = FineTuneJsonlReader.ParseLine(System.Text.Encoding.UTF8.GetBytes(c.GetProperty("line").GetString()!), "t.jsonl", 1, 0).Example!;

        TokenizedExample result = formatter.Format(example);

        Assert.Equal(c.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()), result.Tokens);
        Assert.Equal(c.GetProperty("mask").EnumerateArray().Select(m => m.GetBoolean()), result.LossMask);
    }
}
