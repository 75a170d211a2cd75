using System.Globalization;

namespace Atelier.Vectors.Collections.Wal;

/// <summary>
/// The names of a shard's log and snapshot blobs: <c>&lt;prefix&gt;log-NNNNNNNNNNNN</c> and
/// <c>&lt;prefix&gt;snap-NNNNNNNNNNNN</c>, zero-padded so that a listing sorts them by sequence number.
/// </summary>
internal static class LogKeys
{
    /// <summary>The key of log blob <paramref name="seq"/>.</summary>
    public static string Log(string prefix, long seq) => $"{prefix}log-{seq:D12}";

    /// <summary>The key of the snapshot covering the log up to <paramref name="seq"/>.</summary>
    public static string Snapshot(string prefix, long seq) => $"{prefix}snap-{seq:D12}";

    /// <summary>The kind (log or snapshot) and sequence number a shard blob key names; null for other keys.</summary>
    public static (LogBlobKind Kind, long Seq)? Parse(string key, string prefix)
    {
        var name = key.AsSpan(prefix.Length);
        LogBlobKind kind;
        if (name.StartsWith("log-", StringComparison.Ordinal))
        {
            kind = LogBlobKind.Upsert;
            name = name[4..];
        }
        else if (name.StartsWith("snap-", StringComparison.Ordinal))
        {
            kind = LogBlobKind.Snapshot;
            name = name[5..];
        }
        else
        {
            return null;
        }

        return long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var seq) ? (kind, seq) : null;
    }
}
