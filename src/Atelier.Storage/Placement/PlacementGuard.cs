using System.Security.Cryptography;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Placement;

/// <summary>What a placement is of: an artifact of some kind, in a workspace.</summary>
/// <param name="Kind">e.g. <c>file</c>, <c>dataset</c>, <c>checkpoint</c>.</param>
/// <param name="Id">The artifact's id.</param>
/// <param name="Workspace">The workspace that owns it.</param>
public sealed record ArtifactRef(string Kind, string Id, string Workspace)
{
    /// <summary>The default blob key of the artifact: <c>&lt;kind&gt;/&lt;id&gt;</c>.</summary>
    public string BlobKey => $"{Kind}/{Id}";
}

/// <summary>A committed placement: where the bytes are and what they hash to.</summary>
/// <param name="LocationId">The location holding the bytes.</param>
/// <param name="Key">The blob key within the location.</param>
/// <param name="Bytes">How many bytes were written.</param>
/// <param name="Sha256">SHA-256 of the bytes, lower-case hex.</param>
public sealed record PlacementReceipt(string LocationId, string Key, long Bytes, string Sha256);

/// <summary>
/// The only way bytes are written to a location. Each write is judged against the artifact's
/// residency policy first; a refusal writes nothing, is audited, and throws
/// <see cref="PlacementRefusedException"/> naming the policy and the location. An allowed write is
/// hashed on the way, and its commit is audited with the byte count and hash. Bytes that were
/// already hashed (<see cref="HashedContent"/>, e.g. content-addressed chunks, which are hashed to
/// be named) are placed by <see cref="PlaceAsync"/> or a <see cref="PlacementBatch"/> without
/// being hashed again; a batch is judged once and audited as one event.
/// </summary>
public sealed class PlacementGuard(StorageLocations locations, AuditLog audit)
{
    /// <summary>The configured locations.</summary>
    public StorageLocations Locations => locations;

    /// <summary>The audit log every placement is recorded in.</summary>
    public AuditLog Audit => audit;

    /// <summary>
    /// Judges the placement and, when allowed, starts a write. Commit it with
    /// <see cref="GuardedWrite.CommitAsync"/>; disposing it without committing leaves nothing.
    /// </summary>
    public async ValueTask<GuardedWrite> BeginWriteAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies = null,
        string? key = null,
        CancellationToken cancellationToken = default)
    {
        var location = await JudgeAsync(artifact, policy, locationId, actor, existingCopies).ConfigureAwait(false);
        var pending = await locations.Store(locationId).BeginWriteAsync(key ?? artifact.BlobKey, cancellationToken).ConfigureAwait(false);
        return new GuardedWrite(this, artifact, policy, location, actor, pending);
    }

    /// <summary>
    /// Judges the placement and, when allowed, writes <paramref name="content"/> under
    /// <paramref name="key"/>, commits it (fsync, atomic rename) and audits it with the content's
    /// hash. The bytes are not hashed again: <see cref="HashedContent"/> can only have been made
    /// by hashing them.
    /// </summary>
    /// <exception cref="PlacementRefusedException">The policy forbids the location (audited).</exception>
    public async ValueTask<PlacementReceipt> PlaceAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies,
        string key,
        HashedContent content,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(content);
        var location = await JudgeAsync(artifact, policy, locationId, actor, existingCopies).ConfigureAwait(false);
        var pending = await locations.Store(locationId).BeginWriteAsync(key, cancellationToken).ConfigureAwait(false);
        await using (pending.ConfigureAwait(false))
        {
            await pending.Stream.WriteAsync(content.Bytes, cancellationToken).ConfigureAwait(false);
            await pending.CommitAsync(cancellationToken).ConfigureAwait(false);
        }

        var receipt = new PlacementReceipt(location.Id, key, content.Bytes.Length, content.Sha256);
        await RecordPlacementOrUndoAsync(artifact, policy, actor, receipt).ConfigureAwait(false);
        return receipt;
    }

    /// <summary>
    /// Judges the placement once and, when allowed, starts a batch of content-addressed writes of
    /// the artifact at the location, committed <paramref name="commitConcurrency"/> at a time and
    /// audited as one event (see <see cref="PlacementBatch"/>). Dispose the batch in every case.
    /// </summary>
    /// <exception cref="PlacementRefusedException">The policy forbids the location (audited).</exception>
    public async ValueTask<PlacementBatch> BeginBatchAsync(
        ArtifactRef artifact,
        ResidencyPolicy policy,
        string locationId,
        string actor,
        IReadOnlyCollection<LocationDescriptor>? existingCopies,
        int commitConcurrency,
        CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(commitConcurrency, 1);
        var location = await JudgeAsync(artifact, policy, locationId, actor, existingCopies).ConfigureAwait(false);
        return new PlacementBatch(this, locations.Store(locationId), artifact, policy, location, actor, commitConcurrency, cancellationToken);
    }

    /// <summary>Opens the committed bytes of <paramref name="key"/> at a location for reading, or returns null when there are none.</summary>
    public ValueTask<Stream?> OpenReadAsync(string locationId, string key, CancellationToken cancellationToken) =>
        locations.Store(locationId).OpenReadAsync(key, cancellationToken);

    /// <summary>
    /// Opens <paramref name="length"/> bytes of <paramref name="key"/> at a location from
    /// <paramref name="offset"/> (to the end when null), or returns null when there are none.
    /// </summary>
    public ValueTask<Stream?> OpenReadRangeAsync(string locationId, string key, long offset, long? length, CancellationToken cancellationToken) =>
        locations.Store(locationId).OpenReadRangeAsync(key, offset, length, cancellationToken);

    /// <summary>The committed length of <paramref name="key"/> at a location, or null when absent: an existence check that does not list the location.</summary>
    public ValueTask<long?> GetLengthAsync(string locationId, string key, CancellationToken cancellationToken) =>
        locations.Store(locationId).GetLengthAsync(key, cancellationToken);

    /// <summary>Deletes an artifact's bytes at a location and audits the deletion.</summary>
    public async ValueTask<bool> DeleteAsync(ArtifactRef artifact, string locationId, string actor, string? key = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        var existed = await locations.Store(locationId).DeleteAsync(key ?? artifact.BlobKey, cancellationToken).ConfigureAwait(false);
        await audit.AppendAsync(
            Event("deletion", artifact, actor, locationId, policy: null) with { Detail = existed ? null : "no bytes were present" },
            CancellationToken.None).ConfigureAwait(false);
        return existed;
    }

    /// <summary>
    /// Audits a committed placement; when the audit log cannot take the event (a full disk), takes
    /// the bytes back out before the error goes on, so that no byte is stored without its record.
    /// </summary>
    internal async ValueTask<AuditEvent> RecordPlacementOrUndoAsync(ArtifactRef artifact, ResidencyPolicy policy, string actor, PlacementReceipt receipt)
    {
        try
        {
            return await RecordPlacementAsync(artifact, policy, actor, receipt).ConfigureAwait(false);
        }
        catch (Exception)
        {
            try
            {
                await locations.Store(receipt.LocationId).DeleteAsync(receipt.Key, CancellationToken.None).ConfigureAwait(false);
            }
            catch (IOException)
            {
                // The bytes stay without a catalog row; the start-up sweep of orphans removes them.
            }

            throw;
        }
    }

    internal ValueTask<AuditEvent> RecordPlacementAsync(ArtifactRef artifact, ResidencyPolicy policy, string actor, PlacementReceipt receipt) =>
        audit.AppendAsync(
            Event("placement", artifact, actor, receipt.LocationId, policy) with { Bytes = receipt.Bytes, Sha256 = receipt.Sha256 },
            CancellationToken.None);

    // One event for a batch: the bytes of every blob it wrote, and the digest of their names.
    internal ValueTask<AuditEvent> RecordBatchAsync(PlacementBatch batch, PlacementBatchReceipt receipt, string? incomplete) =>
        audit.AppendAsync(
            Event("placement", batch.Artifact, batch.Actor, receipt.LocationId, batch.Policy) with
            {
                Bytes = receipt.BytesWritten,
                Sha256 = receipt.Digest,
                Detail = $"batch: {receipt.BlobsWritten} content-addressed blobs written ({receipt.BytesWritten} bytes)"
                    + (receipt.BlobsAlreadyPresent > 0 ? $", {receipt.BlobsAlreadyPresent} already present" : "")
                    + "; sha256 is the digest of their sorted content hashes"
                    + (incomplete is null ? "" : $"; incomplete: {incomplete}"),
            },
            CancellationToken.None);

    // What every event about an artifact at a location records; callers add bytes, hash or detail.
    private static AuditEvent Event(string type, ArtifactRef artifact, string actor, string locationId, ResidencyPolicy? policy) => new()
    {
        Type = type,
        Workspace = artifact.Workspace,
        Actor = actor,
        ArtifactKind = artifact.Kind,
        ArtifactId = artifact.Id,
        Location = locationId,
        Policy = policy?.Name,
    };

    // Judges a placement; a refusal is audited and thrown.
    private async ValueTask<LocationDescriptor> JudgeAsync(ArtifactRef artifact, ResidencyPolicy policy, string locationId, string actor, IReadOnlyCollection<LocationDescriptor>? existingCopies)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        ArgumentNullException.ThrowIfNull(policy);
        var location = locations.Describe(locationId);
        var decision = policy.Evaluate(location, existingCopies);
        if (!decision.Allowed)
        {
            await audit.AppendAsync(
                Event("placement_refused", artifact, actor, location.Id, policy) with { Detail = decision.Reason },
                CancellationToken.None).ConfigureAwait(false);
            throw new PlacementRefusedException(policy.Name, location.Id, decision.Reason!);
        }

        return location;
    }
}

/// <summary>
/// An allowed write in progress. Bytes written through <see cref="WriteAsync"/> are hashed and
/// counted on the way; <see cref="CommitAsync"/> makes them durable and visible and audits them.
/// </summary>
public sealed class GuardedWrite : IAsyncDisposable
{
    private readonly PlacementGuard _guard;
    private readonly PendingBlob _pending;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _bytesHashed;
    private bool _committed;

    internal GuardedWrite(PlacementGuard guard, ArtifactRef artifact, ResidencyPolicy policy, LocationDescriptor location, string actor, PendingBlob pending)
    {
        _guard = guard;
        Artifact = artifact;
        Policy = policy;
        Location = location;
        Actor = actor;
        _pending = pending;
    }

    /// <summary>The artifact being placed.</summary>
    public ArtifactRef Artifact { get; }

    /// <summary>The policy it was judged by.</summary>
    public ResidencyPolicy Policy { get; }

    /// <summary>Where the bytes are going.</summary>
    public LocationDescriptor Location { get; }

    /// <summary>Who is writing.</summary>
    public string Actor { get; }

    /// <summary>Bytes written so far.</summary>
    public long BytesWritten { get; private set; }

    /// <summary>Appends bytes. The memory must not change until the returned task completes.</summary>
    public async ValueTask WriteAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        // The write is started before the hash is computed: a local blob's stream hands the write
        // to the I/O thread pool, so the kernel's copy and the SHA-256 of the same bytes run on two
        // cores at once. Both only read the memory; the hash is still of exactly the bytes written.
        var writing = _pending.Stream.WriteAsync(bytes, cancellationToken);
        try
        {
            _hash.AppendData(bytes.Span);
        }
        finally
        {
            // Never leave the write running unobserved, even if hashing threw.
            await writing.ConfigureAwait(false);
        }

        BytesWritten += bytes.Length;
        _bytesHashed += bytes.Length;
    }

    /// <summary>
    /// Appends bytes without hashing them, for a caller that hashes them on another core with
    /// <see cref="AppendToHash"/> while the disk takes the next ones. The memory must not change
    /// until the returned task completes.
    /// </summary>
    public async ValueTask WriteUnhashedAsync(ReadOnlyMemory<byte> bytes, CancellationToken cancellationToken)
    {
        await _pending.Stream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        BytesWritten += bytes.Length;
    }

    /// <summary>
    /// Hashes bytes written with <see cref="WriteUnhashedAsync"/>: the same bytes, in the same order.
    /// The commit refuses a blob whose hashed and written lengths differ. Not to be called at the
    /// same time as another member; the caller waits for its hashing before it commits.
    /// </summary>
    public void AppendToHash(ReadOnlySpan<byte> bytes)
    {
        _hash.AppendData(bytes);
        _bytesHashed += bytes.Length;
    }

    /// <summary>Commits the bytes (fsync, atomic rename) and records the placement in the audit log.</summary>
    public async ValueTask<PlacementReceipt> CommitAsync(CancellationToken cancellationToken)
    {
        if (_bytesHashed != BytesWritten)
        {
            throw new InvalidOperationException($"The blob's hash covers {_bytesHashed} bytes of the {BytesWritten} written; it is not committed.");
        }

        await _pending.CommitAsync(cancellationToken).ConfigureAwait(false);
        var receipt = new PlacementReceipt(Location.Id, _pending.Key, BytesWritten, Convert.ToHexStringLower(_hash.GetHashAndReset()));
        await _guard.RecordPlacementOrUndoAsync(Artifact, Policy, Actor, receipt).ConfigureAwait(false);
        _committed = true;
        return receipt;
    }

    /// <summary>True once committed.</summary>
    public bool IsCommitted => _committed;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _pending.DisposeAsync().ConfigureAwait(false);
        _hash.Dispose();
    }
}
