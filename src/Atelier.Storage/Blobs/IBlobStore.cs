namespace Atelier.Storage.Blobs;

/// <summary>
/// The bytes of one location. Writes are two-phase: <see cref="BeginWriteAsync"/> returns a
/// <see cref="PendingBlob"/> whose bytes are invisible until <see cref="PendingBlob.CommitAsync"/>
/// makes them durable and visible at once; a crash before that leaves nothing under the key.
/// Keys are produced by Atelier itself (never from user input) and validated by <see cref="BlobKey"/>.
/// Every read, listing and sweep is asynchronous, so that a store over the network (an
/// S3-compatible bucket) never blocks a thread on I/O.
/// </summary>
public interface IBlobStore
{
    /// <summary>The id of the location this store serves.</summary>
    string LocationId { get; }

    /// <summary>Starts writing <paramref name="key"/>; fails if the key already exists at commit.</summary>
    ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken);

    /// <summary>Removes a committed blob; true when it existed.</summary>
    ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken);

    /// <summary>Opens a committed blob for reading from its start, or returns null when it does not exist.</summary>
    ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken);

    /// <summary>
    /// Opens <paramref name="length"/> bytes of a committed blob from <paramref name="offset"/> (to its
    /// end when <paramref name="length"/> is null), or returns null when it does not exist. A range
    /// past the end reads what there is, possibly nothing, as HTTP range reads do.
    /// </summary>
    ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken);

    /// <summary>The length of a committed blob, or null when it does not exist.</summary>
    ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken);

    /// <summary>Keys of committed blobs that start with <paramref name="prefix"/>, in ordinal order.</summary>
    IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>Removes bytes left by writes that never committed (a crash, a kill -9); returns how many were removed.</summary>
    ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken);
}

/// <summary>
/// A commit found its key taken: blobs are created once, never replaced (conditional create, as
/// S3's <c>If-None-Match: *</c>). The existing bytes are untouched and the new ones discarded.
/// </summary>
public sealed class BlobAlreadyExistsException(string locationId, string key)
    : IOException($"Blob '{key}' already exists at location '{locationId}'; blobs are never replaced.")
{
    /// <summary>The location.</summary>
    public string LocationId { get; } = locationId;

    /// <summary>The key that was taken.</summary>
    public string Key { get; } = key;
}

/// <summary>Opens the blob store of one kind of location (a local directory, an S3-compatible bucket).</summary>
public interface IBlobStoreProvider
{
    /// <summary>The kind of location this provider opens.</summary>
    Atelier.Core.Residency.LocationKind Kind { get; }

    /// <summary>Opens the store of <paramref name="location"/>; relative local paths are under <paramref name="dataDirectory"/>.</summary>
    IBlobStore Open(Atelier.Core.Residency.LocationDescriptor location, string dataDirectory);
}

/// <summary>Opens local-directory locations.</summary>
public sealed class LocalDirectoryBlobStoreProvider : IBlobStoreProvider
{
    /// <inheritdoc />
    public Atelier.Core.Residency.LocationKind Kind => Atelier.Core.Residency.LocationKind.LocalDirectory;

    /// <inheritdoc />
    public IBlobStore Open(Atelier.Core.Residency.LocationDescriptor location, string dataDirectory)
    {
        ArgumentNullException.ThrowIfNull(location);
        return new LocalDirectoryBlobStore(location.Id, Path.Combine(dataDirectory, location.Uri));
    }
}

/// <summary>
/// A blob being written. Write to <see cref="Stream"/>, then <see cref="CommitAsync"/>; disposing
/// without committing throws the bytes away.
/// </summary>
public abstract class PendingBlob : IAsyncDisposable
{
    /// <summary>The key the blob will have once committed.</summary>
    public abstract string Key { get; }

    /// <summary>Where the bytes go. Not seekable; not visible to readers until committed.</summary>
    public abstract Stream Stream { get; }

    /// <summary>Makes the bytes durable (fsync) and visible under <see cref="Key"/> atomically.</summary>
    public abstract ValueTask CommitAsync(CancellationToken cancellationToken);

    /// <summary>Throws the bytes away unless committed.</summary>
    public abstract ValueTask DisposeAsync();
}

/// <summary>Validation of internal blob keys: segments of <c>[A-Za-z0-9._-]</c> joined by <c>/</c>, no <c>.</c> or <c>..</c> segment.</summary>
public static class BlobKey
{
    /// <summary>Throws when <paramref name="key"/> could escape its store or is not canonical.</summary>
    public static void Validate(string key)
    {
        if (string.IsNullOrEmpty(key) || key.Length > 512 || key[0] == '/' || key[^1] == '/')
        {
            throw new ArgumentException($"Invalid blob key '{key}'.", nameof(key));
        }

        var segmentStart = 0;
        for (var i = 0; i <= key.Length; i++)
        {
            if (i == key.Length || key[i] == '/')
            {
                var segment = key.AsSpan(segmentStart, i - segmentStart);
                if (segment.Length == 0 || segment is "." || segment is "..")
                {
                    throw new ArgumentException($"Invalid blob key '{key}'.", nameof(key));
                }

                segmentStart = i + 1;
                continue;
            }

            var c = key[i];
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            {
                throw new ArgumentException($"Invalid blob key '{key}'.", nameof(key));
            }
        }
    }
}
