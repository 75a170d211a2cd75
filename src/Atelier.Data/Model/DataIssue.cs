namespace Atelier.Data.Model;

/// <summary>
/// A problem found in an input, with where it is. Invalid examples become issues in the build
/// report; they are never dropped silently.
/// </summary>
/// <param name="File">The source file name.</param>
/// <param name="Line">The 1-based line (or Parquet row); 0 for a whole-file problem.</param>
/// <param name="Field">The JSON path of the offending field, or null.</param>
/// <param name="Message">What is wrong, in words.</param>
public sealed record DataIssue(string File, long Line, string? Field, string Message)
{
    /// <inheritdoc />
    public override string ToString() =>
        Field is null ? $"{File}:{Line}: {Message}" : $"{File}:{Line}: {Field}: {Message}";
}
