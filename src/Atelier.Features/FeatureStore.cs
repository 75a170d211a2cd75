using System.Collections.Concurrent;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Features.Offline;
using Atelier.Features.Online;
using Atelier.Features.Schema;
using Atelier.Features.Storage;
using Atelier.Storage.Placement;
using BitFaster.Caching.Scheduler;

namespace Atelier.Features;

/// <summary>How a feature store is set up.</summary>
public sealed record FeatureStoreOptions
{
    /// <summary>The location segments and training sets are written to unless a request says otherwise.</summary>
    public string Location { get; init; } = "local";

    /// <summary>The policy of views that name none.</summary>
    public string DefaultPolicy { get; init; } = "default";

    /// <summary>How many (view, key) entries the online cache holds.</summary>
    public int CacheCapacity { get; init; } = 100_000;

    /// <summary>Runs the cache's maintenance; null for the thread pool. Tests pass a foreground one.</summary>
    public IScheduler? CacheScheduler { get; init; }

    /// <summary>The most rows one push may carry.</summary>
    public int MaxRowsPerPush { get; init; } = 100_000;
}

/// <summary>The outcome of a push or an ingest: the segment that now holds the rows.</summary>
/// <param name="View">The view name.</param>
/// <param name="Version">The view version.</param>
/// <param name="Rows">Rows written.</param>
/// <param name="Segment">The segment's number in the view's log.</param>
/// <param name="Location">Where it was placed.</param>
/// <param name="Sha256">The segment's hash.</param>
public sealed record PushResult(string View, int Version, long Rows, long Segment, string Location, string Sha256);

/// <summary>
/// The feature store: feature views (named, versioned, typed, with event times) whose rows arrive
/// by push or from per-example Parquet files into an append-only log of Parquet segments written
/// through the placement guard; an online store of the latest value per key behind a W-TinyLFU
/// cache; point-in-time correct offline retrieval; and materialisation of filtered training sets
/// into new dataset versions with lineage.
/// </summary>
public sealed partial class FeatureStore : IDisposable
{
    private readonly FeatureCatalog _catalog;
    private readonly PlacementGuard _guard;
    private readonly Func<IReadOnlyList<ResidencyPolicy>> _definedPolicies;
    private readonly FeatureStoreOptions _options;
    private readonly TimeProvider _clock;
    private readonly OnlineStore _online;
    private readonly ConcurrentDictionary<string, SemaphoreSlim> _viewLocks = new(StringComparer.Ordinal);
    // Orders CreateView's caching of a new latest version against GetView's caching of what it read
    // from the catalog, so an older read never replaces a newer latest (held only for the cache update).
    private readonly Lock _createLock = new();

    // Serialises CreateView's read of the latest version and its insert of the next one.
    private readonly SemaphoreSlim _createGate = new(1, 1);

    // View versions are immutable, and only CreateView changes which version is the latest, so
    // resolved views are kept here and the online hot path never reads the catalog.
    private readonly ConcurrentDictionary<(string Workspace, string Name, int Version), FeatureView> _views = new();

    /// <summary>Opens the store over the catalog's feature repository, the online rows and the guard.</summary>
    public FeatureStore(IFeatureRepository catalog, IOnlineFeatureRows onlineRows, PlacementGuard guard, IReadOnlyList<ResidencyPolicy> policies, FeatureStoreOptions options, TimeProvider clock)
        : this(catalog, onlineRows, guard, () => policies, options, clock)
    {
        ArgumentNullException.ThrowIfNull(policies);
    }

    /// <summary>
    /// Opens the store with the installation's policies as they stand at each use, so that policies
    /// the operator defines while the server runs can be chosen for views.
    /// </summary>
    /// <param name="catalog">View versions, segments and training sets.</param>
    /// <param name="onlineRows">Where the online store keeps the latest value per key.</param>
    /// <param name="guard">The only write path for bytes.</param>
    /// <param name="definedPolicies">The installation's residency policies, read at each use.</param>
    /// <param name="options">Locations, defaults, cache size and limits.</param>
    /// <param name="clock">The clock.</param>
    public FeatureStore(IFeatureRepository catalog, IOnlineFeatureRows onlineRows, PlacementGuard guard, Func<IReadOnlyList<ResidencyPolicy>> definedPolicies, FeatureStoreOptions options, TimeProvider clock)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(onlineRows);
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(definedPolicies);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(clock);
        _catalog = new FeatureCatalog(catalog);
        _guard = guard;
        _definedPolicies = definedPolicies;
        _options = options;
        _clock = clock;
        _online = new OnlineStore(onlineRows, options.CacheCapacity, options.CacheScheduler);
    }

    /// <summary>The online store.</summary>
    public OnlineStore Online => _online;

    /// <summary>The metadata tables.</summary>
    public FeatureCatalog Catalog => _catalog;

    /// <summary>
    /// Creates a view, or a new version of it when the schema differs from its latest version.
    /// Creating the same schema again returns the existing version (<c>Created</c> false).
    /// </summary>
    public async Task<(FeatureView View, bool Created)> CreateViewAsync(string workspace, FeatureViewSpec spec, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var policy = spec.Policy ?? _options.DefaultPolicy;
        ValidateSpec(spec, policy);
        await _createGate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var latest = await _catalog.FindViewAsync(workspace, spec.Name, null, cancellationToken).ConfigureAwait(false);
            if (latest is not null && latest.HasSameSchema(spec, policy))
            {
                return (latest, false);
            }

            var view = new FeatureView
            {
                Id = ResourceIds.NewUuid(_clock),
                Workspace = workspace,
                Name = spec.Name,
                Version = (latest?.Version ?? 0) + 1,
                EntityKey = spec.EntityKey,
                TimestampField = spec.TimestampField,
                Fields = [.. spec.Fields],
                Ttl = spec.Ttl,
                Source = spec.Source,
                Policy = policy,
                Description = spec.Description,
                CreatedAt = _clock.GetUtcNow(),
            };
            if (!await _catalog.TryInsertViewAsync(view, cancellationToken).ConfigureAwait(false))
            {
                throw new ConflictException($"Feature view '{spec.Name}' v{view.Version} was created concurrently; retry.");
            }

            lock (_createLock)
            {
                _views[(workspace, view.Name, 0)] = view;
            }

            return (view, true);
        }
        finally
        {
            _createGate.Release();
        }
    }

    /// <summary>The view <paramref name="name"/> at <paramref name="version"/> (latest when null); a not-found error otherwise.</summary>
    /// <remarks>Completes synchronously once the view was resolved before: the online hot path never reads the catalog.</remarks>
    public ValueTask<FeatureView> GetViewAsync(string workspace, string name, int? version = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(name);

        // Version 0 stands for "the latest".
        return _views.TryGetValue((workspace, name, version ?? 0), out var view)
            ? ValueTask.FromResult(view)
            : LoadViewAsync(workspace, name, version, cancellationToken);
    }

    private async ValueTask<FeatureView> LoadViewAsync(string workspace, string name, int? version, CancellationToken cancellationToken)
    {
        var key = (workspace, name, version ?? 0);
        var view = await _catalog.FindViewAsync(workspace, name, version, cancellationToken).ConfigureAwait(false)
            ?? throw new NotFoundException("feature view", version is null ? name : $"{name}@{version}");
        lock (_createLock)
        {
            // Under the lock, so a concurrent CreateView's newer latest is not overwritten by this older read.
            return _views.GetOrAdd(key, view);
        }
    }

    /// <summary>Every view version of a workspace.</summary>
    public async Task<IReadOnlyList<FeatureView>> ListViewsAsync(string workspace, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        return await _catalog.ListViewsAsync(workspace, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The committed segments of a view version's log.</summary>
    public Task<IReadOnlyList<FeatureSegment>> SegmentsAsync(FeatureView view, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(view);
        return _catalog.SegmentsAsync(view.Id, 0, cancellationToken);
    }

    /// <summary>
    /// Appends rows (column name to value; JSON elements or CLR values) to a view's log. Every row is
    /// checked against the schema first; one bad row refuses the batch, naming row and field, and
    /// nothing is written. The rows become one Parquet segment placed through the guard under the
    /// view's residency policy, then the online store takes them.
    /// </summary>
    public async Task<PushResult> PushAsync(string workspace, string view, int? version, IReadOnlyList<IReadOnlyDictionary<string, object?>> rows, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var target = await GetViewAsync(workspace, view, version, cancellationToken).ConfigureAwait(false);
        if (rows.Count == 0)
        {
            throw new BadRequestException("A push needs at least one row.", "invalid_feature_rows");
        }

        if (rows.Count > _options.MaxRowsPerPush)
        {
            throw new BadRequestException($"A push carries at most {_options.MaxRowsPerPush} rows; this one has {rows.Count}. Split it, or ingest a Parquet file.", "invalid_feature_rows");
        }

        var converted = FeatureRowValidator.Convert(target, rows);
        return await AppendAsync(target, converted, "push", actor, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Ingests a per-example feature Parquet file (as the data pipeline writes them) into a view's
    /// log: the view's columns are read, others ignored; rows without an event time take
    /// <paramref name="defaultEventTime"/> (e.g. the dataset version's creation time).
    /// </summary>
    public async Task<PushResult> IngestParquetAsync(string workspace, string view, int? version, Stream parquet, string sourceName, DateTimeOffset? defaultEventTime, string actor, CancellationToken cancellationToken)
    {
        var target = await GetViewAsync(workspace, view, version, cancellationToken).ConfigureAwait(false);
        var rows = await FeatureParquet.ReadAsync(target, parquet, sourceName, defaultEventTime, cancellationToken).ConfigureAwait(false);
        if (rows.Count == 0)
        {
            throw new BadRequestException($"'{sourceName}' has no rows.", "invalid_feature_rows");
        }

        var source = Path.GetFileName(sourceName);
        return await AppendAsync(target, rows, string.IsNullOrEmpty(source) ? "parquet" : "parquet:" + source, actor, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Ingests a Parquet file from a path.</summary>
    public async Task<PushResult> IngestParquetFileAsync(string workspace, string view, int? version, string path, DateTimeOffset? defaultEventTime, string actor, CancellationToken cancellationToken)
    {
        var stream = File.OpenRead(path);
        await using (stream.ConfigureAwait(false))
        {
            return await IngestParquetAsync(workspace, view, version, stream, path, defaultEventTime, actor, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The latest value of each key in a view, in the order asked.</summary>
    public async ValueTask<OnlineFeatureValue[]> GetOnlineAsync(string workspace, string view, int? version, IReadOnlyList<string> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        var target = await GetViewAsync(workspace, view, version, cancellationToken).ConfigureAwait(false);
        return await GetOnlineAsync(target, keys, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The latest value of each key in a resolved view (the hot path: no catalog read; synchronous when the cache answers).</summary>
    public ValueTask<OnlineFeatureValue[]> GetOnlineAsync(FeatureView view, IReadOnlyList<string> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keys);
        if (keys.Count > OnlineStore.MaxBatchKeys)
        {
            throw new BadRequestException($"An online lookup takes at most {OnlineStore.MaxBatchKeys} keys; this one has {keys.Count}.");
        }

        return _online.GetAsync(view, keys, cancellationToken);
    }

    private async Task<PushResult> AppendAsync(FeatureView view, List<FeatureRow> rows, string source, string actor, CancellationToken cancellationToken)
    {
        var policy = Policy(view.Policy);

        // Parquet needs the whole file before its footer; segments are bounded by MaxRowsPerPush.
        using var buffer = new MemoryStream();
        await FeatureParquet.WriteAsync(view, rows, buffer, cancellationToken).ConfigureAwait(false);
        var min = DateTimeOffset.MaxValue;
        var max = DateTimeOffset.MinValue;
        foreach (var row in rows)
        {
            min = row.EventTime < min ? row.EventTime : min;
            max = row.EventTime > max ? row.EventTime : max;
        }

        // One writer per view: segment numbers are dense and the online store applies them in order.
        var gate = _viewLocks.GetOrAdd(view.Id, static _ => new SemaphoreSlim(1, 1));
        await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var seq = await _catalog.NextSegmentSeqAsync(view.Id, cancellationToken).ConfigureAwait(false);
            var key = $"feature/{view.Id}/{seq:D10}.parquet";
            var artifact = new ArtifactRef("feature_view", view.Id, view.Workspace);
            PlacementReceipt receipt;
            var write = await _guard.BeginWriteAsync(artifact, policy, _options.Location, actor, key: key, cancellationToken: cancellationToken).ConfigureAwait(false);
            await using (write.ConfigureAwait(false))
            {
                await write.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), cancellationToken).ConfigureAwait(false);
                receipt = await write.CommitAsync(cancellationToken).ConfigureAwait(false);
            }

            var recorded = false;
            try
            {
                // Not cancellable: the blob is committed, and its row is what makes it part of the log.
                recorded = await _catalog.TryInsertSegmentAsync(
                    new FeatureSegment(view.Id, seq, receipt.LocationId, receipt.Key, rows.Count, receipt.Bytes, receipt.Sha256, min, max, source, _clock.GetUtcNow()),
                    CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                if (!recorded)
                {
                    // Without its row the blob is unreachable: take it back so nothing half-written stays.
                    await _guard.DeleteAsync(artifact, receipt.LocationId, actor, receipt.Key, CancellationToken.None).ConfigureAwait(false);
                }
            }

            if (!recorded)
            {
                // Under this view's gate only another process appending to the same view can take the number.
                throw new ConflictException($"Segment {seq} of feature view '{view.Name}' v{view.Version} was written concurrently; retry.");
            }

            await _online.ApplyAsync(view, seq, rows, CancellationToken.None).ConfigureAwait(false);
            return new PushResult(view.Name, view.Version, rows.Count, seq, receipt.LocationId, receipt.Sha256);
        }
        finally
        {
            gate.Release();
        }
    }

    /// <summary>Reads a view's log: every row with its ordinal, from segments whose earliest event is at or before <paramref name="notAfter"/>.</summary>
    internal async Task<List<(FeatureRow Row, long Ordinal)>> ReadLogAsync(FeatureView view, IReadOnlyList<FeatureSegment> segments, DateTimeOffset? notAfter, CancellationToken cancellationToken)
    {
        var result = new List<(FeatureRow, long)>();
        foreach (var segment in segments)
        {
            if (notAfter is { } t && segment.MinEventTime > t)
            {
                continue;
            }

            var rows = await ReadSegmentAsync(view, segment, cancellationToken).ConfigureAwait(false);
            for (var i = 0; i < rows.Count; i++)
            {
                result.Add((rows[i], OnlineStore.Ordinal(segment.Seq, i)));
            }
        }

        return result;
    }

    private async Task<List<FeatureRow>> ReadSegmentAsync(FeatureView view, FeatureSegment segment, CancellationToken cancellationToken)
    {
        var stream = await _guard.OpenReadAsync(segment.LocationId, segment.BlobKey, cancellationToken).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"Segment {segment.Seq} of feature view '{view.Name}' v{view.Version} is missing at location '{segment.LocationId}' ({segment.BlobKey}).");
        await using (stream.ConfigureAwait(false))
        {
            return await FeatureParquet.ReadAsync(view, stream, segment.BlobKey, null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Applies to the online store the committed segments it has not seen (a crash between a
    /// segment's commit and its online apply, or a new online file) and returns how many it applied.
    /// Run it once when the store opens, before it serves lookups or takes pushes.
    /// </summary>
    public async Task<int> CatchUpOnlineAsync(CancellationToken cancellationToken)
    {
        var applied = 0;
        foreach (var view in await _catalog.ListViewsAsync(null, cancellationToken).ConfigureAwait(false))
        {
            var watermark = await _online.WatermarkAsync(view.Id, cancellationToken).ConfigureAwait(false);
            foreach (var segment in await _catalog.SegmentsAsync(view.Id, watermark, cancellationToken).ConfigureAwait(false))
            {
                var rows = await ReadSegmentAsync(view, segment, cancellationToken).ConfigureAwait(false);
                await _online.ApplyAsync(view, segment.Seq, rows, cancellationToken).ConfigureAwait(false);
                applied++;
            }
        }

        return applied;
    }

    private ResidencyPolicy Policy(string name)
    {
        var defined = _definedPolicies();
        foreach (var policy in defined)
        {
            if (policy.Name == name)
            {
                return policy;
            }
        }

        throw new BadRequestException($"Residency policy '{name}' is not defined; defined: {string.Join(", ", defined.Select(p => p.Name))}.", "unknown_policy");
    }

    private void ValidateSpec(FeatureViewSpec spec, string policy)
    {
        var problems = new List<Core.Errors.Problem>();
        if (!IsName(spec.Name))
        {
            problems.Add(new("A view name is 1 to 64 letters, digits, '_' or '-', starting with a letter.", Field: "name"));
        }

        if (!IsColumn(spec.EntityKey))
        {
            problems.Add(new("The entity key must be a column name (letters, digits, '_', starting with a letter).", Field: "entity_key"));
        }

        if (!IsColumn(spec.TimestampField) || spec.TimestampField == spec.EntityKey)
        {
            problems.Add(new("The timestamp field must be a column name other than the entity key.", Field: "timestamp_field"));
        }

        if (spec.Fields is null || spec.Fields.Count == 0)
        {
            problems.Add(new("A view needs at least one field.", Field: "fields"));
        }
        else
        {
            var seen = new HashSet<string>(StringComparer.Ordinal) { spec.EntityKey, spec.TimestampField };
            for (var i = 0; i < spec.Fields.Count; i++)
            {
                var field = spec.Fields[i];
                var where = $"fields[{i}]";
                if (field is null || !IsColumn(field.Name))
                {
                    problems.Add(new("A field name is letters, digits and '_', starting with a letter, at most 64.", Field: where + ".name"));
                    continue;
                }

                if (!seen.Add(field.Name))
                {
                    problems.Add(new($"The name '{field.Name}' is used twice (or is the entity key or timestamp).", Field: where + ".name"));
                }

                if (!Enum.IsDefined(field.Type))
                {
                    problems.Add(new("Unknown type.", Field: where + ".type"));
                }
                else if (field.Type == FeatureType.Float32Vector ? field.Dimension is < 1 or > 65_536 : field.Dimension != 0)
                {
                    problems.Add(new(field.Type == FeatureType.Float32Vector ? "A vector field needs a dimension from 1 to 65536." : "Only vector fields have a dimension.", Field: where + ".dimension"));
                }
            }
        }

        if (spec.Ttl is { } ttl && ttl <= TimeSpan.Zero)
        {
            problems.Add(new("A TTL must be positive.", Field: "ttl"));
        }

        var defined = _definedPolicies();
        if (!defined.Any(p => p.Name == policy))
        {
            problems.Add(new($"Residency policy '{policy}' is not defined; defined: {string.Join(", ", defined.Select(p => p.Name))}.", Field: "policy"));
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException($"The feature view definition is not valid: {problems[0]}", problems, problems.Count, "invalid_feature_view");
        }
    }

    private static bool IsName(string? s) =>
        s is { Length: > 0 and <= 64 } && char.IsAsciiLetter(s[0]) && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    private static bool IsColumn(string? s) =>
        s is { Length: > 0 and <= 64 } && char.IsAsciiLetter(s[0]) && s.All(c => char.IsAsciiLetterOrDigit(c) || c == '_');

    /// <inheritdoc />
    public void Dispose()
    {
        _online.Dispose();
        _createGate.Dispose();
        foreach (var gate in _viewLocks.Values)
        {
            gate.Dispose();
        }
    }
}
