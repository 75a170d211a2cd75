using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;
using static Atelier.Data.Tests.Support.TinyVocabularies;

namespace Atelier.Data.Tests;

public sealed class MistralTokenizerFileTests : IDisposable
{
    private readonly TestData.TempDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    private void WriteSentencePiece(string name, bool withControlPieces = true) =>
        File.WriteAllBytes(Path.Combine(_dir.Path, name), BuildCharSentencePiece(withControlPieces));

    [Theory]
    [InlineData("tokenizer.model", MistralTokenizerVersion.V1)]
    [InlineData("tokenizer.model.v1", MistralTokenizerVersion.V1)]
    [InlineData("tokenizer.model.v2", MistralTokenizerVersion.V2)]
    [InlineData("tokenizer.model.v3", MistralTokenizerVersion.V3)]
    [InlineData("tokenizer.model.v7", MistralTokenizerVersion.V7)]
    [InlineData("tokenizer.model.v7m1", MistralTokenizerVersion.V7)]
    public void SentencePieceVersion_ComesFromTheFileName(string name, MistralTokenizerVersion expected)
    {
        WriteSentencePiece(name);

        MistralModelTokenizer tokenizer = MistralModelTokenizer.Load(_dir.Path);

        Assert.Equal(expected, tokenizer.Version);
        Assert.Equal(name, tokenizer.File.FileName);
        Assert.Equal(3 + V3ControlPieces.Length + 96, tokenizer.File.VocabularySize);
        Assert.Equal(tokenizer.VocabularySize, tokenizer.File.VocabularySize);
        Assert.Equal(3, tokenizer.Control.Inst);
    }

    [Fact]
    public void Directory_WithTokenizerModelAndV3_UsesV3_AndTekkenWinsOverBoth()
    {
        WriteSentencePiece("tokenizer.model");
        WriteSentencePiece("tokenizer.model.v3");

        Assert.Equal(["tokenizer.model.v3", "tokenizer.model"], MistralTokenizerFile.FindAll(_dir.Path));
        Assert.Equal(MistralTokenizerVersion.V3, MistralModelTokenizer.Load(_dir.Path).Version);

        WriteByteTekken(_dir.Path, "v7");
        Assert.Equal("tekken.json", MistralModelTokenizer.Load(_dir.Path).File.FileName);
    }

    [Fact]
    public void TekkenVersion_ComesFromItsConfig_AndItsVocabularyIsNWordsWithSpecials()
    {
        WriteByteTekken(_dir.Path, "v7");

        MistralModelTokenizer tokenizer = MistralModelTokenizer.Load(_dir.Path);

        Assert.Equal(MistralTokenizerVersion.V7, tokenizer.Version);
        Assert.Equal(TekkenSpecialCount + 256, tokenizer.File.VocabularySize);
        Assert.Equal((17, 18, 19, 20, 21), (tokenizer.Control.SystemPrompt, tokenizer.Control.EndSystemPrompt, tokenizer.Control.ToolContent, tokenizer.Control.Args, tokenizer.Control.CallId));
        Assert.EndsWith("/instruct-v7", tokenizer.Identity, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("v15")]
    [InlineData("v4")]
    public void TekkenOfAnUnsupportedVersion_IsRefusedNamingIt(string version)
    {
        WriteByteTekken(_dir.Path, version);

        var error = Assert.Throws<InvalidDataException>(() => MistralModelTokenizer.Load(_dir.Path));
        Assert.Contains(version, error.Message, StringComparison.Ordinal);
        Assert.Contains("tekken.json", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TekkenDeclaringMoreTokensThanItHolds_IsRefused()
    {
        WriteByteTekken(_dir.Path, "v7", vocabSize: 1000);

        var error = Assert.Throws<InvalidDataException>(() => MistralTokenizerFile.Inspect(Path.Combine(_dir.Path, "tekken.json")));
        Assert.Contains("1000", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TruncatedOrForeignSentencePieceFile_IsInvalidDataNotACrash()
    {
        byte[] model = BuildCharSentencePiece(withControlPieces: true);

        Assert.Throws<InvalidDataException>(() => MistralTokenizerFile.Inspect("tokenizer.model.v3", model.AsSpan(0, model.Length / 2)));
        Assert.Throws<InvalidDataException>(() => MistralTokenizerFile.Inspect("tokenizer.model.v3", [0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F]));
        Assert.Throws<InvalidDataException>(() => MistralTokenizerFile.Inspect("tokenizer.model", "not a model"u8));
    }

    [Theory]
    [InlineData("tekken.json", true)]
    [InlineData("tokenizer.model", true)]
    [InlineData("tokenizer.model.v3", true)]
    [InlineData("tokenizer.model.v11m2", true)]
    [InlineData("tokenizer.json", false)]
    [InlineData("tokenizer.model.v", false)]
    [InlineData("tokenizer.model.vx", false)]
    [InlineData("tokenizer.model.v3m", false)]
    [InlineData("tokenizer.model.bak", false)]
    public void TokenizerFileNames_AreThoseMistralCommonAccepts(string name, bool accepted) =>
        Assert.Equal(accepted, MistralTokenizerFile.IsTokenizerFileName(name));

    [Fact]
    public void Directory_WithoutATokenizer_NamesTheAcceptedFiles()
    {
        File.WriteAllText(Path.Combine(_dir.Path, "tokenizer.json"), "{}");

        var error = Assert.Throws<FileNotFoundException>(() => MistralModelTokenizer.Load(_dir.Path));
        Assert.Contains("tokenizer.model.v3", error.Message, StringComparison.Ordinal);
    }
}
