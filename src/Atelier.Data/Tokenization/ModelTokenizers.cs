namespace Atelier.Data.Tokenization;

/// <summary>The tokeniser of a Mistral-format model directory: <c>tekken.json</c>, else SentencePiece <c>tokenizer.model</c>.</summary>
public static class ModelTokenizers
{
    /// <summary>Loads the directory's tokeniser.</summary>
    /// <exception cref="FileNotFoundException">The directory has neither file.</exception>
    public static ITextTokenizer Load(string directory)
    {
        var tekken = Path.Combine(directory, "tekken.json");
        if (File.Exists(tekken))
        {
            using var stream = File.OpenRead(tekken);
            return TiktokenTextTokenizer.LoadTekken(stream);
        }

        var sentencePiece = Path.Combine(directory, "tokenizer.model");
        if (File.Exists(sentencePiece))
        {
            using var stream = File.OpenRead(sentencePiece);
            return SentencePieceTextTokenizer.Load(stream);
        }

        throw new FileNotFoundException($"{directory} has neither tekken.json nor tokenizer.model.", tekken);
    }
}
