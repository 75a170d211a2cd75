using Atelier.Data.Model;
using Parquet;
using Parquet.Schema;

namespace Atelier.Data.Readers;

/// <summary>
/// Reads a Parquet corpus one row group at a time (memory is one row group of the text column),
/// yielding each non-null row of the text column as a document. The "line" of an example is its
/// 1-based row number in the file.
/// </summary>
public static class ParquetCorpusReader
{
    /// <summary>Reads all documents and issues of <paramref name="stream"/> (which must be seekable).</summary>
    public static async IAsyncEnumerable<ReadResult> ReadAsync(Stream stream, string fileName, string textColumn, long firstOrdinal = 0, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ParquetReader reader;
        string? openError = null;
        try
        {
            reader = await ParquetReader.CreateAsync(stream, null, leaveStreamOpen: true, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            reader = null!;
            openError = "not a readable Parquet file: " + e.Message;
        }

        if (openError is not null)
        {
            yield return new(null, new DataIssue(fileName, 0, null, openError));
            yield break;
        }

        await using (reader.ConfigureAwait(false))
        {
            DataField? field = reader.Schema.GetDataFields().FirstOrDefault(f => f.Name == textColumn);
            if (field is null || field.IsArray || (field.ClrType != typeof(string) && field.ClrType != typeof(ReadOnlyMemory<char>) && field.ClrType != typeof(ReadOnlyMemory<byte>)))
            {
                string columns = string.Join(", ", reader.Schema.GetDataFields().Select(f => $"{f.Name}:{f.ClrType.Name}"));
                yield return new(null, new DataIssue(fileName, 0, textColumn, $"no string column with this name (columns: {columns})"));
                yield break;
            }

            long ordinal = firstOrdinal;
            long rowBase = 0;
            for (int group = 0; group < reader.RowGroupCount; group++)
            {
                using ParquetRowGroupReader rowGroup = reader.OpenRowGroupReader(group);
                int rows = checked((int)rowGroup.RowCount);
                string?[] values = new string?[rows];
                await rowGroup.ReadAsync(field, values.AsMemory(), null, cancellationToken).ConfigureAwait(false);
                for (int i = 0; i < rows; i++)
                {
                    string? text = values[i];
                    if (text is null)
                    {
                        yield return new(null, new DataIssue(fileName, rowBase + i + 1, textColumn, "null text"));
                        continue;
                    }

                    if (text.Length == 0)
                    {
                        continue;
                    }

                    yield return new(new TrainingExample
                    {
                        Ordinal = ordinal++,
                        SourceFile = fileName,
                        Line = rowBase + i + 1,
                        Kind = ExampleKind.Text,
                        Text = text,
                        SourceBytes = System.Text.Encoding.UTF8.GetByteCount(text),
                    }, null);
                }

                rowBase += rows;
            }
        }
    }
}
