using System.Buffers;
using System.Text;
using Atelier.Data.Model;

namespace Atelier.Data;

/// <summary>Options of the normalisation stage.</summary>
public sealed record NormalizationOptions
{
    /// <summary>Compose to Unicode NFC.</summary>
    public bool Nfc { get; init; } = true;

    /// <summary>Remove control characters (C0 except tab and newline, DEL, C1, BOM, and other format chars that are never text).</summary>
    public bool RemoveControlCharacters { get; init; } = true;

    /// <summary>Turn <c>\r\n</c> and lone <c>\r</c> into <c>\n</c>, and exotic spaces (NBSP, en/em spaces...) into a space.</summary>
    public bool NormalizeWhitespace { get; init; } = true;

    /// <summary>Remove spaces and tabs at the end of each line.</summary>
    public bool TrimTrailingWhitespace { get; init; } = true;

    /// <summary>Collapse runs of spaces inside a line into one (off by default: it breaks code indentation).</summary>
    public bool CollapseSpaces { get; init; }

    /// <summary>Longest run of consecutive newlines kept (2 keeps one blank line); 0 keeps all.</summary>
    public int MaxConsecutiveNewlines { get; init; } = 3;

    /// <summary>Remove leading and trailing whitespace of each text.</summary>
    public bool Trim { get; init; } = true;
}

/// <summary>
/// The normalisation stage: NFC, control characters, whitespace. Pure and thread-safe; applied to
/// every text and message content of an example. An example that normalises to nothing is
/// reported as an issue by the pipeline.
/// </summary>
public sealed class TextNormalizer
{
    // Characters the slow path removes or replaces: C0 controls but tab and newline, DEL, C1,
    // exotic spaces and invisible format characters.
    private static readonly SearchValues<char> Suspicious = SearchValues.Create(BuildSuspicious());

    private readonly NormalizationOptions _options;
    private readonly string? _newlineRun;

    /// <summary>Creates a normaliser.</summary>
    public TextNormalizer(NormalizationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _newlineRun = options.MaxConsecutiveNewlines > 0 ? new string('\n', options.MaxConsecutiveNewlines + 1) : null;
    }

    /// <summary>Normalises one text; returns the same instance when nothing changed.</summary>
    public string Normalize(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (_options.Nfc)
        {
            text = UnicodeNfc.Normalize(text);
        }

        if (!NeedsCleanup(text))
        {
            return text;
        }

        var builder = new StringBuilder(text.Length);
        int newlines = 0;
        bool lastWasSpace = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (_options.NormalizeWhitespace)
            {
                if (c == '\r')
                {
                    if (i + 1 < text.Length && text[i + 1] == '\n')
                    {
                        continue;
                    }

                    c = '\n';
                }
                else if (IsExoticSpace(c))
                {
                    c = ' ';
                }
            }

            if (_options.RemoveControlCharacters && IsRemovableControl(c))
            {
                continue;
            }

            if (c == '\n')
            {
                if (_options.TrimTrailingWhitespace)
                {
                    TrimEndSpaces(builder);
                }

                newlines++;
                lastWasSpace = false;
                if (_options.MaxConsecutiveNewlines > 0 && newlines > _options.MaxConsecutiveNewlines)
                {
                    continue;
                }

                builder.Append('\n');
                continue;
            }

            if (c == ' ' && _options.CollapseSpaces && lastWasSpace)
            {
                continue;
            }

            lastWasSpace = c == ' ';
            newlines = 0;
            builder.Append(c);
        }

        if (_options.TrimTrailingWhitespace)
        {
            TrimEndSpaces(builder);
        }

        string result = builder.ToString();
        return _options.Trim ? result.Trim() : result;
    }

    /// <summary>Normalises every text of an example.</summary>
    public TrainingExample Normalize(TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        if (example.Kind == ExampleKind.Text)
        {
            string text = Normalize(example.Text!);
            return ReferenceEquals(text, example.Text) ? example : example with { Text = text };
        }

        IReadOnlyList<ChatMessage> messages = example.Messages!;
        ChatMessage[]? changed = null;
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i];
            if (message.Content is null)
            {
                continue;
            }

            string content = Normalize(message.Content);
            if (!ReferenceEquals(content, message.Content))
            {
                changed ??= [.. messages];
                changed[i] = message with { Content = content };
            }
        }

        return changed is null ? example : example with { Messages = changed };
    }

    private bool NeedsCleanup(string text)
    {
        ReadOnlySpan<char> span = text;
        if (span.IsEmpty)
        {
            return false;
        }

        if (_options.Trim && (char.IsWhiteSpace(span[0]) || char.IsWhiteSpace(span[^1])))
        {
            return true;
        }

        // One vectorised scan for anything the slow path could change; the rest are substring searches.
        if (span.IndexOfAny(Suspicious) >= 0)
        {
            return true;
        }

        if (_options.TrimTrailingWhitespace && (span.Contains(" \n", StringComparison.Ordinal) || span.Contains("\t\n", StringComparison.Ordinal)))
        {
            return true;
        }

        if (_options.CollapseSpaces && span.Contains("  ", StringComparison.Ordinal))
        {
            return true;
        }

        return _newlineRun is not null && span.Contains(_newlineRun, StringComparison.Ordinal);
    }

    private static void TrimEndSpaces(StringBuilder builder)
    {
        int end = builder.Length;
        while (end > 0 && (builder[end - 1] == ' ' || builder[end - 1] == '\t'))
        {
            end--;
        }

        builder.Length = end;
    }

    private static string BuildSuspicious()
    {
        var chars = new StringBuilder();
        for (int c = 0; c < 0x10000; c++)
        {
            if (c != '\n' && c != '\t' && (IsExoticSpace((char)c) || IsRemovableControl((char)c) || c == '\r'))
            {
                chars.Append((char)c);
            }
        }

        return chars.ToString();
    }

    private static bool IsExoticSpace(char c) =>
        c is '\u00A0' or '\u1680' or (>= '\u2000' and <= '\u200A') or '\u202F' or '\u205F' or '\u3000' or '\u2028' or '\u2029' or '\u0085';

    private static bool IsRemovableControl(char c) =>
        (c < 0x20 && c != '\n' && c != '\t')
        || (c >= 0x7F && c <= 0x9F && c != '\u0085')
        || c is '\uFEFF' or '\u200B' or '\u00AD' or '\uFFFE' or '\uFFFF';
}
