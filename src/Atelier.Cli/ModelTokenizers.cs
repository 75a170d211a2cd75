using Atelier.Data.Tokenization;

namespace Atelier.Cli;

/// <summary>The tokeniser of a Mistral-format model directory: <c>tekken.json</c>, else SentencePiece <c>tokenizer.model</c>.</summary>
internal static class ModelTokenizers
{
    public static ITextTokenizer Load(DirectoryInfo model)
    {
        var tekken = Path.Combine(model.FullName, "tekken.json");
        if (File.Exists(tekken))
        {
            using var stream = File.OpenRead(tekken);
            return TiktokenTextTokenizer.LoadTekken(stream);
        }

        var sentencePiece = Path.Combine(model.FullName, "tokenizer.model");
        if (File.Exists(sentencePiece))
        {
            using var stream = File.OpenRead(sentencePiece);
            return SentencePieceTextTokenizer.Load(stream);
        }

        throw new CliException($"{model.FullName} has neither tekken.json nor tokenizer.model.");
    }
}
