using Atelier.Core.Errors;
using Atelier.Features.Offline;
using Atelier.Features.Schema;

namespace Atelier.Features;

public sealed partial class FeatureStore
{
    /// <summary>The most entity rows one historical retrieval takes.</summary>
    public const int MaxEntityRows = 1_000_000;

    /// <summary>
    /// Point-in-time correct retrieval, as Feast's <c>get_historical_features</c>: each entity row is
    /// joined, per requested feature, with the latest value of its view whose event time is at or
    /// before the row's timestamp (and within the view's TTL, when it has one). A value from after
    /// the row's timestamp is never joined; a key with no such value gets null. Rows keep their order.
    /// </summary>
    /// <param name="workspace">The caller's workspace.</param>
    /// <param name="entities">The entity dataframe.</param>
    /// <param name="features">Feature references, <c>view:feature</c> or <c>view@version:feature</c>.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    public async Task<FeatureTable> GetHistoricalAsync(string workspace, IReadOnlyList<EntityRow> entities, IReadOnlyList<string> features, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entities);
        ArgumentNullException.ThrowIfNull(features);
        if (entities.Count == 0 || entities.Count > MaxEntityRows)
        {
            throw new BadRequestException($"A historical retrieval takes 1 to {MaxEntityRows} entity rows; this one has {entities.Count}.");
        }

        var resolved = await ResolveAsync(workspace, features, cancellationToken).ConfigureAwait(false);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        var latest = DateTimeOffset.MinValue;
        foreach (var entity in entities)
        {
            keys.Add(entity.EntityKey);
            latest = entity.Timestamp > latest ? entity.Timestamp : latest;
        }

        var timelines = await LoadTimelinesAsync(resolved, keys, latest, cancellationToken).ConfigureAwait(false);
        var rows = new List<(string, DateTimeOffset, object?[])>(entities.Count);
        foreach (var entity in entities)
        {
            var values = new object?[resolved.Columns.Count];
            for (var c = 0; c < resolved.Columns.Count; c++)
            {
                var (view, index) = resolved.Sources[c];
                if (timelines[view.Id].TryAsOf(entity.EntityKey, entity.Timestamp, view.Ttl, out var row))
                {
                    values[c] = row.Values[index];
                }
            }

            rows.Add((entity.EntityKey, entity.Timestamp, values));
        }

        return new FeatureTable(resolved.Views[0].EntityKey, "event_timestamp", resolved.Columns, rows);
    }

    private async Task<Dictionary<string, ViewTimeline>> LoadTimelinesAsync(ResolvedFeatures resolved, IReadOnlySet<string>? keys, DateTimeOffset notAfter, CancellationToken cancellationToken)
    {
        var timelines = new Dictionary<string, ViewTimeline>(StringComparer.Ordinal);
        foreach (var view in resolved.Views)
        {
            // Segments whose earliest event is after the latest requested time cannot contribute.
            var segments = await _catalog.SegmentsAsync(view.Id, 0, cancellationToken).ConfigureAwait(false);
            var log = await ReadLogAsync(view, segments, notAfter, cancellationToken).ConfigureAwait(false);
            timelines[view.Id] = ViewTimeline.Build(log, keys);
        }

        return timelines;
    }

    private async Task<ResolvedFeatures> ResolveAsync(string workspace, IReadOnlyList<string> features, CancellationToken cancellationToken)
    {
        if (features.Count == 0)
        {
            throw new BadRequestException("Name at least one feature, as 'view:feature'.", "invalid_feature_reference");
        }

        var references = features.Select(FeatureReference.Parse).ToArray();
        var names = FeatureTable.ColumnNames(references);
        var views = new List<Schema.FeatureView>();
        var columns = new List<FeatureColumn>(references.Length);
        var sources = new List<(Schema.FeatureView, int)>(references.Length);
        foreach (var (reference, name) in references.Zip(names))
        {
            var view = views.FirstOrDefault(v => v.Name == reference.View && (reference.Version is null || v.Version == reference.Version))
                ?? await GetViewAsync(workspace, reference.View, reference.Version, cancellationToken).ConfigureAwait(false);
            if (!views.Contains(view))
            {
                if (views.Any(v => v.Name == view.Name))
                {
                    throw new BadRequestException($"Feature view '{view.Name}' is referenced at two versions; use one.", "invalid_feature_reference");
                }

                views.Add(view);
            }

            var index = view.IndexOf(reference.Feature);
            if (index < 0)
            {
                throw new BadRequestException(
                    $"Feature view '{view.Name}' v{view.Version} has no feature '{reference.Feature}'; it has {string.Join(", ", view.Fields.Select(f => f.Name))}.",
                    "unknown_feature");
            }

            columns.Add(new FeatureColumn(name, reference, view.Fields[index]));
            sources.Add((view, index));
        }

        return new ResolvedFeatures(views, columns, sources);
    }

    private sealed record ResolvedFeatures(List<Schema.FeatureView> Views, List<FeatureColumn> Columns, List<(Schema.FeatureView View, int Index)> Sources);

    /// <summary>Reads an entity dataframe from Parquet: a key column and a timestamp column.</summary>
    public static async Task<List<EntityRow>> ReadEntityRowsAsync(Stream parquet, string keyColumn, string timestampColumn, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(parquet);
        var view = new FeatureView
        {
            Id = "entity-dataframe",
            Workspace = "",
            Name = "entity_dataframe",
            Version = 1,
            EntityKey = keyColumn,
            TimestampField = timestampColumn,
            Fields = [],
            Source = FeatureSourceKind.Parquet,
            Policy = "",
            CreatedAt = default,
        };
        var rows = await Storage.FeatureParquet.ReadAsync(view, parquet, "entity dataframe", null, cancellationToken).ConfigureAwait(false);
        return rows.ConvertAll(r => new EntityRow(r.EntityKey, r.EventTime));
    }
}
