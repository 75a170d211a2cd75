using System.Collections.Concurrent;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Chunks;
using Atelier.Storage.Placement;

namespace Atelier.Training.Checkpoints;

public sealed partial class CheckpointStore
{
    private async Task<CheckpointPersistResult> PersistAsync(CheckpointJob job, long step, DateTimeOffset createdAt, CheckpointMetrics metrics, CheckpointSnapshot snapshot, CancellationToken cancellationToken)
    {
        var started = _clock.GetTimestamp();
        var id = CheckpointManifest.IdOf(job.JobId, step);
        var artifact = new ArtifactRef("checkpoint", id, job.Workspace);
        var manifestKey = CheckpointManifest.KeyOf(job.JobId, step);
        var policy = job.Policy;
        try
        {
            await _mutation.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var (allowed, refused) = await PlanLocationsAsync(artifact, policy, manifestKey).ConfigureAwait(false);

                var outcomes = new List<CheckpointLocationOutcome>();
                var committed = new List<LocationDescriptor>();
                var failed = new List<string>();
                Exception? firstFailure = null;
                byte[]? manifestBytes = null;
                CheckpointManifest? manifest = null;
                foreach (var location in allowed)
                {
                    if (policy.RequireOnPrem && !location.OnPrem && !committed.Exists(c => c.OnPrem))
                    {
                        // Every on-prem copy failed: a cloud copy now would make the checkpoint
                        // cloud-only, which the guard would refuse anyway.
                        outcomes.Add(new CheckpointLocationOutcome(location.Id, false, 0, 0, 0, 0, "skipped: no on-prem copy was committed, and the policy forbids a cloud-only checkpoint"));
                        continue;
                    }

                    var counters = new LocationCounters();
                    try
                    {
                        await WriteChunksAsync(artifact, policy, location.Id, committed, snapshot, counters, cancellationToken).ConfigureAwait(false);
                        if (manifestBytes is null)
                        {
                            manifest = BuildManifest(job, step, createdAt, metrics, snapshot);
                            manifestBytes = manifest.Serialize();
                        }

                        // The commit point: the manifest goes last, by atomic rename, after every chunk it names.
                        await using (var write = await _guard.BeginWriteAsync(artifact, policy, location.Id, _options.Actor, committed, manifestKey, cancellationToken).ConfigureAwait(false))
                        {
                            await write.WriteAsync(manifestBytes, cancellationToken).ConfigureAwait(false);
                            await write.CommitAsync(cancellationToken).ConfigureAwait(false);
                        }

                        counters.AddManifest(manifestBytes.Length);
                        committed.Add(location);
                        outcomes.Add(counters.ToOutcome(location.Id, null));
                    }
                    catch (Exception e) when (IsLocationFailure(e))
                    {
                        firstFailure ??= e;
                        failed.Add(location.Id);
                        outcomes.Add(counters.ToOutcome(location.Id, e.Message));
                    }
                }

                if (committed.Count < Math.Max(1, policy.MinReplicas))
                {
                    // Not durable enough: take back what was committed so the checkpoint does not
                    // exist at all, then free the chunks this save left behind.
                    foreach (var location in committed)
                    {
                        await _guard.DeleteAsync(artifact, location.Id, _options.Actor, manifestKey, CancellationToken.None).ConfigureAwait(false);
                    }

                    await SweepQuietlyAsync([.. allowed.Select(l => l.Id)]).ConfigureAwait(false);
                    throw new StorageUnavailableException(
                        $"Checkpoint '{id}' was not saved: {committed.Count} of the {Math.Max(1, policy.MinReplicas)} copies policy '{policy.Name}' needs were committed "
                        + $"({string.Join("; ", outcomes.Where(o => o.Error is not null).Select(o => $"{o.LocationId}: {o.Error}"))}). "
                        + "Nothing of it remains; earlier checkpoints are intact.",
                        firstFailure);
                }

                if (failed.Count > 0)
                {
                    await SweepQuietlyAsync(failed).ConfigureAwait(false);
                }

                return new CheckpointPersistResult(
                    manifest!.ToInfo([.. committed.Select(c => c.Id)]),
                    outcomes,
                    refused,
                    _clock.GetElapsedTime(started));
            }
            finally
            {
                _mutation.Release();
            }
        }
        finally
        {
            _pool.Return(snapshot.Rented);
        }
    }

    /// <summary>
    /// Orders the configured locations (on-prem first when the policy requires it) and judges each
    /// one through the guard; forbidden ones are refused there, which audits them. Throws when what
    /// remains cannot satisfy the policy, before a byte is written.
    /// </summary>
    private async ValueTask<(List<LocationDescriptor> Allowed, List<string> Refused)> PlanLocationsAsync(ArtifactRef artifact, ResidencyPolicy policy, string manifestKey)
    {
        var candidates = _options.Locations.Where(l => !_guard.Locations.IsElsewhere(l)).Select(_guard.Locations.Describe).ToList();
        if (policy.RequireOnPrem)
        {
            // Stable: keeps the configured preference within each group.
            candidates = [.. candidates.Where(c => c.OnPrem), .. candidates.Where(c => !c.OnPrem)];
        }

        // Judge cloud locations as they will be judged when written: after the on-prem copies.
        var onPrem = candidates.Where(c => c.OnPrem && policy.Evaluate(c).Allowed).ToArray();
        var allowed = new List<LocationDescriptor>();
        var refused = new List<string>();
        foreach (var candidate in candidates)
        {
            if (policy.Evaluate(candidate, onPrem).Allowed)
            {
                allowed.Add(candidate);
                continue;
            }

            try
            {
                // The guard makes the same judgement and, refusing, records it in the audit log.
                await using var write = await _guard.BeginWriteAsync(artifact, policy, candidate.Id, _options.Actor, onPrem, manifestKey, CancellationToken.None).ConfigureAwait(false);
                ThrowHelper.InvalidOperation($"The placement guard allowed location '{candidate.Id}' that policy '{policy.Name}' refuses.");
            }
            catch (PlacementRefusedException)
            {
                refused.Add(candidate.Id);
            }
        }

        var needed = Math.Max(1, policy.MinReplicas);
        if (allowed.Count < needed || (policy.RequireOnPrem && onPrem.Length == 0))
        {
            throw new PlacementRefusedException(
                policy.Name,
                string.Join(",", refused.Count > 0 ? refused : _options.Locations),
                $"checkpoint '{artifact.Id}' needs {needed} cop{(needed == 1 ? "y" : "ies")}{(policy.RequireOnPrem ? " including one on-prem" : "")}, "
                + $"but of the configured checkpoint locations [{string.Join(", ", _options.Locations)}] only [{string.Join(", ", allowed.Select(a => a.Id))}] are allowed");
        }

        return (allowed, refused);
    }

    private async Task WriteChunksAsync(ArtifactRef artifact, ResidencyPolicy policy, string locationId, List<LocationDescriptor> committed, CheckpointSnapshot snapshot, LocationCounters counters, CancellationToken cancellationToken)
    {
        // Identical chunks within one checkpoint (zeroed optimiser moments, repeated blocks) are
        // written once: the first worker to claim a name writes it.
        var claimed = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        IReadOnlyCollection<LocationDescriptor> existing = [.. committed];
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = _options.WriteConcurrency, CancellationToken = cancellationToken };

        // One batch per location: judged once, chunks committed (fsync + rename) many at a time by
        // the batch's committers while the workers below hash and write the next ones, and one
        // audit event for all of them. Every chunk is durable before CompleteAsync returns, and
        // that is before the manifest that makes them reachable is written.
        var batch = await _chunks.BeginBatchAsync(artifact, policy, locationId, _options.Actor, existing, _options.CommitConcurrency, cancellationToken).ConfigureAwait(false);
        try
        {
            await Parallel.ForEachAsync(snapshot.Segments, parallel, async (segment, ct) =>
            {
                // Hashing here, inside the write pipeline, overlaps one chunk's hashing with another's
                // I/O. The hash names the chunk and is the one the guard records: bytes are hashed once.
                var hash = segment.EnsureHash();
                if (!claimed.TryAdd(hash, 0))
                {
                    return;
                }

                if (await _chunks.GetLengthAsync(locationId, hash, ct).ConfigureAwait(false) == segment.Bytes.Length)
                {
                    counters.Reused(segment.Bytes.Length);
                    return;
                }

                if (await batch.PutIfAbsentAsync(segment.ContentForWrite(), ct).ConfigureAwait(false) == ChunkPutOutcome.AlreadyPresent)
                {
                    counters.Reused(segment.Bytes.Length);
                }
            }).ConfigureAwait(false);

            await batch.CompleteAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Disposal waits for the commits in flight, so the counts below are final.
            await batch.DisposeAsync().ConfigureAwait(false);
            counters.AddWritten(batch.ChunksWritten, batch.BytesWritten);
        }
    }

    private CheckpointManifest BuildManifest(CheckpointJob job, long step, DateTimeOffset createdAt, CheckpointMetrics metrics, CheckpointSnapshot snapshot)
    {
        var entries = new List<CheckpointEntryInfo>(snapshot.Entries.Count);
        foreach (var entry in snapshot.Entries)
        {
            var source = entry.Source;
            entries.Add(new CheckpointEntryInfo(source.Name, source.Kind, source.DType, source.Shape, source.Data.Length, [.. entry.Segments.Select(s => s.Hash!)]));
        }

        return new CheckpointManifest
        {
            Workspace = job.Workspace,
            JobId = job.JobId,
            Step = step,
            CreatedAt = createdAt,
            Policy = job.Policy.Name,
            ChunkSize = _options.ChunkSize,
            Metrics = metrics,
            Entries = entries,
        };
    }

    // Failures that belong to one location (full, failing, refused): the save goes on elsewhere.
    // Anything else (a bug, a cancellation, a crash) propagates with nothing cleaned up, exactly as
    // a killed process would leave it, and start-up recovery deals with it.
    private static bool IsLocationFailure(Exception e) =>
        e is StorageUnavailableException or PlacementRefusedException or IOException or UnauthorizedAccessException;

    private sealed class LocationCounters
    {
        private int _chunksWritten;
        private long _bytesWritten;
        private int _chunksReused;
        private long _bytesReused;

        public long BytesWritten => Interlocked.Read(ref _bytesWritten);

        public void AddManifest(long bytes) => Interlocked.Add(ref _bytesWritten, bytes);

        public void AddWritten(int chunks, long bytes)
        {
            Interlocked.Add(ref _chunksWritten, chunks);
            Interlocked.Add(ref _bytesWritten, bytes);
        }

        public void Reused(long bytes)
        {
            Interlocked.Increment(ref _chunksReused);
            Interlocked.Add(ref _bytesReused, bytes);
        }

        public CheckpointLocationOutcome ToOutcome(string locationId, string? error) =>
            new(locationId, error is null, _chunksWritten, BytesWritten, _chunksReused, _bytesReused, error);
    }
}
