using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Atelier.Data.Building;

namespace Atelier.Training.Loading;

/// <summary>One Arrow IPC token shard the loader reads.</summary>
/// <param name="Name">The shard's name in errors and in the fingerprint (for a dataset version, its path in the manifest).</param>
/// <param name="Rows">The windows the shard declares (the manifest's row count); a shard holding another number is rejected.</param>
/// <param name="OpenAsync">Opens a new readable, seekable stream over the shard; called once per concurrent reader, the loader disposes it.</param>
public sealed record ShardSource(string Name, long Rows, Func<CancellationToken, ValueTask<Stream>> OpenAsync)
{
    /// <summary>
    /// The shard's content hash when known (the manifest's SHA-256). Part of the fingerprint, so a
    /// rebuilt dataset with the same names and row counts but other bytes does not resume silently.
    /// </summary>
    public string? ContentHash { get; init; }
}

/// <summary>Builds <see cref="ShardSource"/> lists and their fingerprints.</summary>
public static class ShardSources
{
    private const string ManifestFile = "manifest.json";

    /// <summary>
    /// The token shards of a local dataset version directory (as <see cref="DatasetBuilder"/>
    /// writes it), in manifest order, with the manifest's row counts and hashes.
    /// </summary>
    /// <exception cref="InvalidDataException">The directory has no manifest, or a shard path leaves the directory.</exception>
    public static IReadOnlyList<ShardSource> FromDatasetDirectory(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        string root = Path.GetFullPath(directory);
        string manifestPath = Path.Combine(root, ManifestFile);
        if (!File.Exists(manifestPath))
        {
            throw new InvalidDataException($"{root} is not a dataset version: it has no {ManifestFile} (an unfinished build has none).");
        }

        DatasetManifest manifest = DatasetJson.ReadManifest(manifestPath);
        var sources = new List<ShardSource>(manifest.Shards.Count);
        string prefix = root.EndsWith(Path.DirectorySeparatorChar) ? root : root + Path.DirectorySeparatorChar;
        foreach (DatasetFile shard in manifest.Shards)
        {
            string path = Path.GetFullPath(Path.Combine(root, shard.Path));
            if (!path.StartsWith(prefix, StringComparison.Ordinal))
            {
                throw new InvalidDataException($"{manifestPath}: shard path '{shard.Path}' leaves the dataset directory.");
            }

            sources.Add(new ShardSource(shard.Path, shard.Rows, _ => ValueTask.FromResult<Stream>(OpenFile(path))) { ContentHash = shard.Sha256 });
        }

        return sources;
    }

    /// <summary>
    /// The fingerprint of a shard list: SHA-256 over each shard's name, row count and content hash,
    /// in order. The shuffle depends on exactly this, so a position is only valid for the same fingerprint.
    /// </summary>
    public static string Fingerprint(IReadOnlyList<ShardSource> shards)
    {
        ArgumentNullException.ThrowIfNull(shards);
        var text = new StringBuilder();
        foreach (ShardSource shard in shards)
        {
            // Tab and newline cannot occur in the numbers or hashes; names are length-prefixed.
            text.Append(CultureInfo.InvariantCulture, $"{shard.Name.Length}:{shard.Name}\t{shard.Rows}\t{shard.ContentHash}\n");
        }

        return "sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// A shard on a store read by ranged requests (an S3-compatible location, whose whole-object
    /// streams cannot seek): its stream fetches exactly each range the loader reads, one request per
    /// (coalesced) range read. The length is asked once, on the first open, and kept: shards are
    /// immutable blobs. With the placement guard:
    /// <c>ShardSources.FromRangeReads(name, rows, hash, ct => guard.GetLengthAsync(...), (offset, length, ct) => guard.OpenReadRangeAsync(...))</c>.
    /// </summary>
    /// <param name="name">The shard's name (for a dataset version, its path in the manifest).</param>
    /// <param name="rows">The windows the manifest declares.</param>
    /// <param name="contentHash">The manifest's SHA-256, when known.</param>
    /// <param name="lengthAsync">The object's length in bytes.</param>
    /// <param name="openRangeAsync">Opens <c>length</c> bytes from <c>offset</c> (the two longs, in that order).</param>
    public static ShardSource FromRangeReads(
        string name,
        long rows,
        string? contentHash,
        Func<CancellationToken, ValueTask<long>> lengthAsync,
        Func<long, long, CancellationToken, ValueTask<Stream>> openRangeAsync)
    {
        ArgumentNullException.ThrowIfNull(lengthAsync);
        ArgumentNullException.ThrowIfNull(openRangeAsync);
        long length = -1;
        return new ShardSource(name, rows, async cancellationToken =>
        {
            // A benign race: two first opens may both ask; both get the same answer.
            long known = Volatile.Read(ref length);
            if (known < 0)
            {
                known = await lengthAsync(cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref length, known);
            }

            return new RangeReadStream(known, openRangeAsync);
        })
        { ContentHash = contentHash };
    }

    /// <summary>
    /// The same shards with <paramref name="latency"/> added to opening each stream and to each read
    /// at a new position, as a store on a remote rack or in a cloud adds a round trip per range read
    /// (<c>TopologyMap.Latency</c> gives realistic figures). For tests and benchmarks: the loader's
    /// output must not change, only how long reading takes. Names, rows and hashes (the fingerprint)
    /// stay the same.
    /// </summary>
    /// <param name="shards">The shards to slow down.</param>
    /// <param name="latency">The wait per open and per range read.</param>
    /// <param name="timeProvider">The clock the waits run on (the system's by default).</param>
    public static IReadOnlyList<ShardSource> WithReadLatency(IReadOnlyList<ShardSource> shards, TimeSpan latency, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(shards);
        ArgumentOutOfRangeException.ThrowIfLessThan(latency, TimeSpan.Zero);
        TimeProvider clock = timeProvider ?? TimeProvider.System;
        var slowed = new ShardSource[shards.Count];
        for (int i = 0; i < slowed.Length; i++)
        {
            ShardSource shard = shards[i];
            slowed[i] = shard with
            {
                OpenAsync = async cancellationToken =>
                {
                    await Task.Delay(latency, clock, cancellationToken).ConfigureAwait(false);
                    return new LatencyInjectingStream(await shard.OpenAsync(cancellationToken).ConfigureAwait(false), latency, clock);
                },
            };
        }

        return slowed;
    }

    // No FileStream buffer: every read is a positioned read of a whole column slice.
    private static FileStream OpenFile(string path) =>
        new(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.Read, BufferSize = 0, Options = FileOptions.RandomAccess });
}
