using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Text;
using System.Threading.Channels;
using Atelier.Core.Residency;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Placement;

/// <summary>What a completed <see cref="PlacementBatch"/> placed.</summary>
/// <param name="LocationId">The location.</param>
/// <param name="BlobsWritten">Blobs written and committed by the batch.</param>
/// <param name="BytesWritten">Their bytes.</param>
/// <param name="BlobsAlreadyPresent">Blobs whose key another writer committed first (same key, same content: nothing to write).</param>
/// <param name="Digest">
/// SHA-256 over the content hashes of the blobs written, sorted, each as 64 lower-case hex digits
/// followed by <c>\n</c>: what the batch's audit event records as its <c>sha256</c>, so an auditor
/// can check it against the artifact's list of chunks. Null when nothing was written.
/// </param>
public sealed record PlacementBatchReceipt(string LocationId, int BlobsWritten, long BytesWritten, int BlobsAlreadyPresent, string? Digest);

/// <summary>
/// Many content-addressed writes of one artifact at one location, judged once and audited once:
/// how a checkpoint places its chunks. Each blob is written by <see cref="StageAsync"/> (into the
/// page cache, invisible) and handed to a pool of committers that make it durable and visible
/// (fsync, atomic rename, directory fsync) while the next blobs are being written, many at a time,
/// the way <c>dd</c> leaves the disk a deep queue instead of one synchronous write after another.
/// Once durable, a blob's pages are dropped from the OS page cache: batches write bytes that are
/// not read back soon (see <c>PageCache</c>).
/// <see cref="CompleteAsync"/> waits for every commit and then records one <c>placement</c> audit
/// event for the whole batch (count, bytes, digest of the names).
/// <para>
/// Content addressing is what makes the batch safe to run concurrently with other writers: every
/// key names its content (it ends with the content's SHA-256, checked), so a key that someone else
/// committed first holds the same bytes, and losing that race is success, not an error.
/// </para>
/// <para>
/// Audit and crashes: the batch event is written (and fsynced) after the last commit and before
/// <see cref="CompleteAsync"/> returns, so before the caller can make anything reference the blobs
/// (a manifest, committed after it). A crash between a commit and that event leaves blobs no
/// manifest references, which start-up recovery sweeps (each deletion audited). A batch disposed
/// without completing (a failure) stops committing, throws away what was staged, and audits what
/// it had already committed, marked incomplete.
/// </para>
/// </summary>
public sealed class PlacementBatch : IAsyncDisposable
{
    private readonly PlacementGuard _guard;
    private readonly IBlobStore _store;
    private readonly Channel<Staged> _staged;
    private readonly Task[] _committers;
    private readonly CancellationToken _cancellationToken;
    private readonly ConcurrentQueue<string> _written = new();
    private ExceptionDispatchInfo? _failure;
    private long _bytesWritten;
    private int _blobsWritten;
    private int _blobsPresent;
    private volatile bool _abandoned;
    private bool _finished;

    internal PlacementBatch(PlacementGuard guard, IBlobStore store, ArtifactRef artifact, ResidencyPolicy policy, LocationDescriptor location, string actor, int commitConcurrency, CancellationToken cancellationToken)
    {
        _guard = guard;
        _store = store;
        Artifact = artifact;
        Policy = policy;
        Location = location;
        Actor = actor;
        _cancellationToken = cancellationToken;

        // Bounded: writers wait when the committers fall behind, so the bytes staged but not yet
        // durable (dirty page cache, open files) stay within twice the commits in flight. A small
        // window also keeps the set of page-cache pages being recycled small (see PageCache).
        _staged = Channel.CreateBounded<Staged>(new BoundedChannelOptions(commitConcurrency) { SingleReader = false, SingleWriter = false });

        // Commits are blocking syscalls (fsync, rename, directory fsync) behind an async API: a local
        // store's CommitAsync completes synchronously after waiting on the disk for milliseconds. On
        // thread-pool threads, a deep commit queue would hold as many pool threads as commits in flight
        // and starve the few (one per core) that keep hashing and writing the next chunks. So each
        // committer is an async loop on a dedicated thread: it awaits the channel and the commit, and
        // its continuations come back to its own thread (see DedicatedThread) instead of blocking on
        // tasks. A store whose commit is truly asynchronous (network) simply frees the thread meanwhile.
        _committers = new Task[commitConcurrency];
        for (var i = 0; i < _committers.Length; i++)
        {
            _committers[i] = DedicatedThread.Run(CommitLoopAsync, "Atelier placement committer");
        }
    }

    /// <summary>The artifact the blobs belong to.</summary>
    public ArtifactRef Artifact { get; }

    /// <summary>The policy the location was judged by (once, when the batch began).</summary>
    public ResidencyPolicy Policy { get; }

    /// <summary>Where the blobs go.</summary>
    public LocationDescriptor Location { get; }

    /// <summary>Who is writing.</summary>
    public string Actor { get; }

    /// <summary>Blobs committed so far.</summary>
    public int BlobsWritten => Volatile.Read(ref _blobsWritten);

    /// <summary>Bytes of the blobs committed so far.</summary>
    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    /// <summary>
    /// Writes <paramref name="content"/> under <paramref name="key"/> (which must end with the
    /// content's SHA-256) and queues its commit. Returns once the bytes are written and queued;
    /// they are durable and visible only once <see cref="CompleteAsync"/> returns. Throws the
    /// batch's first failure once there is one.
    /// </summary>
    public async ValueTask StageAsync(string key, HashedContent content, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(content);
        if (!key.EndsWith(content.Sha256, StringComparison.Ordinal))
        {
            // The race rule (a taken key holds the same bytes) is only true of content addresses.
            throw new ArgumentException($"Key '{key}' does not name its content (sha256 {content.Sha256}); a placement batch takes content-addressed keys only.", nameof(key));
        }

        ObjectDisposedException.ThrowIf(_finished, this);
        ThrowIfFailed();
        var pending = await _store.BeginWriteAsync(key, cancellationToken).ConfigureAwait(false);
        try
        {
            await pending.Stream.WriteAsync(content.Bytes, cancellationToken).ConfigureAwait(false);
            await _staged.Writer.WriteAsync(new Staged(pending, content), cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await pending.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Waits until every staged blob is committed (durable and visible), records the batch in the
    /// audit log (one event, when anything was written), and returns what it placed. Throws the
    /// first failure of a write or a commit instead, leaving the batch to be disposed.
    /// </summary>
    public async ValueTask<PlacementBatchReceipt> CompleteAsync(CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_finished, this);
        _staged.Writer.TryComplete();
        await Task.WhenAll(_committers).WaitAsync(cancellationToken).ConfigureAwait(false);
        ThrowIfFailed();
        _finished = true;
        var receipt = Receipt();
        if (receipt.BlobsWritten > 0)
        {
            await _guard.RecordBatchAsync(this, receipt, incomplete: null).ConfigureAwait(false);
        }

        return receipt;
    }

    /// <summary>
    /// Ends the batch. Without a successful <see cref="CompleteAsync"/>, commits nothing more,
    /// throws away what was staged, and audits (marked incomplete) what was already committed.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (_finished)
        {
            return;
        }

        _finished = true;
        _abandoned = true;
        _staged.Writer.TryComplete();
        await Task.WhenAll(_committers).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        var receipt = Receipt();
        if (receipt.BlobsWritten > 0)
        {
            var why = _failure?.SourceException.Message ?? "the batch was abandoned";
            await _guard.RecordBatchAsync(this, receipt, incomplete: why).ConfigureAwait(false);
        }
    }

    private PlacementBatchReceipt Receipt()
    {
        var hashes = _written.ToArray();
        string? digest = null;
        if (hashes.Length > 0)
        {
            Array.Sort(hashes, StringComparer.Ordinal);
            var text = new StringBuilder(hashes.Length * 65);
            foreach (var hash in hashes)
            {
                text.Append(hash).Append('\n');
            }

            digest = Convert.ToHexStringLower(SHA256.HashData(Encoding.ASCII.GetBytes(text.ToString())));
        }

        return new PlacementBatchReceipt(Location.Id, hashes.Length, BytesWritten, Volatile.Read(ref _blobsPresent), digest);
    }

    private void ThrowIfFailed() => Volatile.Read(ref _failure)?.Throw();

    private async Task CommitLoopAsync()
    {
        var reader = _staged.Reader;

        // ConfigureAwait(true): resume on this committer's own thread (see the constructor), so the
        // blocking part of the next commit runs there, not on a thread-pool thread.
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(true))
        {
            while (reader.TryRead(out var item))
            {
                await CommitAsync(item).ConfigureAwait(true);
            }
        }
    }

    private async ValueTask CommitAsync(Staged item)
    {
        try
        {
            if (_abandoned || Volatile.Read(ref _failure) is not null)
            {
                // Drain without committing; disposal below throws the bytes away.
                return;
            }

            try
            {
                await item.Pending.CommitAsync(_cancellationToken).ConfigureAwait(false);
            }
            catch (IOException)
            {
                if (await _store.GetLengthAsync(item.Pending.Key, CancellationToken.None).ConfigureAwait(false) != item.Content.Bytes.Length)
                {
                    throw;
                }

                // Another writer committed the same key between our write and our rename (the rename
                // never overwrites). The key names the content: that copy serves.
                Interlocked.Increment(ref _blobsPresent);
                return;
            }

            _written.Enqueue(item.Content.Sha256);
            Interlocked.Add(ref _bytesWritten, item.Content.Bytes.Length);
            Interlocked.Increment(ref _blobsWritten);
            await PageCache.DropAsync(_store, item.Pending.Key, _cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null);
        }
        finally
        {
            try
            {
                await item.Pending.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // A temp file that cannot be removed now is an orphan for start-up recovery.
            }
        }
    }

    private readonly record struct Staged(PendingBlob Pending, HashedContent Content);
}
