using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Placement;

namespace Atelier.Registry;

public sealed partial class ModelRegistry
{
    /// <summary>The blob key prefix of a base model's files: <c>model/&lt;id&gt;/</c>.</summary>
    public static string BaseKeyPrefix(string modelId) => $"model/{modelId}/";

    /// <summary>
    /// Imports a base model from a Mistral-format directory on this machine under one of the import
    /// roots (resolved with every link followed, see <see cref="ModelImportRoots"/>): validates it, copies each
    /// file through the placement guard to <c>model/&lt;id&gt;/&lt;file&gt;</c> at <paramref name="locationId"/>
    /// (judged against <paramref name="policy"/>, hashed, fsynced, audited), and only then registers the
    /// model. Any failure deletes what was copied, so no partial model is left.
    /// </summary>
    /// <param name="import">What to import.</param>
    /// <param name="policy">The residency policy of the model's bytes.</param>
    /// <param name="locationId">Where to place them.</param>
    /// <param name="actor">Who imports it (recorded in the audit log).</param>
    /// <param name="auditWorkspace">The importer's workspace id, for the audit log; the model itself is visible to every workspace.</param>
    /// <param name="ct">Cancellation.</param>
    /// <exception cref="ForbiddenException">The directory is not under an import root; the same message whether or not it exists.</exception>
    /// <exception cref="BadRequestException">The id or the directory path is invalid.</exception>
    /// <exception cref="ValidationFailedException">The directory is not a valid model; each problem names its file.</exception>
    /// <exception cref="ConflictException">A model or alias with that id exists, or is being imported.</exception>
    /// <exception cref="PlacementRefusedException">The policy forbids the location.</exception>
    public async Task<RegisteredModel> ImportBaseModelAsync(
        BaseModelImport import, ResidencyPolicy policy, string locationId, string actor, string auditWorkspace, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(import);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(locationId);

        // First, before anything that could tell one path outside the roots from another.
        var source = (_importRoots ?? throw new ForbiddenException("No import roots are configured (models.import_roots), so no model can be imported.")).Resolve(import.SourceDirectory);
        var id = import.Id ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(import.SourceDirectory)).ToLowerInvariant();
        ModelIds.ValidateBaseId(id, import.Id is null ? "the directory's name; pass a name" : "name");
        foreach (var alias in import.Aliases)
        {
            ModelIds.ValidateBaseId(alias, "alias");
        }

        if (import.MaxContextLength is <= 0)
        {
            throw new BadRequestException("max_context_length must be positive.", "invalid_request");
        }

        if (!_guard.Locations.Contains(locationId))
        {
            throw new BadRequestException($"No location '{locationId}' is configured; configured: {string.Join(", ", _guard.Locations.All.Select(l => l.Id))}.", "invalid_location");
        }

        var validated = ModelDirectoryValidator.Validate(source);
        if (!_importing.TryAdd(id, 0))
        {
            throw new ConflictException($"Model '{id}' is being imported right now.");
        }

        try
        {
            foreach (var name in import.Aliases.Prepend(id))
            {
                if (await ExistsAsync(name, ct).ConfigureAwait(false))
                {
                    throw new ConflictException($"A model or alias named '{name}' already exists.");
                }
            }

            // No row exists and this process holds the id, so any bytes under the prefix were left by a
            // crashed import: clear them so the keys can be written again.
            var prefix = BaseKeyPrefix(id);
            var stale = new List<string>();
            await foreach (var key in _guard.Locations.ListKeysAsync(locationId, prefix, ct).ConfigureAwait(false))
            {
                stale.Add(key);
            }

            foreach (var key in stale)
            {
                await _guard.DeleteAsync(new ArtifactRef("model", id, auditWorkspace), locationId, "system:recovery", key, ct).ConfigureAwait(false);
            }

            var artifacts = new List<ModelArtifact>(validated.Files.Count);
            RegisteredModel imported;
            try
            {
                foreach (var file in validated.Files)
                {
                    artifacts.Add(await CopyAsync(Path.Combine(source, file), file, id, prefix + file, policy, locationId, actor, auditWorkspace, ct).ConfigureAwait(false));
                }

                var model = new RegisteredModel
                {
                    Id = id,
                    WorkspaceId = null,
                    Kind = ModelKind.Base,
                    Name = import.Name ?? id,
                    Description = import.Description,
                    CreatedAt = _clock.GetUtcNow().ToUnixTimeSeconds(),
                    MaxContextLength = import.MaxContextLength ?? validated.MaxContextLength,
                    Capabilities = ModelCapabilities.Of(validated.Tokenizer),
                    Policy = policy.Name,
                    Artifacts = artifacts,
                    Aliases = import.Aliases,
                    Lineage = new ModelLineage { SourceDirectory = source },
                    OwnedBy = "atelier",
                    CreatedBy = actor,
                };

                // The row is the commit point: written after every byte is durable.
                if (!await _models.TryInsertAsync(ToRecord(model), CancellationToken.None).ConfigureAwait(false))
                {
                    throw new ConflictException($"A model or alias named '{id}' already exists.");
                }

                await AuditAsync("model_registered", auditWorkspace, actor, model, $"base model imported from {model.Lineage.SourceDirectory}").ConfigureAwait(false);
                imported = model;
            }
            catch
            {
                foreach (var artifact in artifacts)
                {
                    await _guard.DeleteAsync(new ArtifactRef("model", id, auditWorkspace), artifact.LocationId, actor, artifact.Key, CancellationToken.None).ConfigureAwait(false);
                }

                throw;
            }

            // After the catch above: the row is committed, so nothing from here may delete its bytes.
            // A base model is version 1 of its own id, a name every workspace sees.
            await RecordVersionAsync(imported, imported.Id, auditWorkspace).ConfigureAwait(false);
            return imported;
        }
        finally
        {
            _importing.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// Removes bytes under <c>model/</c> that no model row references: what a crash between an
    /// import's copies and its row leaves. Run at start-up, before any import.
    /// </summary>
    /// <returns>How many blobs were removed.</returns>
    public async Task<int> RemoveOrphanedBlobsAsync(string actor, CancellationToken ct)
    {
        var removed = 0;
        foreach (var location in _guard.Locations.OwnedHere.ToArray())
        {
            // Listed whole before deleting: a store need not keep a listing stable under deletions.
            var keys = new List<string>();
            await foreach (var key in _guard.Locations.ListKeysAsync(location.Id, "model/", ct).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            foreach (var key in keys)
            {
                var rest = key["model/".Length..];
                var slash = rest.IndexOf('/', StringComparison.Ordinal);
                var id = slash < 0 ? rest : rest[..slash];
                if (_importing.ContainsKey(id) || await ExistsAsync(id, ct).ConfigureAwait(false))
                {
                    continue;
                }

                await _guard.DeleteAsync(new ArtifactRef("model", id, "system"), location.Id, actor, key, ct).ConfigureAwait(false);
                removed++;
            }
        }

        return removed;
    }

    private async Task<ModelArtifact> CopyAsync(
        string source, string name, string id, string key, ResidencyPolicy policy, string locationId, string actor, string auditWorkspace, CancellationToken ct)
    {
        await using var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
        await using var write = await _guard.BeginWriteAsync(new ArtifactRef("model", id, auditWorkspace), policy, locationId, actor, key: key, cancellationToken: ct).ConfigureAwait(false);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int read;
            while ((read = await input.ReadAsync(buffer.AsMemory(0, 1 << 20), ct).ConfigureAwait(false)) > 0)
            {
                await write.WriteAsync(buffer.AsMemory(0, read), ct).ConfigureAwait(false);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        var receipt = await write.CommitAsync(ct).ConfigureAwait(false);
        return new ModelArtifact(name, receipt.LocationId, receipt.Key, receipt.Bytes, receipt.Sha256);
    }
}
