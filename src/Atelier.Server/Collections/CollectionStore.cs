using System.Collections.Concurrent;
using System.Text.Json;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Microsoft.Data.Sqlite;

namespace Atelier.Server.Collections;

/// <summary>Tuning of the collection store.</summary>
public sealed record CollectionStoreOptions
{
    /// <summary>
    /// A shard's log is folded into a new snapshot once it holds more bytes than this and than the last
    /// snapshot (so snapshots cost amortised linear time in what is written).
    /// </summary>
    public long MinSnapshotLogBytes { get; init; } = 8L << 20;
}

/// <summary>
/// The vector collections of every workspace: their catalog rows (table <c>vector_collections</c>) and the
/// open collections, each opened from its blobs on first use. Creation writes a small configuration blob
/// at each of the collection's locations through the placement guard, so a location the residency policy
/// forbids is refused (and audited) before the collection exists.
/// </summary>
public sealed class CollectionStore : IDisposable
{
    private const string RecoveryActor = "system:recovery";

    private readonly AtelierRuntime _runtime;
    private readonly CollectionStoreOptions _options;
    private readonly ConcurrentDictionary<(string Workspace, string Name), Lazy<Task<VectorCollection>>> _open = new();
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>Opens the store and removes blobs of collections that have no catalog row (a crash during create or delete).</summary>
    public CollectionStore(AtelierRuntime runtime, CollectionStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        _runtime = runtime;
        _options = options ?? new CollectionStoreOptions();
        RemovedOrphans = RemoveOrphans();
    }

    /// <summary>Blobs of deleted or never-created collections removed when the store opened.</summary>
    public int RemovedOrphans { get; }

    /// <summary>Creates a collection; the configuration must already be validated against the request.</summary>
    /// <exception cref="ConflictException">A collection with that name exists in the workspace.</exception>
    /// <exception cref="PlacementRefusedException">The policy forbids one of the locations.</exception>
    public async Task<VectorCollection> CreateAsync(string workspace, string name, CollectionConfig config, string policyName, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(config);
        var policy = _runtime.ResolvePolicy(policyName);
        var record = new CollectionRecord
        {
            Id = "col-" + ResourceIds.NewUuid(_runtime.Clock),
            WorkspaceId = workspace,
            Name = name,
            Config = config,
            Policy = policyName,
            CreatedAt = _runtime.Clock.GetUtcNow().ToUnixTimeSeconds(),
            CreatedBy = actor,
        };

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (Find(workspace, name) is not null)
            {
                throw new ConflictException($"A collection named '{name}' already exists in this workspace.");
            }

            // The guard judges each location against the policy before anything else exists; a refusal is audited.
            var artifact = new ArtifactRef("collection", record.Id, workspace);
            var configJson = JsonSerializer.SerializeToUtf8Bytes(record, AtelierJson.Options);
            var written = new List<string>();
            try
            {
                foreach (var location in config.Locations.Distinct(StringComparer.Ordinal))
                {
                    await using var write = await _runtime.Guard.BeginWriteAsync(artifact, policy, location, actor, key: VectorCollection.KeyPrefix(record.Id) + "config.json", cancellationToken: cancellationToken).ConfigureAwait(false);
                    await write.WriteAsync(configJson, cancellationToken).ConfigureAwait(false);
                    await write.CommitAsync(cancellationToken).ConfigureAwait(false);
                    written.Add(location);
                }

                Insert(record);
            }
            catch
            {
                foreach (var location in written)
                {
                    await _runtime.Guard.DeleteAsync(artifact, location, actor, VectorCollection.KeyPrefix(record.Id) + "config.json", CancellationToken.None).ConfigureAwait(false);
                }

                throw;
            }

            var collection = await VectorCollection.OpenAsync(record, _runtime.Guard, policy, _options, cancellationToken).ConfigureAwait(false);
            _open[(workspace, name)] = new Lazy<Task<VectorCollection>>(Task.FromResult(collection));
            return collection;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>The collections of a workspace, by name.</summary>
    public IReadOnlyList<CollectionRecord> List(string workspace)
    {
        using var connection = _runtime.Catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, workspace_id, name, config_json, policy, created_at, created_by FROM vector_collections WHERE workspace_id = $w ORDER BY name";
        command.Parameters.AddWithValue("$w", workspace);
        return ReadAll(command);
    }

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
            var record = Find(workspace, name) ?? throw new NotFoundException("collection", name);
            lazy = _open.GetOrAdd((workspace, name), _ => new Lazy<Task<VectorCollection>>(() =>
                VectorCollection.OpenAsync(record, _runtime.Guard, _runtime.ResolvePolicy(record.Policy), _options, CancellationToken.None)));
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
            var record = Find(workspace, name) ?? throw new NotFoundException("collection", name);
            using (var connection = _runtime.Catalog.Open())
            using (var command = connection.CreateCommand())
            {
                command.CommandText = "DELETE FROM vector_collections WHERE id = $id";
                command.Parameters.AddWithValue("$id", record.Id);
                command.ExecuteNonQuery();
            }

            if (_open.TryRemove((workspace, name), out var open) && open.IsValueCreated && open.Value.IsCompletedSuccessfully)
            {
                open.Value.Result.Dispose();
            }

            // Without the row the blobs are unreachable; a crash from here on leaves them to the orphan sweep.
            await DeleteBlobsAsync(record.Id, workspace, actor).ConfigureAwait(false);
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
        _gate.Dispose();
    }

    private CollectionRecord? Find(string workspace, string name)
    {
        using var connection = _runtime.Catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, workspace_id, name, config_json, policy, created_at, created_by FROM vector_collections WHERE workspace_id = $w AND name = $n";
        command.Parameters.AddWithValue("$w", workspace);
        command.Parameters.AddWithValue("$n", name);
        var rows = ReadAll(command);
        return rows.Count == 0 ? null : rows[0];
    }

    private void Insert(CollectionRecord record)
    {
        using var connection = _runtime.Catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO vector_collections(id, workspace_id, name, config_json, policy, created_at, created_by)
            VALUES ($id, $w, $n, $c, $p, $t, $by)
            """;
        command.Parameters.AddWithValue("$id", record.Id);
        command.Parameters.AddWithValue("$w", record.WorkspaceId);
        command.Parameters.AddWithValue("$n", record.Name);
        command.Parameters.AddWithValue("$c", JsonSerializer.Serialize(record.Config, AtelierJson.Options));
        command.Parameters.AddWithValue("$p", record.Policy);
        command.Parameters.AddWithValue("$t", record.CreatedAt);
        command.Parameters.AddWithValue("$by", record.CreatedBy);
        command.ExecuteNonQuery();
    }

    private static List<CollectionRecord> ReadAll(SqliteCommand command)
    {
        var rows = new List<CollectionRecord>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            rows.Add(new CollectionRecord
            {
                Id = reader.GetString(0),
                WorkspaceId = reader.GetString(1),
                Name = reader.GetString(2),
                Config = JsonSerializer.Deserialize<CollectionConfig>(reader.GetString(3), AtelierJson.Options)!,
                Policy = reader.GetString(4),
                CreatedAt = reader.GetInt64(5),
                CreatedBy = reader.GetString(6),
            });
        }

        return rows;
    }

    private HashSet<string> AllIds()
    {
        using var connection = _runtime.Catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM vector_collections";
        var ids = new HashSet<string>(StringComparer.Ordinal);
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            ids.Add(reader.GetString(0));
        }

        return ids;
    }

    private async Task DeleteBlobsAsync(string id, string workspace, string actor)
    {
        var artifact = new ArtifactRef("collection", id, workspace);
        foreach (var location in _runtime.Locations.All)
        {
            foreach (var key in _runtime.Locations.ListKeys(location.Id, VectorCollection.KeyPrefix(id)).ToArray())
            {
                await _runtime.Guard.DeleteAsync(artifact, location.Id, actor, key, CancellationToken.None).ConfigureAwait(false);
            }
        }
    }

    private int RemoveOrphans()
    {
        // Runs while the server starts, before any request: nothing is creating or deleting a collection.
        var known = AllIds();
        int removed = 0;
        foreach (var location in _runtime.Locations.All)
        {
            foreach (var key in _runtime.Locations.ListKeys(location.Id, "collection/").ToArray())
            {
                var parts = key.Split('/');
                if (parts.Length >= 3 && !known.Contains(parts[1]))
                {
                    _runtime.Guard.DeleteAsync(new ArtifactRef("collection", parts[1], "unknown"), location.Id, RecoveryActor, key).AsTask().GetAwaiter().GetResult();
                    removed++;
                }
            }
        }

        return removed;
    }
}
