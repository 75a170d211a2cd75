using Atelier.Core.Errors;
using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;

namespace Atelier.Training.Checkpoints;

public sealed partial class CheckpointStore
{
    /// <summary>
    /// Deletes a checkpoint everywhere, then frees the chunks no other checkpoint references.
    /// The manifests go first: a crash in between leaves only unreferenced chunks, which the next
    /// sweep (or <see cref="RecoverAsync"/>) removes. Returns false when there was no such checkpoint.
    /// </summary>
    public async Task<bool> DeleteAsync(string jobId, long step, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var deleted = await DeleteManifestsAsync(jobId, step).ConfigureAwait(false);
            if (deleted.Count > 0)
            {
                await SweepQuietlyAsync(deleted).ConfigureAwait(false);
            }

            return deleted.Count > 0;
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>
    /// Keeps the job's last <see cref="RetentionPolicy.KeepLast"/> checkpoints and its
    /// <see cref="RetentionPolicy.KeepBest"/> lowest by validation loss (those without one never
    /// count as best), deletes the rest as <see cref="DeleteAsync"/> does, and returns the steps deleted.
    /// </summary>
    public async Task<IReadOnlyList<long>> ApplyRetentionAsync(string jobId, RetentionPolicy retention, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(retention);
        ArgumentOutOfRangeException.ThrowIfLessThan(retention.KeepLast, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(retention.KeepBest);
        ValidateJobId(jobId);
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            // Listed under the gate, so no persist commits between the choice and the deletions.
            var all = await ListAsync(jobId, cancellationToken).ConfigureAwait(false);
            var keep = new HashSet<long>(all.OrderByDescending(c => c.Step).Take(retention.KeepLast).Select(c => c.Step));
            keep.UnionWith(all.Where(c => c.Metrics.ValidLoss is { } loss && double.IsFinite(loss))
                .OrderBy(c => c.Metrics.ValidLoss!.Value).ThenByDescending(c => c.Step)
                .Take(retention.KeepBest).Select(c => c.Step));

            var deletedSteps = new List<long>();
            var touched = new HashSet<string>(StringComparer.Ordinal);
            foreach (var checkpoint in all)
            {
                if (keep.Contains(checkpoint.Step))
                {
                    continue;
                }

                touched.UnionWith(await DeleteManifestsAsync(jobId, checkpoint.Step).ConfigureAwait(false));
                deletedSteps.Add(checkpoint.Step);
            }

            if (touched.Count > 0)
            {
                await SweepQuietlyAsync([.. touched]).ConfigureAwait(false);
            }

            return deletedSteps;
        }
        finally
        {
            _mutation.Release();
        }
    }

    /// <summary>
    /// Start-up recovery, before training resumes: removes partial writes left in the checkpoint
    /// locations by a crash (call it before other writers start on those locations), and sweeps
    /// chunks that no committed manifest references (torn saves, interrupted deletions).
    /// </summary>
    public async Task<CheckpointRecoveryReport> RecoverAsync(CancellationToken cancellationToken = default)
    {
        await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var partial = 0;
            var chunks = 0;
            long bytes = 0;
            var skipped = new List<string>();
            // Only the locations no other node writes: on a shared one, chunks not referenced yet
            // may be another node's save in progress (what a crash leaves there stays; decision 0020).
            var owned = _guard.Locations.OwnedHere.Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
            foreach (var location in _options.Locations.Where(owned.Contains))
            {
                partial += await _chunks.RemovePartialWritesAsync(location, cancellationToken).ConfigureAwait(false);
                var (sweep, skip) = await SweepAsync(location, cancellationToken).ConfigureAwait(false);
                chunks += sweep.Chunks;
                bytes += sweep.Bytes;
                if (skip is not null)
                {
                    skipped.Add($"{location}: {skip}");
                }
            }

            return new CheckpointRecoveryReport(partial, chunks, bytes, skipped);
        }
        finally
        {
            _mutation.Release();
        }
    }

    // Deletes the manifest of (job, step) at every location holding it; returns those locations.
    private async Task<List<string>> DeleteManifestsAsync(string jobId, long step)
    {
        // Another node's drive is that node's to change: its copy is left there.
        var locations = (await LocationsHoldingAsync(jobId, step, CancellationToken.None).ConfigureAwait(false)).Where(l => !_guard.Locations.IsElsewhere(l)).ToList();
        var workspace = "system";
        var (manifest, _) = await LoadManifestAsync(jobId, step, locations, CancellationToken.None).ConfigureAwait(false);
        if (manifest is not null)
        {
            workspace = manifest.Workspace;
        }

        var artifact = new ArtifactRef("checkpoint", CheckpointManifest.IdOf(jobId, step), workspace);
        foreach (var location in locations)
        {
            // Not cancellable: half a deletion is a worse state than a finished one.
            await _guard.DeleteAsync(artifact, location, _options.Actor, CheckpointManifest.KeyOf(jobId, step), CancellationToken.None).ConfigureAwait(false);
        }

        return locations;
    }

    /// <summary>
    /// Mark and sweep at one location: the live set is every chunk named by any committed
    /// checkpoint manifest there (of every job: chunks are shared across jobs). An unreadable
    /// manifest makes the live set unknowable, so the sweep is skipped rather than guessing.
    /// Callers hold <see cref="_mutation"/>.
    /// </summary>
    private async Task<(ChunkSweepResult Result, string? Skipped)> SweepAsync(string location, CancellationToken cancellationToken)
    {
        var live = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var key in _guard.Locations.ListKeysAsync(location, CheckpointManifest.KeyPrefix, cancellationToken).ConfigureAwait(false))
        {
            var (manifest, problem) = await ReadManifestAsync(location, key, cancellationToken).ConfigureAwait(false);
            if (manifest is null)
            {
                return (default, $"manifest '{key}' is damaged ({problem}); not sweeping, so no chunk it may reference is lost");
            }

            foreach (var entry in manifest.Entries)
            {
                live.UnionWith(entry.Chunks);
            }
        }

        return (await _chunks.SweepAsync(location, live, _options.Actor, cancellationToken).ConfigureAwait(false), null);
    }

    // Best effort: what a failed sweep leaves is found by the next one, at the latest in RecoverAsync.
    private async Task SweepQuietlyAsync(IReadOnlyList<string> locations)
    {
        // Not where another node also writes: its save in progress has chunks no manifest names yet.
        foreach (var location in locations.Where(l => !_guard.Locations.IsShared(l) && !_guard.Locations.IsElsewhere(l)))
        {
            try
            {
                await SweepAsync(location, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or StorageUnavailableException or UnauthorizedAccessException)
            {
                // Left for the next sweep.
            }
        }
    }
}
