using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Atelier.Storage.Audit;

/// <summary>
/// The append-only, hash-chained audit log: one JSON object per line in <c>audit.jsonl</c>.
/// Each line is written and fsynced before the operation it records is acknowledged. The hash of
/// an event is SHA-256 over its line as written without the trailing <c>"hash"</c> member, so a
/// verifier needs nothing but the file.
/// </summary>
public sealed class AuditLog : IDisposable
{
    /// <summary>The hash that the first event links to.</summary>
    public const string GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly TimeProvider _clock;
    private readonly FileStream _file;
    private long _seq;
    private string _head;

    /// <summary>The size of the space reserve kept beside the log (see <see cref="SpaceReserve"/>).</summary>
    public const long DefaultReserveBytes = 1024 * 1024;

    /// <summary>
    /// Opens the log in <paramref name="directory"/>, creating it if needed, and repairs a torn last
    /// line. With <paramref name="reserveBytes"/> above zero it keeps a <see cref="SpaceReserve"/> of
    /// that size in the directory, given up when an event that frees space finds the disk full.
    /// </summary>
    public AuditLog(string directory, TimeProvider clock, long reserveBytes = 0)
    {
        _clock = clock;
        Directory.CreateDirectory(directory);
        Path = System.IO.Path.Combine(directory, "audit.jsonl");
        _file = new FileStream(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 0);
        (_seq, _head) = RecoverTail(_file);
        _file.Seek(0, SeekOrigin.End);
        if (reserveBytes > 0)
        {
            Reserve = new SpaceReserve(System.IO.Path.Combine(directory, "space.reserve"), reserveBytes);
            Reserve.TryRestore();
        }
    }

    /// <summary>The space given up so that deletions work on a full disk; null when the log keeps none.</summary>
    public SpaceReserve? Reserve { get; }

    /// <summary>True for the events of operations that free space (a deletion), which may use the reserve.</summary>
    public static bool FreesSpace(AuditEvent draft) => draft is { Type: "deletion" or "key_revoked" };

    /// <summary>The log file.</summary>
    public string Path { get; }

    /// <summary>The sequence number of the last event.</summary>
    public long LastSeq => Volatile.Read(ref _seq);

    /// <summary>Appends an event, durably, and returns it with its sequence number and hashes.</summary>
    public async ValueTask<AuditEvent> AppendAsync(AuditEvent draft, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(draft);

        // Audit appends must not be abandoned half-way by a cancelled request: the operation they
        // record has already happened, so the wait is cancellable but the write is not.
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            return AppendLocked(draft);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// Signs the current head with <paramref name="signer"/> and records the export as an
    /// <c>audit_head_exported</c> event, which is the event right after the head: both happen
    /// under the append lock, so no other event comes between them.
    /// </summary>
    /// <param name="signer">The key that signs heads.</param>
    /// <param name="actor">Who exported it.</param>
    /// <param name="workspace">The exporter's workspace id, which the export event carries.</param>
    /// <param name="cancellationToken">Cancels waiting for the append lock.</param>
    public async ValueTask<AuditHead> ExportHeadAsync(AuditHeadSigner signer, string actor, string workspace, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(signer);
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var head = signer.Sign(_seq, _head, _clock.GetUtcNow());
            AppendLocked(new AuditEvent { Type = "audit_head_exported", Workspace = workspace, Actor = actor, ArtifactKind = "audit_head", ArtifactId = head.KeyId, Detail = $"head seq {head.Seq} hash {head.Hash}" });
            return head;
        }
        finally
        {
            _gate.Release();
        }
    }

    // The caller holds _gate: _seq and _head change together, and lines never interleave.
    private AuditEvent AppendLocked(AuditEvent draft)
    {
        System.Diagnostics.Debug.Assert(_gate.CurrentCount == 0, "AppendLocked needs the append lock.");
        var unsigned = draft with { Seq = _seq + 1, Time = _clock.GetUtcNow(), PrevHash = _head, Hash = null };
        var body = JsonSerializer.SerializeToUtf8Bytes(unsigned, JsonOptions);
        var hash = Convert.ToHexStringLower(SHA256.HashData(body));
        var suffix = Encoding.ASCII.GetBytes($",\"hash\":\"{hash}\"}}\n");
        var line = new byte[body.Length - 1 + suffix.Length];
        body.AsSpan(0, body.Length - 1).CopyTo(line);
        suffix.CopyTo(line.AsSpan(body.Length - 1));
        if (!TryWrite(line, out var full))
        {
            // The operation that frees space must still be recorded: give up the reserve for it.
            if (!FreesSpace(draft) || Reserve is null || !Reserve.Release() || !TryWrite(line, out full))
            {
                throw new Core.Errors.StorageUnavailableException("The disk holding the audit log is full; the operation was not recorded.", full);
            }
        }
        else if (Reserve is not null && !FreesSpace(draft) && !Reserve.IsHeld)
        {
            // Space came back: hold the reserve again for the next full disk.
            Reserve.TryRestore();
        }

        _seq++;
        _head = hash;
        return unsigned with { Hash = hash };
    }

    // Appends a whole line or nothing: a write cut short by a full disk is truncated away, so the
    // next append does not follow a torn line and break the chain.
    private bool TryWrite(byte[] line, out IOException? full)
    {
        var end = _file.Length;
        try
        {
            _file.Write(line);
            _file.Flush(flushToDisk: true);
            full = null;
            return true;
        }
        catch (IOException e) when (Blobs.LocalDirectoryBlobStore.IsDiskFull(e))
        {
            _file.SetLength(end);
            _file.Seek(end, SeekOrigin.Begin);
            full = e;
            return false;
        }
    }

    /// <summary>Reads events with <c>seq &gt; afterSeq</c>, oldest first, at most <paramref name="limit"/>.</summary>
    public IReadOnlyList<AuditEvent> Read(long afterSeq, int limit, Func<AuditEvent, bool>? filter = null)
    {
        var result = new List<AuditEvent>();
        foreach (var (evt, _) in ReadLines())
        {
            if (evt is null || evt.Seq <= afterSeq || (filter is not null && !filter(evt)))
            {
                continue;
            }

            result.Add(evt);
            if (result.Count >= limit)
            {
                break;
            }
        }

        return result;
    }

    /// <summary>Reads the newest <paramref name="count"/> events, oldest first.</summary>
    public IReadOnlyList<AuditEvent> Tail(int count, Func<AuditEvent, bool>? filter = null)
    {
        var ring = new Queue<AuditEvent>(count);
        foreach (var (evt, _) in ReadLines())
        {
            if (evt is null || (filter is not null && !filter(evt)))
            {
                continue;
            }

            if (ring.Count == count)
            {
                ring.Dequeue();
            }

            ring.Enqueue(evt);
        }

        return [.. ring];
    }

    /// <summary>Checks every event's hash and its link to the previous one.</summary>
    public AuditVerification Verify() => VerifyChain(ReadLines(), verified: null);

    /// <summary>
    /// Checks the chain of a log given as JSON lines (the export format), as <see cref="Verify()"/>
    /// checks this log's file: a copy can be verified away from the server.
    /// </summary>
    public static AuditVerification Verify(Stream jsonLines)
    {
        ArgumentNullException.ThrowIfNull(jsonLines);
        return VerifyChain(ReadLines(jsonLines), verified: null);
    }

    /// <summary>Checks this log against a head exported earlier (see <see cref="AuditHeadVerifier"/>).</summary>
    public AuditHeadVerification Verify(AuditHead head, ReadOnlySpan<byte> pinnedPublicKey = default)
    {
        using var reader = OpenRead();
        return AuditHeadVerifier.Verify(head, reader, pinnedPublicKey);
    }

    /// <summary>
    /// Walks the chain from the genesis hash; <paramref name="verified"/> sees each event whose
    /// hash and link check out, in order, up to the first that does not.
    /// </summary>
    internal static AuditVerification VerifyChain(IEnumerable<(AuditEvent? Event, byte[] Line)> lines, Action<AuditEvent>? verified)
    {
        var prev = GenesisHash;
        long n = 0;
        foreach (var (evt, line) in lines)
        {
            n++;
            if (evt is null)
            {
                return new AuditVerification(false, n - 1, n, "line is not a valid event", prev);
            }

            if (evt.Seq != n)
            {
                return new AuditVerification(false, n - 1, evt.Seq, $"expected seq {n}, found {evt.Seq} (an event was removed or reordered)", prev);
            }

            if (evt.PrevHash != prev)
            {
                return new AuditVerification(false, n - 1, evt.Seq, "prev_hash does not match the previous event's hash", prev);
            }

            var computed = HashOfLine(line);
            if (computed is null || computed != evt.Hash)
            {
                return new AuditVerification(false, n - 1, evt.Seq, "the event's content does not match its hash (it was edited)", prev);
            }

            verified?.Invoke(evt);
            prev = computed;
        }

        return new AuditVerification(true, n, null, null, prev);
    }

    /// <summary>Copies the raw log (JSON lines) to <paramref name="destination"/>.</summary>
    public async Task ExportAsync(Stream destination, CancellationToken cancellationToken)
    {
        using var reader = OpenRead();
        await reader.CopyToAsync(destination, cancellationToken).ConfigureAwait(false);
    }

    // Readers share the file with the appender.
    private FileStream OpenRead() => new(Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 1 << 16);

    /// <inheritdoc />
    public void Dispose()
    {
        _file.Dispose();
        _gate.Dispose();
    }

    private static string? HashOfLine(ReadOnlySpan<byte> line)
    {
        // The hash member is always last: `...,"hash":"<64 hex>"}`.
        const int suffix = 8 + 1 + 64 + 2;
        if (line.Length < suffix + 2 || !line[^suffix..].StartsWith(",\"hash\":\""u8))
        {
            return null;
        }

        var body = new byte[line.Length - suffix + 1];
        line[..^suffix].CopyTo(body);
        body[^1] = (byte)'}';
        return Convert.ToHexStringLower(SHA256.HashData(body));
    }

    private IEnumerable<(AuditEvent? Event, byte[] Line)> ReadLines()
    {
        using var reader = OpenRead();
        foreach (var entry in ReadLines(reader))
        {
            yield return entry;
        }
    }

    /// <summary>The events of JSON lines, each with its bytes as hashed; null for a line that is not an event.</summary>
    internal static IEnumerable<(AuditEvent? Event, byte[] Line)> ReadLines(Stream jsonLines)
    {
        using var text = new StreamReader(jsonLines, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, bufferSize: -1, leaveOpen: true);
        while (text.ReadLine() is { } line)
        {
            if (line.Length == 0)
            {
                continue;
            }

            var bytes = Encoding.UTF8.GetBytes(line);
            AuditEvent? evt;
            try
            {
                evt = JsonSerializer.Deserialize<AuditEvent>(bytes, JsonOptions);
            }
            catch (JsonException)
            {
                evt = null;
            }

            yield return (evt, bytes);
        }
    }

    /// <summary>
    /// Finds the last complete event. A crash in the middle of an append leaves a last line with no
    /// newline; that event was never acknowledged, so it is cut off. Complete lines are never
    /// touched here, even when they fail to verify: that is for <see cref="Verify()"/> to report.
    /// </summary>
    private static (long Seq, string Head) RecoverTail(FileStream file)
    {
        if (file.Length == 0)
        {
            return (0, GenesisHash);
        }

        var all = new byte[file.Length];
        file.Seek(0, SeekOrigin.Begin);
        file.ReadExactly(all);
        var end = all.Length;
        if (all[^1] != (byte)'\n')
        {
            end = Array.LastIndexOf(all, (byte)'\n') + 1;
            file.SetLength(end);
            file.Flush(flushToDisk: true);
        }

        if (end == 0)
        {
            return (0, GenesisHash);
        }

        var lastStart = end >= 2 ? Array.LastIndexOf(all, (byte)'\n', end - 2) + 1 : 0;
        var last = JsonSerializer.Deserialize<AuditEvent>(all.AsSpan(lastStart, end - lastStart - 1), JsonOptions)
            ?? throw new InvalidDataException("The last audit event is unreadable.");
        return (last.Seq, last.Hash ?? GenesisHash);
    }
}
