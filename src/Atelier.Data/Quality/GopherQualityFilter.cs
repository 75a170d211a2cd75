namespace Atelier.Data.Quality;

/// <summary>
/// Thresholds of the Gopher-style quality rules (Rae et al. 2021, "Scaling Language Models",
/// appendix A). Defaults are the paper's.
/// </summary>
public sealed record QualityOptions
{
    /// <summary>Whether failing examples are dropped (scores are always recorded as features).</summary>
    public bool Enabled { get; init; }

    /// <summary>Fewest words.</summary>
    public int MinWords { get; init; } = 50;

    /// <summary>Most words.</summary>
    public int MaxWords { get; init; } = 100_000;

    /// <summary>Smallest mean word length.</summary>
    public double MinMeanWordLength { get; init; } = 3;

    /// <summary>Largest mean word length.</summary>
    public double MaxMeanWordLength { get; init; } = 10;

    /// <summary>Largest ratio of <c>#</c> and ellipsis symbols to words.</summary>
    public double MaxSymbolToWordRatio { get; init; } = 0.1;

    /// <summary>Largest fraction of lines starting with a bullet.</summary>
    public double MaxBulletLineFraction { get; init; } = 0.9;

    /// <summary>Largest fraction of lines ending with an ellipsis.</summary>
    public double MaxEllipsisLineFraction { get; init; } = 0.3;

    /// <summary>Smallest fraction of words holding an alphabetic character.</summary>
    public double MinAlphabeticWordFraction { get; init; } = 0.8;

    /// <summary>Fewest English stop words (the, be, to, of, and, that, have, with); 0 turns the rule off for non-English corpora.</summary>
    public int MinStopWords { get; init; } = 2;

    /// <summary>Largest fraction of lines that duplicate an earlier line.</summary>
    public double MaxDuplicateLineFraction { get; init; } = 0.3;
}

/// <summary>The quality signals of one text.</summary>
public readonly record struct QualityScores(
    int WordCount,
    double MeanWordLength,
    double SymbolToWordRatio,
    double BulletLineFraction,
    double EllipsisLineFraction,
    double AlphabeticWordFraction,
    int StopWordCount,
    double DuplicateLineFraction);

/// <summary>Computes <see cref="QualityScores"/> and applies the Gopher rules. Pure and thread-safe.</summary>
public sealed class GopherQualityFilter
{
    private static readonly string[] StopWords = ["the", "be", "to", "of", "and", "that", "have", "with"];

    /// <summary>Creates the filter.</summary>
    public GopherQualityFilter(QualityOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        Options = options;
    }

    /// <summary>The options.</summary>
    public QualityOptions Options { get; }

    /// <summary>Computes the scores of a text (words are whitespace-separated, as in the paper).</summary>
    public static QualityScores Score(ReadOnlySpan<char> text)
    {
        int words = 0, wordChars = 0, alphabeticWords = 0, symbols = 0, stopWords = 0;
        int i = 0;
        while (i < text.Length)
        {
            while (i < text.Length && char.IsWhiteSpace(text[i]))
            {
                i++;
            }

            int start = i;
            bool alphabetic = false;
            while (i < text.Length && !char.IsWhiteSpace(text[i]))
            {
                alphabetic |= char.IsLetter(text[i]);
                i++;
            }

            if (i > start)
            {
                ReadOnlySpan<char> word = text[start..i];
                words++;
                wordChars += word.Length;
                alphabeticWords += alphabetic ? 1 : 0;
                symbols += word.Count('#');
                symbols += word.Count('…');
                symbols += CountOccurrences(word, "...");
                if (word.Length is >= 2 and <= 4)
                {
                    foreach (string stop in StopWords)
                    {
                        if (word.Equals(stop, StringComparison.OrdinalIgnoreCase))
                        {
                            stopWords++;
                            break;
                        }
                    }
                }
            }
        }

        int lines = 0, bullets = 0, ellipses = 0, duplicates = 0;
        // Lines are compared by a 64-bit hash: a collision would only miscount one duplicate.
        var seen = new HashSet<ulong>();
        foreach (Range range in text.Split('\n'))
        {
            ReadOnlySpan<char> line = text[range].Trim();
            if (line.IsEmpty)
            {
                continue;
            }

            lines++;
            if (line[0] is '•' or '-' or '*' or '●' or '◦' or '▪' or '‣')
            {
                bullets++;
            }

            if (line.EndsWith("...", StringComparison.Ordinal) || line.EndsWith("…", StringComparison.Ordinal))
            {
                ellipses++;
            }

            if (!seen.Add(System.IO.Hashing.XxHash3.HashToUInt64(System.Runtime.InteropServices.MemoryMarshal.AsBytes(line))))
            {
                duplicates++;
            }
        }

        return new QualityScores(
            words,
            words == 0 ? 0 : (double)wordChars / words,
            words == 0 ? 0 : (double)symbols / words,
            lines == 0 ? 0 : (double)bullets / lines,
            lines == 0 ? 0 : (double)ellipses / lines,
            words == 0 ? 0 : (double)alphabeticWords / words,
            stopWords,
            lines == 0 ? 0 : (double)duplicates / lines);
    }

    /// <summary>Returns the first rule the scores break, or null when they pass.</summary>
    public string? FirstFailedRule(in QualityScores scores)
    {
        QualityOptions o = Options;
        if (scores.WordCount < o.MinWords)
        {
            return "too_few_words";
        }

        if (scores.WordCount > o.MaxWords)
        {
            return "too_many_words";
        }

        if (scores.MeanWordLength < o.MinMeanWordLength || scores.MeanWordLength > o.MaxMeanWordLength)
        {
            return "mean_word_length";
        }

        if (scores.SymbolToWordRatio > o.MaxSymbolToWordRatio)
        {
            return "symbol_to_word_ratio";
        }

        if (scores.BulletLineFraction > o.MaxBulletLineFraction)
        {
            return "bullet_lines";
        }

        if (scores.EllipsisLineFraction > o.MaxEllipsisLineFraction)
        {
            return "ellipsis_lines";
        }

        if (scores.AlphabeticWordFraction < o.MinAlphabeticWordFraction)
        {
            return "alphabetic_words";
        }

        if (scores.StopWordCount < o.MinStopWords)
        {
            return "stop_words";
        }

        return scores.DuplicateLineFraction > o.MaxDuplicateLineFraction ? "duplicate_lines" : null;
    }

    private static int CountOccurrences(ReadOnlySpan<char> text, string value)
    {
        int count = 0;
        int index;
        while ((index = text.IndexOf(value, StringComparison.Ordinal)) >= 0)
        {
            count++;
            text = text[(index + value.Length)..];
        }

        return count;
    }
}
