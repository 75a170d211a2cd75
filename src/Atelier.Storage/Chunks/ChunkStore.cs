using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;

namespace Atelier.Storage.Chunks;

/// <summary>What the <c>PutIfAbsentAsync</c> methods of <see cref="ChunkStore"/> and <see cref="ChunkBatch"/> did.</summary>
public enum ChunkPutOutcome
{
    /// <summary>The chunk was written and committed (in a <see cref="ChunkBatch"/>: written, and committed when the batch completes).</summary>
    Written,

    /// <summary>A chunk with the same hash (and length) was already committed there; nothing was written.</summary>
    AlreadyPresent,
}

/// <summary>What <see cref="ChunkStore.ReadAsync"/> found.</summary>
public enum ChunkReadStatus
{
    /// <summary>The bytes were read and hash to the chunk's name.</summary>
    Ok,

    /// <summary>No chunk with that name at the location.</summary>
    Missing,

    /// <summary>The chunk has the wrong length.</summary>
    WrongLength,

    /// <summary>The bytes do not hash to the chunk's name.</summary>
    HashMismatch,

    /// <summary>The location could not be read (an I/O error).</summary>
    Unreadable,
}

/// <summary>
/// Content-addressed chunks: a chunk's key is the SHA-256 of its bytes (<c>chunks/ab/abcd…</c>), so
/// a chunk is written once per location however many artifacts hold it. Every write goes through
/// the <see cref="PlacementGuard"/> (judged, hashed, atomic, audited), attributed to the artifact
/// that caused it. Chunks are never modified: a name always means the same bytes.
/// <para>
/// Which chunks are live is known only to the owners of the manifests that reference them, so
/// this store has no reference counts: the owner computes the live set from its manifests (the
/// "mark") and passes it to <see cref="SweepAsync"/>. Deleting a manifest first and sweeping
/// second is crash-safe: a crash in between leaves unreferenced chunks, which the next sweep
/// removes. The owner must not sweep while a write that has not yet committed its manifest is in
/// flight, or that write's fresh chunks would look unreferenced.
/// </para>
/// </summary>
public sealed class ChunkStore(PlacementGuard guard)
{
    /// <summary>The key prefix under which chunks live at every location.</summary>
    public const string Prefix = "chunks/";

    /// <summary>The guard every write and deletion goes through.</summary>
    public PlacementGuard Guard => guard;

    /// <summary>The blob key of the chunk named <paramref name="hash"/> (64 lower-case hex digits).</summary>
    public static string KeyOf(string hash)
    {
        if (!IsHash(hash))
        {
            ThrowHelper.Argument($"'{hash}' is not a SHA-256 chunk name (64 lower-case hex digits).", nameof(hash));
        }

        // Two hex digits of fan-out keep directories at a few thousand entries for millions of chunks.
        return string.Concat(Prefix, hash.AsSpan(0, 2), "/", hash);
    }

    /// <summary>The SHA-256 of <paramref name="bytes"/> as 64 lower-case hex digits: the chunk's name.</summary>
    public static string HashOf(ReadOnlySpan<byte> bytes)
    {
        Span<byte> digest = stackalloc byte[32];
        SHA256.HashData(bytes, digest);
        return Convert.ToHexStringLower(digest);
    }

    /// <summary>True when <paramref name="value"/> is 64 lower-case hex digits.</summary>
    public static bool IsHash(string value)
    {
        if (value is null || value.Length != 64)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!(char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The committed length of chunk <paramref name="hash"/> at a location, or null when absent.</summary>
    public ValueTask<long?> GetLengthAsync(string locationId, string hash, CancellationToken cancellationToken) =>
        guard.GetLengthAsync(locationId, KeyOf(hash), cancellationToken);

    /// <summary>
    /// The committed length of any blob at a location (e.g. the manifest kept beside the chunks), or
    /// null when absent: an existence check that does not list the location.
    /// </summary>
    public ValueTask<long?> GetBlobLengthAsync(string locationId, string key, CancellationToken cancellationToken) =>
        guard.GetLengthAsync(locationId, key, cancellationToken);

    /// <summary>
    /// Writes the chunk <paramref name="bytes"/>, named <paramref name="hash"/>, at a location unless
    /// it is already there. The bytes are hashed first and must hash to <paramref name="hash"/>: a
    /// name is never taken on the caller's word. Callers that hashed the bytes themselves pass a
    /// <see cref="HashedContent"/> to the other overload instead, and the bytes are hashed once.
    /// </summary>
    /// <exception cref="ArgumentException">The bytes do not hash to <paramref name="hash"/>; nothing is written.</exception>
    /// <exception cref="PlacementRefusedException">The policy forbids the location.</exception>
    /// <exception cref="StorageUnavailableException">The location is full or failing.</exception>
    public ValueTask<ChunkPutOutcome> PutIfAbsentAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies,
        string hash,
        ReadOnlyMemory<byte> bytes,
        CancellationToken cancellationToken)
    {
        _ = KeyOf(hash);
        if (!HashedContent.TryVerify(bytes, hash, out var content))
        {
            ThrowHelper.Argument($"The {bytes.Length} bytes given for chunk {hash} do not hash to that name; nothing was written.", nameof(hash));
        }

        return PutIfAbsentAsync(artifact, policy, locationId, actor, existingCopies, content, cancellationToken);
    }

    /// <summary>
    /// Writes the chunk <paramref name="content"/>, named by its hash, at a location unless it is
    /// already there. The placement is judged by the guard even when nothing needs writing, so a
    /// refused location is refused (and audited) whether or not it happens to hold the bytes.
    /// </summary>
    /// <exception cref="PlacementRefusedException">The policy forbids the location.</exception>
    /// <exception cref="StorageUnavailableException">The location is full or failing.</exception>
    public async ValueTask<ChunkPutOutcome> PutIfAbsentAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies,
        HashedContent content,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(content);
        var key = KeyOf(content.Sha256);
        var store = guard.Locations.Store(locationId);
        var existing = await store.GetLengthAsync(key, cancellationToken).ConfigureAwait(false);
        if (existing == content.Bytes.Length)
        {
            // Content addressing: the same name means the same bytes. The guard's verdict still
            // matters (the caller referencing this copy is placing the artifact here), so judge it.
            EnsureAllowed(policy, locationId, existingCopies);
            return ChunkPutOutcome.AlreadyPresent;
        }

        if (existing is not null)
        {
            await ReplaceDamagedAsync(artifact, locationId, actor, content.Sha256, cancellationToken).ConfigureAwait(false);
        }

        try
        {
            await guard.PlaceAsync(artifact, policy, locationId, actor, existingCopies, key, content, cancellationToken).ConfigureAwait(false);
            return ChunkPutOutcome.Written;
        }
        catch (IOException)
        {
            if (await store.GetLengthAsync(key, CancellationToken.None).ConfigureAwait(false) != content.Bytes.Length)
            {
                throw;
            }

            // Another writer committed the same chunk between our check and our rename (the rename
            // never overwrites). Same name, same bytes: that copy serves.
            return ChunkPutOutcome.AlreadyPresent;
        }
    }

    /// <summary>
    /// Starts writing many chunks of one artifact at one location: judged once by the guard (a
    /// refusal is audited and thrown here), committed many at a time while the next ones are
    /// written, and audited as one placement when completed (see <see cref="PlacementBatch"/>).
    /// </summary>
    /// <exception cref="PlacementRefusedException">The policy forbids the location.</exception>
    public async ValueTask<ChunkBatch> BeginBatchAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies,
        int commitConcurrency,
        CancellationToken cancellationToken)
    {
        var batch = await guard.BeginBatchAsync(artifact, policy, locationId, actor, existingCopies, commitConcurrency, cancellationToken).ConfigureAwait(false);
        return new ChunkBatch(this, batch, guard.Locations.Store(locationId));
    }

    /// <summary>
    /// Reads chunk <paramref name="hash"/> from a location into <paramref name="destination"/>, whose
    /// length is the chunk's expected length, and verifies it against its name.
    /// </summary>
    public async ValueTask<ChunkReadStatus> ReadAsync(string locationId, string hash, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var key = KeyOf(hash);
        Stream? stream;
        try
        {
            stream = await guard.OpenReadAsync(locationId, key, cancellationToken).ConfigureAwait(false);
            if (stream is null)
            {
                return ChunkReadStatus.Missing;
            }
        }
        catch (IOException)
        {
            return ChunkReadStatus.Unreadable;
        }

        await using (stream.ConfigureAwait(false))
        {
            try
            {
                if (stream.Length != destination.Length)
                {
                    return ChunkReadStatus.WrongLength;
                }

                await stream.ReadExactlyAsync(destination, cancellationToken).ConfigureAwait(false);
            }
            catch (EndOfStreamException)
            {
                return ChunkReadStatus.WrongLength;
            }
            catch (IOException)
            {
                return ChunkReadStatus.Unreadable;
            }
        }

        return string.Equals(HashOf(destination.Span), hash, StringComparison.Ordinal) ? ChunkReadStatus.Ok : ChunkReadStatus.HashMismatch;
    }

    /// <summary>Names of every chunk committed at a location.</summary>
    public async IAsyncEnumerable<string> EnumerateHashesAsync(string locationId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var key in guard.Locations.ListKeysAsync(locationId, Prefix, cancellationToken).ConfigureAwait(false))
        {
            var name = key[(key.LastIndexOf('/') + 1)..];
            if (IsHash(name))
            {
                yield return name;
            }
        }
    }

    /// <summary>
    /// Deletes every chunk at a location whose name is not in <paramref name="live"/>; each deletion
    /// is audited. Returns how many chunks and bytes were freed.
    /// </summary>
    public async ValueTask<ChunkSweepResult> SweepAsync(string locationId, IReadOnlySet<string> live, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(live);
        var store = guard.Locations.Store(locationId);
        var dead = new List<string>();
        await foreach (var hash in EnumerateHashesAsync(locationId, cancellationToken).ConfigureAwait(false))
        {
            if (!live.Contains(hash))
            {
                dead.Add(hash);
            }
        }

        long bytes = 0;
        var removed = 0;
        foreach (var hash in dead)
        {
            var key = KeyOf(hash);
            var length = await store.GetLengthAsync(key, cancellationToken).ConfigureAwait(false);
            if (await guard.DeleteAsync(new ArtifactRef("chunk", hash, "system"), locationId, actor, key, cancellationToken).ConfigureAwait(false))
            {
                removed++;
                bytes += length ?? 0;
            }
        }

        return new ChunkSweepResult(removed, bytes);
    }

    /// <summary>
    /// Removes partial writes (never committed) at a location. Only safe when nothing else is
    /// writing there, i.e. at start-up before other writers begin.
    /// </summary>
    public ValueTask<int> RemovePartialWritesAsync(string locationId, CancellationToken cancellationToken) =>
        guard.Locations.Store(locationId).RemoveOrphansAsync(cancellationToken);

    // A committed chunk of the wrong length cannot be what its name says (renames are atomic, so
    // this is damage, not a torn write): replace it rather than trust it.
    internal ValueTask<bool> ReplaceDamagedAsync(ArtifactRef artifact, string locationId, string actor, string hash, CancellationToken cancellationToken) =>
        guard.DeleteAsync(new ArtifactRef("chunk", hash, artifact.Workspace), locationId, actor, KeyOf(hash), cancellationToken);

    private void EnsureAllowed(ResidencyPolicy policy, string locationId, IReadOnlyCollection<LocationDescriptor>? existingCopies)
    {
        var decision = policy.Evaluate(guard.Locations.Describe(locationId), existingCopies);
        if (!decision.Allowed)
        {
            // Callers judge each location through the guard before they place anything there, so
            // a refusal here means the caller skipped that step: a contract violation.
            ThrowHelper.InvalidOperation($"Chunk placement at '{locationId}' is forbidden by policy '{policy.Name}' ({decision.Reason}); judge the location through the placement guard first.");
        }
    }
}

/// <summary>
/// Chunks of one artifact being written at one location (see <see cref="ChunkStore.BeginBatchAsync"/>).
/// A chunk put here is durable and visible only once <see cref="CompleteAsync"/> returns: reference
/// it (commit a manifest) only after that. Dispose it in every case.
/// </summary>
public sealed class ChunkBatch : IAsyncDisposable
{
    private readonly ChunkStore _chunks;
    private readonly PlacementBatch _batch;
    private readonly IBlobStore _store;

    internal ChunkBatch(ChunkStore chunks, PlacementBatch batch, IBlobStore store)
    {
        _chunks = chunks;
        _batch = batch;
        _store = store;
    }

    /// <summary>Chunks committed so far.</summary>
    public int ChunksWritten => _batch.BlobsWritten;

    /// <summary>Bytes of the chunks committed so far.</summary>
    public long BytesWritten => _batch.BytesWritten;

    /// <summary>
    /// Writes chunk <paramref name="content"/> unless a chunk of that name is already committed at
    /// the location. <see cref="ChunkPutOutcome.Written"/> means written and queued for commit.
    /// </summary>
    public async ValueTask<ChunkPutOutcome> PutIfAbsentAsync(HashedContent content, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(content);
        var key = ChunkStore.KeyOf(content.Sha256);
        var existing = await _store.GetLengthAsync(key, cancellationToken).ConfigureAwait(false);
        if (existing == content.Bytes.Length)
        {
            // Same name, same bytes; the location was judged when the batch began.
            return ChunkPutOutcome.AlreadyPresent;
        }

        if (existing is not null)
        {
            await _chunks.ReplaceDamagedAsync(_batch.Artifact, _batch.Location.Id, _batch.Actor, content.Sha256, cancellationToken).ConfigureAwait(false);
        }

        await _batch.StageAsync(key, content, cancellationToken).ConfigureAwait(false);
        return ChunkPutOutcome.Written;
    }

    /// <summary>Waits until every chunk put is committed, audits them as one placement, and returns what was placed.</summary>
    public ValueTask<PlacementBatchReceipt> CompleteAsync(CancellationToken cancellationToken) => _batch.CompleteAsync(cancellationToken);

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _batch.DisposeAsync();
}

/// <summary>What a sweep freed.</summary>
/// <param name="Chunks">Chunks deleted.</param>
/// <param name="Bytes">Their bytes.</param>
public readonly record struct ChunkSweepResult(int Chunks, long Bytes);
