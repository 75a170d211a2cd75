namespace Atelier.Storage.Blobs;

/// <summary>
/// The bytes of one location. Writes are two-phase: <see cref="BeginWriteAsync"/> returns a
/// <see cref="PendingBlob"/> whose bytes are invisible until <see cref="PendingBlob.CommitAsync"/>
/// makes them durable and visible at once; a crash before that leaves nothing under the key.
/// Keys are produced by Atelier itself (never from user input) and validated by <see cref="BlobKey"/>.
/// </summary>
public interface IBlobStore
{
    /// <summary>The id of the location this store serves.</summary>
    string LocationId { get; }

    /// <summary>Starts writing <paramref name="key"/>; fails if the key already exists at commit.</summary>
    ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken);

    /// <summary>Opens a committed blob for reading, or returns false when it does not exist.</summary>
    bool TryOpenRead(string key, out Stream stream);

    /// <summary>The length of a committed blob, or -1 when it does not exist.</summary>
    long GetLength(string key);

    /// <summary>Removes a committed blob; true when it existed.</summary>
    ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken);

    /// <summary>Keys of committed blobs that start with <paramref name="prefix"/>.</summary>
    IEnumerable<string> EnumerateKeys(string prefix);

    /// <summary>Removes bytes left by writes that never committed (a crash, a kill -9). Returns how many were removed.</summary>
    int RemoveOrphans();
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
