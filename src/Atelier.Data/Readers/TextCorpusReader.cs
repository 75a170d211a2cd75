using System.Text;
using Atelier.Data.Model;

namespace Atelier.Data.Readers;

/// <summary>
/// Reads a plain-text corpus as documents (see <see cref="TextDocumentSplit"/>), streaming line by
/// line. Invalid UTF-8 is reported with its line number; the document containing it is skipped.
/// </summary>
public static class TextCorpusReader
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Reads all documents and issues of <paramref name="stream"/>.</summary>
    public static IEnumerable<ReadResult> Read(Stream stream, string fileName, TextDocumentSplit split, long firstOrdinal = 0, int maxLineBytes = 64 << 20, int maxDocumentChars = 64 << 20)
    {
        ArgumentNullException.ThrowIfNull(stream);
        long ordinal = firstOrdinal;
        using var lines = new Utf8LineReader(stream, maxLineBytes);
        var document = new StringBuilder();
        long documentLine = 0;
        int documentBytes = 0;
        bool documentBroken = false;
        while (lines.TryReadLine(out ReadOnlyMemory<byte> line, out bool tooLong))
        {
            bool blank = !tooLong && line.Span.IndexOfAnyExcept((byte)' ', (byte)'\t') < 0;
            bool ends = split switch
            {
                TextDocumentSplit.Line => true,
                TextDocumentSplit.BlankLine => blank,
                _ => false,
            };

            if (!blank || split == TextDocumentSplit.WholeFile)
            {
                if (document.Length == 0 && !documentBroken)
                {
                    documentLine = lines.LineNumber;
                }

                if (tooLong)
                {
                    yield return new(null, new DataIssue(fileName, lines.LineNumber, null, $"line longer than {maxLineBytes} bytes"));
                    documentBroken = true;
                }
                else if (!documentBroken)
                {
                    string? text = TryDecode(line.Span);
                    if (text is null)
                    {
                        documentBroken = true;
                        yield return new(null, new DataIssue(fileName, lines.LineNumber, null, "invalid UTF-8"));
                    }

                    if (!documentBroken)
                    {
                        if (document.Length > 0)
                        {
                            document.Append('\n');
                        }

                        document.Append(text);
                        documentBytes += line.Length + 1;
                        if (document.Length > maxDocumentChars)
                        {
                            documentBroken = true;
                            yield return new(null, new DataIssue(fileName, documentLine, null, $"document longer than {maxDocumentChars} characters"));
                        }
                    }
                }

                if (split == TextDocumentSplit.Line)
                {
                    ends = true;
                }
            }

            if (ends)
            {
                if (Flush() is { } example)
                {
                    yield return new(example, null);
                }
            }
        }

        if (Flush() is { } last)
        {
            yield return new(last, null);
        }

        TrainingExample? Flush()
        {
            TrainingExample? example = null;
            if (!documentBroken && document.Length > 0)
            {
                example = new TrainingExample
                {
                    Ordinal = ordinal++,
                    SourceFile = fileName,
                    Line = documentLine,
                    Kind = ExampleKind.Text,
                    Text = document.ToString(),
                    SourceBytes = documentBytes,
                };
            }

            document.Clear();
            documentBroken = false;
            documentBytes = 0;
            return example;
        }
    }

    private static string? TryDecode(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }
}
