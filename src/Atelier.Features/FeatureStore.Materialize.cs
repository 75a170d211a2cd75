using System.Globalization;
using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Features.Materialization;
using Atelier.Features.Offline;
using Atelier.Features.Schema;
using Atelier.Features.Storage;
using Atelier.Storage.Placement;

namespace Atelier.Features;

public sealed partial class FeatureStore
{
    /// <summary>
    /// Materialises a training set as a new dataset version: every entity of the spine view with a
    /// value as of <see cref="TrainingSetRequest.AsOf"/>, its features joined point-in-time, kept when
    /// it passes every filter, and one per cluster. Writes a Parquet of the example ids and features,
    /// then the manifest (lineage, query, policy) last, both through the placement guard under the
    /// intersection of the source views' residency policies; a bad request writes nothing.
    /// </summary>
    public async Task<TrainingSetManifest> MaterializeAsync(string workspace, TrainingSetRequest request, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (string.IsNullOrWhiteSpace(request.Name) || request.Name.Length > 64 || !request.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' or '.'))
        {
            throw new BadRequestException("A training set name is 1 to 64 letters, digits, '_', '-' or '.'.");
        }

        // Everything the query touches: output features, then filter, cluster and preference features.
        var all = new List<string>(request.Features);
        foreach (var filter in request.Filters)
        {
            all.Add(filter.Feature);
        }

        if (request.OnePer is not null)
        {
            all.Add(request.OnePer);
        }

        if (request.PreferHighest is not null)
        {
            all.Add(request.PreferHighest);
        }

        var resolved = await ResolveAsync(workspace, [.. all.Distinct(StringComparer.Ordinal)], cancellationToken).ConfigureAwait(false);
        var position = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < resolved.Columns.Count; i++)
        {
            position[resolved.Columns[i].Reference.ToString()] = i;
        }

        int Column(string reference) => position[FeatureReference.Parse(reference).ToString()];
        var filters = request.Filters.Select((f, i) => CompileFilter(f, i, Column(f.Feature), resolved.Columns[Column(f.Feature)])).ToArray();
        var clusterColumn = request.OnePer is null ? -1 : Column(request.OnePer);
        var preferColumn = request.PreferHighest is null ? -1 : Column(request.PreferHighest);
        if (preferColumn >= 0 && resolved.Columns[preferColumn].Field.Type is FeatureType.Float32Vector or FeatureType.String)
        {
            throw new BadRequestException($"prefer_highest needs an int64, float64 or bool feature; '{request.PreferHighest}' is {resolved.Columns[preferColumn].Field.TypeName}.");
        }

        if (clusterColumn >= 0 && resolved.Columns[clusterColumn].Field.Type == FeatureType.Float32Vector)
        {
            throw new BadRequestException($"one_per needs a scalar feature; '{request.OnePer}' is a vector.");
        }

        var policy = resolved.Views.Select(v => Policy(v.Policy)).Aggregate((a, b) => a.Intersect(b));
        var location = request.Location ?? _options.Location;
        if (!_guard.Locations.Contains(location))
        {
            throw new BadRequestException($"No location '{location}' is configured.");
        }

        // Lineage records the exact segments that could contribute, before reading them.
        var sources = new List<(FeatureView View, List<FeatureSegment> Segments)>(resolved.Views.Count);
        foreach (var v in resolved.Views)
        {
            var segments = await _catalog.SegmentsAsync(v.Id, 0, cancellationToken).ConfigureAwait(false);
            sources.Add((v, segments.Where(s => s.MinEventTime <= request.AsOf).ToList()));
        }

        var timelines = new Dictionary<string, ViewTimeline>(StringComparer.Ordinal);
        foreach (var (view, segments) in sources)
        {
            timelines[view.Id] = ViewTimeline.Build(await ReadLogAsync(view, segments, request.AsOf, cancellationToken).ConfigureAwait(false));
        }

        var spine = resolved.Views[0];
        var candidates = new List<(string Key, object?[] Values)>();
        foreach (var key in timelines[spine.Id].Keys)
        {
            if (!timelines[spine.Id].TryAsOf(key, request.AsOf, spine.Ttl, out _))
            {
                continue;
            }

            var values = new object?[resolved.Columns.Count];
            for (var c = 0; c < values.Length; c++)
            {
                var (view, index) = resolved.Sources[c];
                if (timelines[view.Id].TryAsOf(key, request.AsOf, view.Ttl, out var row))
                {
                    values[c] = row.Values[index];
                }
            }

            candidates.Add((key, values));
        }

        var passed = candidates.Where(c => filters.All(f => f(c.Values))).ToList();
        var selected = clusterColumn < 0 ? passed : OnePerCluster(passed, clusterColumn, preferColumn);
        selected.Sort(static (a, b) => string.CompareOrdinal(a.Key, b.Key));

        var outputCount = request.Features.Count;
        var outputColumns = request.Features.Select(f => resolved.Columns[Column(f)]).ToList();
        var outputIndexes = request.Features.Select(Column).ToArray();
        var table = new FeatureTable(
            spine.EntityKey,
            null,
            outputColumns,
            selected.ConvertAll(s =>
            {
                var values = new object?[outputCount];
                for (var i = 0; i < outputCount; i++)
                {
                    values[i] = s.Values[outputIndexes[i]];
                }

                return (s.Key, request.AsOf, values);
            }));

        var id = ResourceIds.NewUuid(_clock);
        var version = await _catalog.NextTrainingSetVersionAsync(workspace, request.Name, cancellationToken).ConfigureAwait(false);
        var artifact = new ArtifactRef("dataset", id, workspace);
        using var parquet = new MemoryStream();
        await table.WriteParquetAsync(parquet, cancellationToken).ConfigureAwait(false);
        var examples = await PlaceAsync(artifact, policy, location, actor, $"dataset/{id}/examples.parquet", parquet.GetBuffer().AsMemory(0, (int)parquet.Length), cancellationToken).ConfigureAwait(false);

        var manifest = new TrainingSetManifest
        {
            Id = id,
            Name = request.Name,
            Version = version,
            CreatedAt = _clock.GetUtcNow(),
            CreatedBy = actor,
            AsOf = request.AsOf,
            Query = new TrainingSetQuery(
                request.Features,
                request.Filters.Select(f => new RecordedFilter(f.Feature, f.Op, ValueText(f.Value))).ToArray(),
                request.OnePer,
                request.PreferHighest),
            Sources = sources.Select(s => new TrainingSetSource(
                s.View.Name, s.View.Version, s.View.Id, s.View.Policy,
                s.Segments.Select(g => new SourceSegment(g.Seq, g.BlobKey, g.Sha256, g.Rows)).ToArray())).ToArray(),
            Policy = policy,
            Location = location,
            Examples = new TrainingSetBlob(examples.Key, examples.Bytes, examples.Sha256),
            Columns = outputColumns.Select(c => c.Name).ToArray(),
            CandidateRows = candidates.Count,
            FilteredOut = candidates.Count - passed.Count,
            DeduplicatedOut = passed.Count - selected.Count,
            Rows = selected.Count,
        };

        // The manifest goes last: its presence is what makes the dataset version exist.
        var json = JsonSerializer.SerializeToUtf8Bytes(manifest, FeatureCatalog.Json);
        await PlaceAsync(artifact, policy, location, actor, $"dataset/{id}/manifest.json", json, cancellationToken).ConfigureAwait(false);
        if (!await _catalog.TryInsertTrainingSetAsync(workspace, manifest, CancellationToken.None).ConfigureAwait(false))
        {
            throw new ConflictException($"Training set '{request.Name}' v{version} was materialised concurrently; retry.");
        }

        return manifest;
    }

    /// <summary>A training set's manifest; a not-found error otherwise.</summary>
    public async Task<TrainingSetManifest> GetTrainingSetAsync(string workspace, string id, CancellationToken cancellationToken = default) =>
        await _catalog.FindTrainingSetAsync(workspace, id, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("training set", id);

    /// <summary>The training sets of a workspace, newest first.</summary>
    public async Task<IReadOnlyList<TrainingSetManifest>> ListTrainingSetsAsync(string workspace, CancellationToken cancellationToken = default) =>
        await _catalog.ListTrainingSetsAsync(workspace, cancellationToken).ConfigureAwait(false);

    /// <summary>Opens a committed blob of a training set (its Parquet or manifest).</summary>
    public async ValueTask<Stream> OpenTrainingSetBlobAsync(TrainingSetManifest manifest, string key, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return await _guard.OpenReadAsync(manifest.Location, key, cancellationToken).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"Blob '{key}' of training set {manifest.Id} is missing at location '{manifest.Location}'.");
    }

    private async Task<PlacementReceipt> PlaceAsync(ArtifactRef artifact, ResidencyPolicy policy, string location, string actor, string key, ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        var write = await _guard.BeginWriteAsync(artifact, policy, location, actor, key: key, cancellationToken: cancellationToken).ConfigureAwait(false);
        await using (write.ConfigureAwait(false))
        {
            await write.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
            return await write.CommitAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static List<(string Key, object?[] Values)> OnePerCluster(List<(string Key, object?[] Values)> rows, int clusterColumn, int preferColumn)
    {
        var best = new Dictionary<object, (string Key, object?[] Values)>();
        var result = new List<(string Key, object?[] Values)>();
        foreach (var row in rows)
        {
            if (row.Values[clusterColumn] is not { } cluster)
            {
                // No cluster id: the example is not a known duplicate of anything.
                result.Add(row);
                continue;
            }

            if (!best.TryGetValue(cluster, out var current) || Better(row, current, preferColumn))
            {
                best[cluster] = row;
            }
        }

        result.AddRange(best.Values);
        return result;
    }

    private static bool Better((string Key, object?[] Values) a, (string Key, object?[] Values) b, int preferColumn)
    {
        if (preferColumn >= 0)
        {
            var c = CompareNullsLow(a.Values[preferColumn], b.Values[preferColumn]);
            if (c != 0)
            {
                return c > 0;
            }
        }

        return string.CompareOrdinal(a.Key, b.Key) < 0;
    }

    private static int CompareNullsLow(object? a, object? b) => (a, b) switch
    {
        (null, null) => 0,
        (null, _) => -1,
        (_, null) => 1,
        _ => Compare(a, b),
    };

    private static int Compare(object a, object b) => (a, b) switch
    {
        (long x, long y) => x.CompareTo(y),
        (double x, double y) => x.CompareTo(y),
        (bool x, bool y) => x.CompareTo(y),
        (string x, string y) => string.CompareOrdinal(x, y),
        _ => throw new InvalidOperationException($"Cannot compare {a.GetType().Name} with {b.GetType().Name}."),
    };

    private static Func<object?[], bool> CompileFilter(FeatureFilter filter, int index, int columnIndex, FeatureColumn column)
    {
        var where = $"filters[{index}]";
        if (column.Field.Type == FeatureType.Float32Vector)
        {
            throw new BadRequestException($"{where}: '{filter.Feature}' is a vector; filters compare scalars.", "invalid_filter");
        }

        if (!FeatureRowValidator.TryConvert(column.Field, filter.Value, out var value, out var why) || value is null)
        {
            throw new BadRequestException($"{where}: the value for '{filter.Feature}' must be a {column.Field.TypeName}{(why is null ? "" : ": " + why)}.", "invalid_filter");
        }

        Func<int, bool> test = filter.Op switch
        {
            "gt" => c => c > 0,
            "gte" => c => c >= 0,
            "lt" => c => c < 0,
            "lte" => c => c <= 0,
            "eq" => c => c == 0,
            "ne" => c => c != 0,
            _ => throw new BadRequestException($"{where}: unknown op '{filter.Op}'; use gt, gte, lt, lte, eq or ne.", "invalid_filter"),
        };
        return values => values[columnIndex] is { } v && test(Compare(v, value));
    }

    private static string? ValueText(object? value) => value switch
    {
        null => null,
        JsonElement e => e.ValueKind == JsonValueKind.String ? e.GetString() : e.GetRawText(),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };
}
