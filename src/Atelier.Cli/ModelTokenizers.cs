using Atelier.Data.Tokenization;

namespace Atelier.Cli;

/// <summary>A model directory's tokeniser, with a missing one reported as a usage error.</summary>
internal static class ModelTokenizerLoader
{
    public static ITextTokenizer Load(DirectoryInfo model)
    {
        try
        {
            return ModelTokenizers.Load(model.FullName);
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException)
        {
            throw new CliException(e.Message);
        }
    }
}
