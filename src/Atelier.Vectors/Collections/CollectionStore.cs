using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Storage.Placement;

namespace Atelier.Vectors.Collections;

/// <summary>
/// The vector collections of every workspace: their catalog rows (through <see cref="ICollectionCatalog"/>) and the
/// open collections, each opened from its blobs on first use. Creation writes a small configuration blob
/// at each of the collection's locations through the placement guard, so a location the residency policy
/// forbids is refused (and audited) before the collection exists.
/// </summary>
public sealed class CollectionStore : IDisposable
{
    private const string RecoveryActor = "system:recovery";

    private readonly ICollectionCatalog _catalog;
    private readonly PlacementGuard _guard;
    private readonly ResidencyPolicyResolver _resolvePolicy;
    private readonly TimeProvider _clock;
    private readonly CollectionStoreOptions _options;
    private readonly ConcurrentDictionary<(string Workspace, string Name), Lazy<Task<VectorCollection>>> _open = new();
    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly Meter _meter;

    /// <summary>
    /// Opens the store. Call <see cref="RemoveOrphansAsync"/> once at start-up, before serving requests,
    /// to remove what a crash during a create or delete left.
    /// </summary>
    /// <param name="catalog">The catalog rows of the collections.</param>
    /// <param name="guard">The only path to write and delete bytes; its locations are where the collections live.</param>
    /// <param name="resolvePolicy">The residency policy of a collection, from the name it was created with.</param>
    /// <param name="clock">The clock that stamps and names new collections.</param>
    /// <param name="options">Tuning; the defaults when null.</param>
    public CollectionStore(ICollectionCatalog catalog, PlacementGuard guard, ResidencyPolicyResolver resolvePolicy, TimeProvider clock, CollectionStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(resolvePolicy);
        ArgumentNullException.ThrowIfNull(clock);
        _catalog = catalog;
        _guard = guard;
        _resolvePolicy = resolvePolicy;
        _clock = clock;
        _options = options ?? new CollectionStoreOptions();

        // One meter per store, disposed with it, so a closed store stops reporting; exporters subscribe by name.
        // The instrument names are those the embedding table published before it merged into collections.
        _meter = new Meter(VectorMetrics.MeterName);
        _meter.CreateObservableGauge("atelier.vectors.cache.hit_ratio", () => Measure<double>(c => c.VectorCache?.HitRatio), description: "Hit ratio of a collection's full-vector cache since it opened (collections with vectors on disk).");
        _meter.CreateObservableCounter("atelier.vectors.disk_reads", () => Measure<long>(c => c.VectorCache is null ? null : c.SegmentDiskReads), unit: "{vector}", description: "Full vectors read from segment files.");
        _meter.CreateObservableGauge("atelier.vectors.count", () => Measure<long>(c => c.Count), unit: "{vector}", description: "Live points in an open collection.");
    }

    /// <summary>Creates a collection; the configuration must already be validated against the request.</summary>
    /// <exception cref="ConflictException">A collection with that name exists in the workspace.</exception>
    /// <exception cref="PlacementRefusedException">The policy forbids one of the locations.</exception>
    public async Task<VectorCollection> CreateAsync(string workspace, string name, CollectionConfig config, string policyName, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(config);
        config.Validate();
        var policy = _resolvePolicy(policyName);
        var record = new CollectionRecord
        {
            Id = "col-" + ResourceIds.NewUuid(_clock),
            WorkspaceId = workspace,
            Name = name,
            Config = config,
            Policy = policyName,
            CreatedAt = _clock.GetUtcNow().ToUnixTimeSeconds(),
            CreatedBy = actor,
        };

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (await _catalog.FindAsync(workspace, name, cancellationToken).ConfigureAwait(false) is not null)
            {
                throw new ConflictException($"A collection named '{name}' already exists in this workspace.");
            }

            // The guard judges each location against the policy before anything else exists; a refusal is audited.
            var artifact = new ArtifactRef("collection", record.Id, workspace);
            var configJson = CollectionJson.SerializeToUtf8Bytes(record);
            var written = new List<string>();
            try
            {
                foreach (var location in config.Locations.Distinct(StringComparer.Ordinal))
                {
                    await using var write = await _guard.BeginWriteAsync(artifact, policy, location, actor, key: VectorCollection.KeyPrefix(record.Id) + "config.json", cancellationToken: cancellationToken).ConfigureAwait(false);
                    await write.WriteAsync(configJson, cancellationToken).ConfigureAwait(false);
                    await write.CommitAsync(cancellationToken).ConfigureAwait(false);
                    written.Add(location);
                }

                await _catalog.InsertAsync(record, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                foreach (var location in written)
                {
                    await _guard.DeleteAsync(artifact, location, actor, VectorCollection.KeyPrefix(record.Id) + "config.json", CancellationToken.None).ConfigureAwait(false);
                }

                throw;
            }

            var collection = await VectorCollection.OpenAsync(record, _guard, policy, _options, cancellationToken).ConfigureAwait(false);
            _open[(workspace, name)] = new Lazy<Task<VectorCollection>>(Task.FromResult(collection));
            return collection;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The collections of a workspace, by name.</summary>
    public Task<IReadOnlyList<CollectionRecord>> ListAsync(string workspace, CancellationToken cancellationToken) => _catalog.ListAsync(workspace, cancellationToken);

    /// <summary>The open collection <paramref name="name"/> of the workspace (opened from its blobs on first use).</summary>
    /// <exception cref="NotFoundException">No such collection in this workspace.</exception>
    public async Task<VectorCollection> GetAsync(string workspace, string name, CancellationToken cancellationToken)
    {
        if (_open.TryGetValue((workspace, name), out var open))
        {
            return await open.Value.ConfigureAwait(false);
        }

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        Lazy<Task<VectorCollection>> lazy;
        try
        {
            var record = await _catalog.FindAsync(workspace, name, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("collection", name);
            lazy = _open.GetOrAdd((workspace, name), _ => new Lazy<Task<VectorCollection>>(() =>
                VectorCollection.OpenAsync(record, _guard, _resolvePolicy(record.Policy), _options, CancellationToken.None)));
        }
        finally
        {
            _gate.Release();
        }

        try
        {
            return await lazy.Value.ConfigureAwait(false);
        }
        catch
        {
            // A collection that failed to open (an unreadable blob) is tried again by the next request.
            _open.TryRemove(new KeyValuePair<(string, string), Lazy<Task<VectorCollection>>>((workspace, name), lazy));
            throw;
        }
    }

    /// <summary>Deletes a collection: its catalog row, then its blobs at every location.</summary>
    /// <exception cref="NotFoundException">No such collection in this workspace.</exception>
    public async Task<CollectionRecord> DeleteAsync(string workspace, string name, string actor, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var record = await _catalog.FindAsync(workspace, name, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("collection", name);
            await _catalog.DeleteAsync(record.Id, cancellationToken).ConfigureAwait(false);

            if (_open.TryRemove((workspace, name), out var open) && open.IsValueCreated && open.Value.IsCompletedSuccessfully)
            {
                open.Value.Result.Dispose();
            }

            // Without the row the blobs are unreachable; a crash from here on leaves them to the orphan sweep.
            await DeleteBlobsAsync(record.Id, workspace, actor).ConfigureAwait(false);
            DeleteSegments(record.Id);
            return record;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var open in _open.Values)
        {
            if (open.IsValueCreated && open.Value.IsCompletedSuccessfully)
            {
                open.Value.Result.Dispose();
            }
        }

        _open.Clear();
        _meter.Dispose();
        _gate.Dispose();
    }

    /// <summary>One measurement per open collection that has the value, tagged with its id.</summary>
    private IEnumerable<Measurement<T>> Measure<T>(Func<VectorCollection, T?> value)
        where T : struct
    {
        foreach (var open in _open.Values)
        {
            if (open.IsValueCreated && open.Value.IsCompletedSuccessfully && value(open.Value.Result) is { } measured)
            {
                yield return new Measurement<T>(measured, new KeyValuePair<string, object?>("collection", open.Value.Result.Record.Id));
            }
        }
    }

    private async Task DeleteBlobsAsync(string id, string workspace, string actor)
    {
        var artifact = new ArtifactRef("collection", id, workspace);
        foreach (var location in _guard.Locations.All)
        {
            // Listed whole before deleting: a store need not keep a listing stable under deletions.
            var keys = new List<string>();
            await foreach (var key in _guard.Locations.ListKeysAsync(location.Id, VectorCollection.KeyPrefix(id), CancellationToken.None).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            foreach (var key in keys)
            {
                await _guard.DeleteAsync(artifact, location.Id, actor, key, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Removes the vector segment files of a collection (derived from its log, so nothing is lost).</summary>
    private void DeleteSegments(string id)
    {
        foreach (var root in _options.VectorSegmentDirectories)
        {
            if (Directory.Exists(Path.Combine(root, id)))
            {
                Directory.Delete(Path.Combine(root, id), recursive: true);
            }
        }
    }

    /// <summary>
    /// Removes the blobs and segment files of collections that have no catalog row (a crash during a
    /// create or a delete); returns how many blobs were removed. Run it once at start-up, before any
    /// request: it is only safe while nothing is creating or deleting a collection.
    /// </summary>
    public async Task<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        var known = await _catalog.AllIdsAsync(cancellationToken).ConfigureAwait(false);
        int removed = 0;
        foreach (var location in _guard.Locations.OwnedHere)
        {
            var keys = new List<string>();
            await foreach (var key in _guard.Locations.ListKeysAsync(location.Id, "collection/", cancellationToken).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            foreach (var key in keys)
            {
                var parts = key.Split('/');
                if (parts.Length >= 3 && !known.Contains(parts[1]))
                {
                    await _guard.DeleteAsync(new ArtifactRef("collection", parts[1], "system"), location.Id, RecoveryActor, key, cancellationToken).ConfigureAwait(false);
                    removed++;
                }
            }
        }

        // Segment files are rebuilt whenever a collection opens; those of a collection without a row are dead.
        foreach (var root in _options.VectorSegmentDirectories.Where(Directory.Exists))
        {
            foreach (var directory in Directory.EnumerateDirectories(root))
            {
                if (!known.Contains(Path.GetFileName(directory)))
                {
                    Directory.Delete(directory, recursive: true);
                }
            }
        }

        return removed;
    }
}
