using System.Collections.Concurrent;
using System.Text;
using Atelier.Core.Errors;
using Atelier.Storage.Chunks;

namespace Atelier.Training.Checkpoints;

public sealed partial class CheckpointStore
{
    // Manifests are small (tens of KiB for gigabytes of tensors); anything bigger is not one.
    private const int MaxManifestBytes = 64 << 20;

    /// <summary>The committed checkpoints of a job, by step, with where each has copies.</summary>
    public async Task<IReadOnlyList<CheckpointInfo>> ListAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        var steps = new SortedDictionary<long, List<string>>();
        foreach (var location in _options.Locations)
        {
            try
            {
                await foreach (var key in _guard.Locations.ListKeysAsync(location, CheckpointManifest.JobPrefix(jobId), cancellationToken).ConfigureAwait(false))
                {
                    if (CheckpointManifest.TryParseKey(key, out var job, out var step) && job == jobId)
                    {
                        if (!steps.TryGetValue(step, out var at))
                        {
                            steps[step] = at = [];
                        }

                        at.Add(location);
                    }
                }
            }
            catch (StorageUnavailableException)
            {
                // Another node's drive while that node is down, or a bucket that does not answer:
                // its copies are listed when it is back, and the reachable ones serve meanwhile.
            }
        }

        var result = new List<CheckpointInfo>(steps.Count);
        foreach (var (step, locations) in steps)
        {
            var (manifest, _) = await LoadManifestAsync(jobId, step, locations, cancellationToken).ConfigureAwait(false);
            if (manifest is not null)
            {
                result.Add(manifest.ToInfo(locations));
            }
        }

        return result;
    }

    /// <summary>The checkpoint of a job at a step, or null when there is none.</summary>
    public async Task<CheckpointInfo?> GetAsync(string jobId, long step, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        var locations = await LocationsHoldingAsync(jobId, step, cancellationToken).ConfigureAwait(false);
        if (locations.Count == 0)
        {
            return null;
        }

        var (manifest, problems) = await LoadManifestAsync(jobId, step, locations, cancellationToken).ConfigureAwait(false);
        return manifest?.ToInfo(locations) ?? throw new DataIntegrityException($"Checkpoint '{CheckpointManifest.IdOf(jobId, step)}' has a damaged manifest at every location: {problems}.");
    }

    /// <summary>
    /// Reads a checkpoint back, verifying every chunk against its SHA-256 name. Each chunk is read
    /// from the most preferred location that holds a good copy: a missing or damaged chunk falls
    /// back to the next location, and a location that failed is tried last for later chunks.
    /// </summary>
    /// <exception cref="NotFoundException">The job has no checkpoint at <paramref name="step"/>.</exception>
    /// <exception cref="DataIntegrityException">Some chunk has no good copy anywhere; the message names the checkpoint, entry and chunk.</exception>
    public async Task<RestoredCheckpoint> RestoreAsync(string jobId, long step, CancellationToken cancellationToken = default)
    {
        ValidateJobId(jobId);
        var id = CheckpointManifest.IdOf(jobId, step);
        var locations = await LocationsHoldingAsync(jobId, step, cancellationToken).ConfigureAwait(false);
        if (locations.Count == 0)
        {
            throw new NotFoundException("checkpoint", id);
        }

        var (manifest, problems) = await LoadManifestAsync(jobId, step, locations, cancellationToken).ConfigureAwait(false);
        if (manifest is null)
        {
            throw new DataIntegrityException($"Checkpoint '{id}' cannot be restored: its manifest is damaged at every location ({problems}).");
        }

        var data = new byte[manifest.Entries.Count][];
        var work = new List<(int Entry, int Index, long Offset, int Length, string Hash)>();
        for (var e = 0; e < manifest.Entries.Count; e++)
        {
            var entry = manifest.Entries[e];
            if (entry.Length > Array.MaxLength)
            {
                throw new NotSupportedException($"Entry '{entry.Name}' of checkpoint '{id}' is {entry.Length} bytes, more than one array holds.");
            }

            data[e] = GC.AllocateUninitializedArray<byte>((int)entry.Length);
            for (var c = 0; c < entry.Chunks.Count; c++)
            {
                var offset = (long)c * manifest.ChunkSize;
                work.Add((e, c, offset, (int)Math.Min(manifest.ChunkSize, entry.Length - offset), entry.Chunks[c]));
            }
        }

        var failures = new int[locations.Count];
        var reads = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = _options.ReadConcurrency, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(work, parallel, async (item, ct) =>
        {
            var destination = data[item.Entry].AsMemory((int)item.Offset, item.Length);
            StringBuilder? trail = null;
            foreach (var l in PreferenceOrder(failures))
            {
                var status = await _chunks.ReadAsync(locations[l], item.Hash, destination, ct).ConfigureAwait(false);
                if (status == ChunkReadStatus.Ok)
                {
                    reads.AddOrUpdate(locations[l], 1, static (_, n) => n + 1);
                    return;
                }

                Interlocked.Increment(ref failures[l]);
                (trail ??= new StringBuilder()).Append(trail.Length > 0 ? "; " : "").Append(locations[l]).Append(": ").Append(Describe(status));
            }

            var entry = manifest.Entries[item.Entry];
            throw new DataIntegrityException(
                $"Checkpoint '{id}' cannot be restored: chunk {item.Index} of entry '{entry.Name}' (sha256 {item.Hash}, bytes {item.Offset}..{item.Offset + item.Length}) "
                + $"has no good copy ({trail}).");
        }).ConfigureAwait(false);

        return new RestoredCheckpoint(manifest.ToInfo(locations), data, reads);
    }

    private static string Describe(ChunkReadStatus status) => status switch
    {
        ChunkReadStatus.Missing => "missing",
        ChunkReadStatus.WrongLength => "wrong length",
        ChunkReadStatus.HashMismatch => "hash mismatch (corrupted)",
        _ => "unreadable",
    };

    // Locations in configured order, those that have failed fewest times first (stable).
    private static int[] PreferenceOrder(int[] failures)
    {
        var order = new int[failures.Length];
        for (var i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var snapshot = new int[failures.Length];
        for (var i = 0; i < snapshot.Length; i++)
        {
            snapshot[i] = Volatile.Read(ref failures[i]);
        }

        // Insertion sort: a handful of locations.
        for (var i = 1; i < order.Length; i++)
        {
            var x = order[i];
            var j = i - 1;
            while (j >= 0 && snapshot[order[j]] > snapshot[x])
            {
                order[j + 1] = order[j];
                j--;
            }

            order[j + 1] = x;
        }

        return order;
    }

    // The configured locations (in preference order) that hold the checkpoint's manifest.
    private async Task<List<string>> LocationsHoldingAsync(string jobId, long step, CancellationToken cancellationToken)
    {
        var key = CheckpointManifest.KeyOf(jobId, step);
        var result = new List<string>();
        foreach (var location in _options.Locations)
        {
            if (await HoldsAsync(location, key, cancellationToken).ConfigureAwait(false))
            {
                result.Add(location);
            }
        }

        return result;
    }

    // Whether the location holds the blob; one that cannot be reached (another node's drive while
    // that node is down, a bucket that does not answer) holds nothing this node can use now.
    private async ValueTask<bool> HoldsAsync(string location, string key, CancellationToken cancellationToken)
    {
        try
        {
            return await _chunks.GetBlobLengthAsync(location, key, cancellationToken).ConfigureAwait(false) is not null;
        }
        catch (StorageUnavailableException)
        {
            return false;
        }
    }

    private async Task<(CheckpointManifest? Manifest, string? Problems)> LoadManifestAsync(string jobId, long step, IReadOnlyList<string> locations, CancellationToken cancellationToken)
    {
        string? problems = null;
        foreach (var location in locations)
        {
            var (manifest, problem) = await ReadManifestAsync(location, CheckpointManifest.KeyOf(jobId, step), cancellationToken).ConfigureAwait(false);
            if (manifest is not null && manifest.JobId == jobId && manifest.Step == step)
            {
                return (manifest, null);
            }

            problems = (problems is null ? "" : problems + "; ") + $"{location}: {problem ?? "names another checkpoint"}";
        }

        return (null, problems);
    }

    private async Task<(CheckpointManifest? Manifest, string? Problem)> ReadManifestAsync(string location, string key, CancellationToken cancellationToken)
    {
        Stream? stream;
        try
        {
            stream = await _guard.OpenReadAsync(location, key, cancellationToken).ConfigureAwait(false);
            if (stream is null)
            {
                return (null, "missing");
            }
        }
        catch (IOException e)
        {
            return (null, $"unreadable ({e.Message})");
        }

        await using (stream.ConfigureAwait(false))
        {
            try
            {
                if (stream.Length > MaxManifestBytes)
                {
                    return (null, $"{stream.Length} bytes, too large for a manifest");
                }

                var bytes = new byte[stream.Length];
                await stream.ReadExactlyAsync(bytes, cancellationToken).ConfigureAwait(false);
                var manifest = CheckpointManifest.TryParse(bytes, out var problem);
                return (manifest, problem);
            }
            catch (IOException e)
            {
                return (null, $"unreadable ({e.Message})");
            }
        }
    }
}
