using System.Globalization;
using Atelier.Core.IO;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Collections.Wal;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Collections.Shards;

/// <summary>
/// A shard whose vectors live in a segment file also saves its graph beside them at each snapshot (the
/// persisted HNSW segments the embedding table used to keep), so that opening it maps the graph instead of rebuilding it
/// from every vector. The saved graph is derived data: the snapshot and log blobs stay the truth, and a
/// saved graph that does not match them exactly is ignored and rebuilt.
/// </summary>
internal sealed partial class CollectionShard
{
    /// <summary>The file naming the snapshot sequence number the saved graph holds exactly.</summary>
    private const string CoveredFileName = "GRAPH-COVERS";

    /// <summary>
    /// Saves the graph and flushes the vectors after snapshot <paramref name="covered"/> committed. Called
    /// under the collection's write lock, so the graph holds exactly the snapshot's points.
    /// </summary>
    public void SaveGraph(long covered)
    {
        if (Segment is null)
        {
            return;
        }

        string directory = Path.GetDirectoryName(Segment.Path)!;

        // The marker goes first and comes back last: a crash in between leaves no marker, so the next open
        // rebuilds rather than trusting a graph that may be half saved or ahead of the snapshots.
        ForgetSavedGraph(directory);
        AtomicFile.DeleteTemporaryFiles(directory, CoveredFileName);
        Segment.Flush();
        SavedPayloads.Write(directory, covered, SnapshotBytes, _points);
        Index.Save(directory);
        AtomicFile.WriteAllBytes(Path.Combine(directory, CoveredFileName), System.Text.Encoding.ASCII.GetBytes(covered.ToString(CultureInfo.InvariantCulture)));
    }

    /// <summary>Whether the shard was opened from its saved graph rather than rebuilt (tests).</summary>
    internal bool OpenedFromSavedGraph { get; private init; }

    /// <summary>The snapshot the graph saved in <paramref name="directory"/> holds; null when none is marked.</summary>
    private static long? SavedGraphCovers(string directory)
    {
        string path = Path.Combine(directory, CoveredFileName);
        return File.Exists(path) && long.TryParse(File.ReadAllText(path), NumberStyles.None, CultureInfo.InvariantCulture, out var covered) ? covered : null;
    }

    /// <summary>Forgets the saved graph: the rebuild that follows replaces it.</summary>
    private static void ForgetSavedGraph(string directory)
    {
        // File.Delete throws when the directory itself is missing (a shard opened for the first time).
        string path = Path.Combine(directory, CoveredFileName);
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Opens the shard from the graph saved at snapshot <paramref name="snapshot"/>: maps it, reads the payloads
    /// from the snapshot blob, then applies the log after it blob by blob. Null when the saved graph cannot be
    /// read or does not hold exactly the snapshot's points (the caller rebuilds); a blob that cannot be read
    /// is an error, as it is for a rebuild.
    /// </summary>
    private static async Task<CollectionShard?> TryOpenSavedGraphAsync(
        CollectionRecord record, PlacementGuard guard, int number, string location, string prefix, string directory, FullVectorCache cache, (long Seq, string Key) snapshot, List<(long Seq, string Key)> logs)
    {
        var config = record.Config;
        var segment = new VectorSegmentFile(directory, config.Dimension, cache, truncate: false);
        HnswIndex index;
        try
        {
            index = HnswIndex.Open(directory, verifyChecksums: false, segment);
        }
        catch (Exception e) when (e is VectorStoreCorruptedException or IOException)
        {
            segment.Dispose();
            return null;
        }

        if (index.Options.ProductQuantizationSubspaces != (config.Storage == VectorStorage.Int8 ? config.ProductQuantization : 0))
        {
            // Saved under another code layout: the rebuild trains the one the configuration asks for.
            index.Dispose();
            segment.Dispose();
            return null;
        }

        try
        {
            // Records past the saved node count belong to inserts after the save; the log replays them.
            segment.TruncateTo(index.NodeCount);
        }
        catch (VectorStoreCorruptedException)
        {
            index.Dispose();
            segment.Dispose();
            return null;
        }

        var shard = new CollectionShard(number, location, prefix, index, segment) { SnapshotSeq = snapshot.Seq, OpenedFromSavedGraph = true };
        try
        {
            if (SavedPayloads.TryRead(directory, snapshot.Seq) is { } saved)
            {
                // The payloads were saved with the graph at this snapshot: the snapshot blob (every vector
                // again) need not be read. The graph's node table already says which points are live.
                shard.SnapshotBytes = saved.SnapshotBytes;
                foreach (var (id, payload) in saved.Payloads)
                {
                    if (!index.Contains(id))
                    {
                        shard.Dispose();
                        return null;
                    }

                    shard.SetPayload(id, payload);
                }

                await ApplyLogAfterAsync(shard, guard, location, config.Dimension, snapshot.Seq, logs).ConfigureAwait(false);
                return shard;
            }

            int points = 0;
            bool matches = true;
            shard.SnapshotBytes = await ReadBlobAsync(guard, location, snapshot.Key, config.Dimension, (_, id, _, payload) =>
            {
                points++;
                if (index.Contains(id))
                {
                    shard.SetPayload(id, payload!);
                }
                else
                {
                    matches = false;
                }
            }).ConfigureAwait(false);
            if (!matches || points != index.Count)
            {
                shard.Dispose();
                return null;
            }

            await ApplyLogAfterAsync(shard, guard, location, config.Dimension, snapshot.Seq, logs).ConfigureAwait(false);
            return shard;
        }
        catch
        {
            shard.Dispose();
            throw;
        }
    }

    /// <summary>Applies the log blobs after the snapshot, in order, and sets the next sequence number.</summary>
    private static async Task ApplyLogAfterAsync(CollectionShard shard, PlacementGuard guard, string location, int dimension, long snapshotSeq, List<(long Seq, string Key)> logs)
    {
        long maxSeq = snapshotSeq;
        foreach (var (seq, key) in logs.OrderBy(l => l.Seq))
        {
            maxSeq = Math.Max(maxSeq, seq);
            if (seq <= snapshotSeq)
            {
                continue;
            }

            // One blob holds one kind of batch, each id once: it is applied as the batch was.
            var batch = new List<LogPoint>();
            var kind = LogBlobKind.Upsert;
            shard.LogBytes += await ReadBlobAsync(guard, location, key, dimension, (k, id, vector, payload) =>
            {
                kind = k;
                batch.Add(new LogPoint(id, vector ?? [], payload ?? Payload.Empty));
            }).ConfigureAwait(false);
            shard.LogBlobs++;
            if (kind == LogBlobKind.Delete)
            {
                shard.ApplyDeletes([.. batch.Select(p => p.Id)]);
            }
            else
            {
                shard.ApplyUpserts(batch, dimension);
            }
        }

        shard.NextSeq = maxSeq + 1;
    }
}
