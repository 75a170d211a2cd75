using Atelier.Features.Schema;
using Atelier.Features.Storage;
using Parquet.Schema;
using Parquet.Serialization;

namespace Atelier.Features.Offline;

/// <summary>A column of a feature table: its name in the output and the feature it holds.</summary>
/// <param name="Name">The output column name.</param>
/// <param name="Reference">The feature reference it came from.</param>
/// <param name="Field">The feature's type.</param>
public sealed record FeatureColumn(string Name, FeatureReference Reference, FeatureField Field);

/// <summary>
/// Rows of an entity key, a timestamp and feature values: what point-in-time retrieval and
/// materialisation produce. Writes itself as Parquet (entity key, timestamp, one nullable column per feature).
/// </summary>
public sealed class FeatureTable
{
    /// <summary>Creates a table.</summary>
    public FeatureTable(string keyColumn, string? timestampColumn, IReadOnlyList<FeatureColumn> columns, List<(string Key, DateTimeOffset Timestamp, object?[] Values)> rows)
    {
        KeyColumn = keyColumn;
        TimestampColumn = timestampColumn;
        Columns = columns;
        Rows = rows;
    }

    /// <summary>The name of the entity key column.</summary>
    public string KeyColumn { get; }

    /// <summary>The name of the timestamp column; null when the table has none.</summary>
    public string? TimestampColumn { get; }

    /// <summary>The feature columns.</summary>
    public IReadOnlyList<FeatureColumn> Columns { get; }

    /// <summary>The rows: key, timestamp, one value (or null) per column.</summary>
    public List<(string Key, DateTimeOffset Timestamp, object?[] Values)> Rows { get; }

    /// <summary>Output column names for <paramref name="references"/>: the bare feature name when no other view has it, else <c>view__feature</c>.</summary>
    public static string[] ColumnNames(IReadOnlyList<FeatureReference> references)
    {
        ArgumentNullException.ThrowIfNull(references);
        var names = new string[references.Count];
        for (var i = 0; i < references.Count; i++)
        {
            var clash = false;
            for (var j = 0; j < references.Count; j++)
            {
                clash |= j != i && references[j].Feature == references[i].Feature;
            }

            names[i] = clash ? $"{references[i].View}__{references[i].Feature}" : references[i].Feature;
        }

        return names;
    }

    /// <summary>Writes the table as one Parquet file.</summary>
    public async Task WriteParquetAsync(Stream output, CancellationToken cancellationToken)
    {
        var fields = new List<Field> { new DataField<string>(KeyColumn, false) };
        if (TimestampColumn is not null)
        {
            fields.Add(new DateTimeDataField(TimestampColumn, DateTimeFormat.Timestamp, isAdjustedToUTC: true, unit: DateTimeTimeUnit.Micros, isNullable: false));
        }

        foreach (var column in Columns)
        {
            fields.Add(FeatureParquet.Column(column.Name, column.Field));
        }

        var records = new List<IDictionary<string, object?>>(Rows.Count);
        foreach (var (key, timestamp, values) in Rows)
        {
            var record = new Dictionary<string, object?>(Columns.Count + 2) { [KeyColumn] = key };
            if (TimestampColumn is not null)
            {
                record[TimestampColumn] = timestamp.UtcDateTime;
            }

            for (var i = 0; i < Columns.Count; i++)
            {
                if (values[i] is { } v)
                {
                    record[Columns[i].Name] = FeatureParquet.ToParquetValue(v)!;
                }
            }

            records.Add(record);
        }

        await ParquetSerializer.SerializeUntypedAsync(records, new ParquetSchema(fields), output, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The rows as JSON-friendly dictionaries (column name to value).</summary>
    public IEnumerable<Dictionary<string, object?>> ToRecords()
    {
        foreach (var (key, timestamp, values) in Rows)
        {
            var record = new Dictionary<string, object?>(Columns.Count + 2) { [KeyColumn] = key };
            if (TimestampColumn is not null)
            {
                record[TimestampColumn] = timestamp;
            }

            for (var i = 0; i < Columns.Count; i++)
            {
                record[Columns[i].Name] = values[i];
            }

            yield return record;
        }
    }
}
