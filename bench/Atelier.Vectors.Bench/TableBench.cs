using System.Diagnostics;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections;

namespace Atelier.Vectors.Bench;

/// <summary>
/// An int8 collection whose full vectors do not fit its memory budget, through the collection store the
/// server runs: build (every batch through the log), compact (snapshot and saved graph), reopen with the
/// vector cache capped to a fraction of the vector bytes, then sweep ef for recall, QPS and latency.
/// Shards spread their segment files over the given directories, one per drive.
/// </summary>
internal static class TableBench
{
    private const string Workspace = "bench";
    private const int UpsertBatch = 10_000;

    public static int Run(string dataPath, double budgetFraction, int[] efs, string output, string[] directories)
    {
        var data = BenchData.Load(dataPath);
        long tableBytes = (long)data.Count * data.Dimension * sizeof(float);
        long budget = (long)(tableBytes * budgetFraction);
        foreach (string d in directories)
        {
            if (Directory.Exists(d))
            {
                Directory.Delete(d, recursive: true);
            }
        }

        // The log and snapshots live at one local location on the first drive; the segments on every drive.
        string blobs = Path.Combine(directories[0], "blobs");
        var catalog = new BenchCatalog();
        var options = new CollectionStoreOptions
        {
            VectorSegmentDirectories = [.. directories.Select(d => Path.Combine(d, "segments"))],
            VectorCacheBytes = budget,
            MinSnapshotLogBytes = long.MaxValue,
        };
        var config = new CollectionConfig
        {
            Dimension = data.Dimension,
            Metric = DistanceMetric.L2,
            Storage = VectorStorage.Int8,
            Shards = 4,
            Locations = ["local"],
            M = 16,
            EfConstruction = 100,
        };

        long start = Stopwatch.GetTimestamp();
        using (var opened = Open(blobs, catalog, options))
        {
            var collection = opened.Store.CreateAsync(Workspace, "table", config, "any", "bench", CancellationToken.None).GetAwaiter().GetResult();
            for (int from = 0; from < data.Count; from += UpsertBatch)
            {
                var batch = new CollectionPoint[Math.Min(UpsertBatch, data.Count - from)];
                for (int i = 0; i < batch.Length; i++)
                {
                    batch[i] = new CollectionPoint(from + i, data.Base.AsSpan((from + i) * data.Dimension, data.Dimension).ToArray(), Payload.Empty);
                }

                collection.UpsertAsync(batch, "bench", CancellationToken.None).GetAwaiter().GetResult();
            }

            collection.CompactAsync(CancellationToken.None).GetAwaiter().GetResult();
        }

        double buildSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.Error.WriteLine($"table: built and compacted {data.Count} x {data.Dimension} over {directories.Length} directories in {buildSeconds:F1} s");
        bool droppedPageCache = TryDropPageCache();

        start = Stopwatch.GetTimestamp();
        long indexBytes;
        using (var opened = Open(blobs, catalog, options))
        {
            var collection = opened.Store.GetAsync(Workspace, "table", CancellationToken.None).GetAwaiter().GetResult();
            indexBytes = collection.IndexBytes;
        }

        double openSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var rows = new List<object>();
        foreach (int multiplier in new[] { 1, 2, 4 })
        {
            // Reopen per re-rank setting so each starts from a cold cache (and re-measures the open).
            using var opened = Open(blobs, catalog, options with { RerankMultiplier = multiplier });
            var t = opened.Store.GetAsync(Workspace, "table", CancellationToken.None).GetAwaiter().GetResult();
            foreach (int ef in efs)
            {
                long readsBefore = t.SegmentDiskReads;
                int efLocal = ef;
                var row = SearchRun.Measure(data, ef, 10, (q, hits) =>
                {
                    var found = t.Search(q.ToArray(), hits.Length, null, efLocal, withVector: false);
                    for (int i = 0; i < found.Length; i++)
                    {
                        hits[i] = new SearchHit(found[i].Id, found[i].Score);
                    }

                    return found.Length;
                });

                // Measure runs 200 warm-up queries, 3 + 3 throughput passes and one latency pass.
                double hitRatio = t.VectorCache?.HitRatio ?? 0;
                double readsPerQuery = (double)(t.SegmentDiskReads - readsBefore) / ((data.QueryCount * 7) + Math.Min(200, data.QueryCount));
                Console.Error.WriteLine($"table rerank={multiplier}k ef={ef} recall={row.Recall:F4} qps1={row.Qps1:F0} qps2={row.Qps2:F0} p50={row.P50Us:F0}us p99={row.P99Us:F0}us hit={hitRatio:F3} diskReads/query={readsPerQuery:F1}");
                rows.Add(new { rerankMultiplier = multiplier, row.Ef, row.Recall, row.Qps1, row.Qps2, row.P50Us, row.P99Us, cacheHitRatio = hitRatio, diskReadsPerQuery = readsPerQuery });
            }
        }

        Json.Write(output, new
        {
            n = data.Count,
            dim = data.Dimension,
            shards = config.Shards,
            directories = directories.Length,
            tableBytes,
            budgetBytes = budget,
            indexBytesInMemory = indexBytes,
            build_s = buildSeconds,
            open_s = openSeconds,
            droppedPageCache,
            rows,
        });
        return 0;
    }

    /// <summary>A collection store over one local location, as a restarted server opens it.</summary>
    internal static OpenStore Open(string blobs, BenchCatalog catalog, CollectionStoreOptions options)
    {
        var location = new LocationDescriptor { Id = "local", Uri = ".", Country = "FR", Blocs = ["EU"] };
        var audit = new AuditLog(Path.Combine(blobs, "..", "audit"), TimeProvider.System);
        var guard = new PlacementGuard(new StorageLocations([location], blobs), audit);
        var anywhere = new ResidencyPolicy { Name = "any", AllowedJurisdictions = ["*"] };
        return new OpenStore(new CollectionStore(catalog, guard, _ => anywhere, TimeProvider.System, options), audit);
    }

    internal sealed class OpenStore(CollectionStore store, AuditLog audit) : IDisposable
    {
        public CollectionStore Store => store;

        public void Dispose()
        {
            store.Dispose();
            audit.Dispose();
        }
    }

    /// <summary>
    /// The catalog rows, kept across the reopens as the server's database would keep them, and saved to a file
    /// when a build process hands them to a search process.
    /// </summary>
    internal sealed class BenchCatalog : ICollectionCatalog
    {
        private readonly Dictionary<string, CollectionRecord> _byId = [];

        /// <summary>A catalog holding the rows saved at <paramref name="path"/>; empty when it is null.</summary>
        public static BenchCatalog Load(string? path)
        {
            var catalog = new BenchCatalog();
            if (path is not null)
            {
                foreach (var record in System.Text.Json.JsonSerializer.Deserialize<CollectionRecord[]>(File.ReadAllText(path))!)
                {
                    catalog._byId.Add(record.Id, record);
                }
            }

            return catalog;
        }

        public void Save(string path) => File.WriteAllText(path, System.Text.Json.JsonSerializer.Serialize(_byId.Values.ToArray()));

        public Task<CollectionRecord?> FindAsync(string workspace, string name, CancellationToken cancellationToken) =>
            Task.FromResult(_byId.Values.FirstOrDefault(r => r.WorkspaceId == workspace && r.Name == name));

        public Task<IReadOnlyList<CollectionRecord>> ListAsync(string workspace, CancellationToken cancellationToken) =>
            Task.FromResult<IReadOnlyList<CollectionRecord>>([.. _byId.Values.Where(r => r.WorkspaceId == workspace)]);

        public Task InsertAsync(CollectionRecord record, CancellationToken cancellationToken)
        {
            _byId.Add(record.Id, record);
            return Task.CompletedTask;
        }

        public Task DeleteAsync(string id, CancellationToken cancellationToken)
        {
            _byId.Remove(id);
            return Task.CompletedTask;
        }

        public Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken) => Task.FromResult<IReadOnlySet<string>>(_byId.Keys.ToHashSet());
    }

    private static bool TryDropPageCache()
    {
        try
        {
            File.WriteAllText("/proc/sys/vm/drop_caches", "1");
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }
}
