using Atelier.Core.Residency;

namespace Atelier.Storage.Placement;

/// <summary>Placing a whole local file (a staged artifact) through the guard.</summary>
public static class PlacementGuardFiles
{
    /// <summary>Copies <paramref name="path"/> to <paramref name="key"/> at a location through the guard, committed whole or not at all.</summary>
    public static async ValueTask<PlacementReceipt> PlaceFileAsync(
        this PlacementGuard guard,
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        string key,
        string path,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(guard);
        await using var source = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
        await using var write = await guard.BeginWriteAsync(artifact, policy, locationId, actor, key: key, cancellationToken: cancellationToken).ConfigureAwait(false);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int read;
            while ((read = await source.ReadAsync(buffer.AsMemory(0, 1 << 20), cancellationToken).ConfigureAwait(false)) > 0)
            {
                await write.WriteAsync(buffer.AsMemory(0, read), cancellationToken).ConfigureAwait(false);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        return await write.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Places the files of a staged directory under <paramref name="prefix"/>, in the order given
    /// (put the manifest last: it is what makes the whole visible). Keys already under the prefix,
    /// left by a placement that a crash interrupted, are deleted first, so the result is exactly
    /// these files.
    /// </summary>
    public static async ValueTask PlaceDirectoryAsync(
        this PlacementGuard guard,
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        string prefix,
        string directory,
        IEnumerable<string> relativePaths,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(relativePaths);
        // Listed whole before deleting: a store need not keep a listing stable under deletions.
        var stale = new List<string>();
        await foreach (var key in guard.Locations.ListKeysAsync(locationId, prefix, cancellationToken).ConfigureAwait(false))
        {
            stale.Add(key);
        }

        foreach (var key in stale)
        {
            await guard.DeleteAsync(artifact, locationId, actor, key, cancellationToken).ConfigureAwait(false);
        }

        foreach (var relative in relativePaths)
        {
            await guard.PlaceFileAsync(artifact, policy, locationId, actor, prefix + relative, Path.Combine(directory, relative), cancellationToken).ConfigureAwait(false);
        }
    }
}
