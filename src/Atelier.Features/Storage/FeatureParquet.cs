using Atelier.Features.Schema;
using Parquet.Schema;
using Parquet.Serialization;

namespace Atelier.Features.Storage;

/// <summary>
/// The Parquet form of feature rows, readable by pandas, pyarrow and Feast's file source: the
/// entity key as a string column, the event time as <c>TIMESTAMP(MICROS, UTC)</c>, each feature as
/// a nullable column of its type, and vectors as <c>list&lt;float&gt;</c>.
/// </summary>
public static class FeatureParquet
{
    /// <summary>The Parquet schema of a view's rows.</summary>
    public static ParquetSchema Schema(FeatureView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        var fields = new List<Field>(view.Fields.Count + 2)
        {
            new DataField<string>(view.EntityKey, false),
            new DateTimeDataField(view.TimestampField, DateTimeFormat.Timestamp, isAdjustedToUTC: true, unit: DateTimeTimeUnit.Micros, isNullable: false),
        };
        foreach (var field in view.Fields)
        {
            fields.Add(Column(field.Name, field));
        }

        return new ParquetSchema(fields);
    }

    /// <summary>A nullable Parquet column for a feature of <paramref name="field"/>'s type, named <paramref name="name"/>.</summary>
    public static Field Column(string name, FeatureField field)
    {
        ArgumentNullException.ThrowIfNull(field);
        return field.Type switch
        {
            FeatureType.Int64 => new DataField<long?>(name),
            FeatureType.Float64 => new DataField<double?>(name),
            FeatureType.String => new DataField<string>(name, true),
            FeatureType.Bool => new DataField<bool?>(name),
            FeatureType.Float32Vector => new ListField(name, new DataField<float>("element")),
            _ => throw new ArgumentOutOfRangeException(nameof(field), field.Type, null),
        };
    }

    /// <summary>The value as the untyped serializer wants it (vectors as lists).</summary>
    public static object? ToParquetValue(object? value) => value is float[] vector ? new List<float>(vector) : value;

    /// <summary>Writes <paramref name="rows"/> of <paramref name="view"/> as one Parquet file.</summary>
    public static async Task WriteAsync(FeatureView view, IReadOnlyList<FeatureRow> rows, Stream output, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(rows);
        var records = new List<IDictionary<string, object?>>(rows.Count);
        foreach (var row in rows)
        {
            var record = new Dictionary<string, object?>(view.Fields.Count + 2)
            {
                [view.EntityKey] = row.EntityKey,
                [view.TimestampField] = row.EventTime.UtcDateTime,
            };
            for (var i = 0; i < view.Fields.Count; i++)
            {
                if (row.Values[i] is { } v)
                {
                    record[view.Fields[i].Name] = ToParquetValue(v)!;
                }
            }

            records.Add(record);
        }

        await ParquetSerializer.SerializeUntypedAsync(records, Schema(view), output, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads a Parquet file into rows of <paramref name="view"/>. Columns the view does not know are
    /// ignored (a per-example file carries more than one view's features); known columns of the wrong
    /// type fail with the row and field. Rows without an event time take <paramref name="defaultEventTime"/> when given.
    /// </summary>
    public static async Task<List<FeatureRow>> ReadAsync(FeatureView view, Stream input, string source, DateTimeOffset? defaultEventTime, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(input);
        Stream seekable = input;
        if (!input.CanSeek)
        {
            // Parquet's footer is at the end, so the reader needs to seek.
            var copy = new MemoryStream();
            await input.CopyToAsync(copy, cancellationToken).ConfigureAwait(false);
            copy.Position = 0;
            seekable = copy;
        }

        Parquet.Serialization.DeserializationResult<Dictionary<string, object>> result;
        try
        {
            result = await ParquetSerializer.DeserializeUntypedAsync(seekable, cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidDataException or Parquet.ParquetException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new Core.Errors.BadRequestException($"'{source}' is not a readable Parquet file: {e.Message}", "invalid_parquet");
        }

        var known = new HashSet<string>(view.Fields.Select(f => f.Name), StringComparer.Ordinal) { view.EntityKey, view.TimestampField };
        var rows = new List<IReadOnlyDictionary<string, object?>>(result.Data.Count);
        foreach (var data in result.Data)
        {
            var record = new Dictionary<string, object?>(known.Count, StringComparer.Ordinal);
            foreach (var (name, value) in data)
            {
                if (known.Contains(name))
                {
                    record[name] = value;
                }
            }

            if (defaultEventTime is { } t && !record.ContainsKey(view.TimestampField))
            {
                record[view.TimestampField] = t;
            }

            rows.Add(record);
        }

        return FeatureRowValidator.Convert(view, rows, source);
    }
}
