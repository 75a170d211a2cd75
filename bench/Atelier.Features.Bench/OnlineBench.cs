using System.Diagnostics;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Residency;
using Atelier.Features.Api;
using Atelier.Features.Schema;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Features.Bench;

/// <summary>Online lookup latency for batches of keys: in process, and over HTTP on loopback.</summary>
internal static class OnlineBench
{
    public const string ViewName = "bench_quality";

    public static readonly CreateViewBody ViewBody = new()
    {
        Name = ViewName,
        EntityKey = "example_id",
        Fields =
        [
            new FieldBody("quality", "float64", null),
            new FieldBody("tokens", "int64", null),
            new FieldBody("lang", "string", null),
            new FieldBody("contaminated", "bool", null),
            new FieldBody("cluster", "int64", null),
            new FieldBody("emb", "float32_vector", 16),
        ],
    };

    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>A row of the bench view as a JSON object (the same rows in process and over HTTP).</summary>
    public static Dictionary<string, object?> Row(int i, Random random) => new()
    {
        ["example_id"] = "ex-" + i.ToString("D7", System.Globalization.CultureInfo.InvariantCulture),
        ["event_timestamp"] = T0.AddSeconds(i),
        ["quality"] = Math.Round(random.NextDouble(), 4),
        ["tokens"] = (long)random.Next(10, 4000),
        ["lang"] = random.Next(3) switch { 0 => "fr", 1 => "en", _ => "de" },
        ["contaminated"] = random.Next(50) == 0,
        ["cluster"] = (long)random.Next(0, 50_000),
        ["emb"] = Enumerable.Range(0, 16).Select(_ => (float)Math.Round(random.NextDouble(), 3)).ToArray(),
    };

    public static string Key(int i) => "ex-" + i.ToString("D7", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Batches of <paramref name="batch"/> keys drawn from a seeded Zipf over the keys.</summary>
    public static string[][] Batches(int keys, int count, int batch, double skew, int seed)
    {
        var zipf = new Zipf(keys, skew, seed);

        // Hot ranks are spread over the key space so that hot keys are not also adjacent keys.
        var permutation = Enumerable.Range(0, keys).ToArray();
        new Random(seed + 1).Shuffle(permutation);
        var result = new string[count][];
        for (var b = 0; b < count; b++)
        {
            var keysOfBatch = new string[batch];
            for (var k = 0; k < batch; k++)
            {
                keysOfBatch[k] = Key(permutation[zipf.Next()]);
            }

            result[b] = keysOfBatch;
        }

        return result;
    }

    public sealed class Environment : IDisposable
    {
        public Environment(int cacheCapacity)
        {
            Directory = Path.Combine(Path.GetTempPath(), "atelier-features-bench", Guid.NewGuid().ToString("N"));
            System.IO.Directory.CreateDirectory(Directory);
            Catalog = new CatalogDatabase(Path.Combine(Directory, "catalog.db"));
            var locations = new StorageLocations(
                [new LocationDescriptor { Id = "local", Uri = "blobs/local", Country = "FR", Blocs = ["EU"], OnPrem = true }], Directory);
            Audit = new AuditLog(Path.Combine(Directory, "audit"), TimeProvider.System);
            Store = new FeatureStore(
                new SqliteFeatureRepository(Catalog),
                new SqliteOnlineFeatureRows(Path.Combine(Directory, "features-online.db")),
                new PlacementGuard(locations, Audit),
                [new ResidencyPolicy { Name = "default", AllowedJurisdictions = ["EU"] }],
                new FeatureStoreOptions { CacheCapacity = cacheCapacity },
                TimeProvider.System);
        }

        public string Directory { get; }

        public CatalogDatabase Catalog { get; }

        public AuditLog Audit { get; }

        public FeatureStore Store { get; }

        public async Task<FeatureView> PopulateAsync(int keys)
        {
            var view = (await Store.CreateViewAsync("bench", FeatureApi.ToSpec(ViewBody))).View;
            var random = new Random(11);
            for (var start = 0; start < keys; start += 10_000)
            {
                var rows = Enumerable.Range(start, Math.Min(10_000, keys - start))
                    .Select(i => (IReadOnlyDictionary<string, object?>)Row(i, random)).ToList();
                await Store.PushAsync("bench", ViewName, null, rows, "bench", CancellationToken.None);
            }

            return view;
        }

        public void Dispose()
        {
            Store.Dispose();
            Audit.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    /// <summary>In-process lookups at several cache sizes.</summary>
    public static async Task RunInProcessAsync(TextWriter report, int keys, int batches, int batchSize)
    {
        report.WriteLine($"{keys:N0} entities in one view (6 features incl. a 16-d vector), pushed as {Math.Ceiling(keys / 10_000.0)} segments; {batches:N0} lookups of {batchSize} keys drawn from Zipf(s=1.0, seed 7) after {batches / 5:N0} warm-up lookups; one thread, `FeatureStore.GetOnlineAsync(view, keys)`.");
        report.WriteLine();
        report.WriteLine("| cache capacity | hit ratio | p50 | p90 | p99 | p99.9 | lookups/s | keys/s |");
        report.WriteLine("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        foreach (var (label, capacity) in new[] { ("all keys (100%)", keys + 10), ("10% of keys", keys / 10), ("1% of keys", keys / 100), ("16 entries (almost every key from SQLite)", 16) })
        {
            using var env = new Environment(capacity);
            var view = await env.PopulateAsync(keys);
            var work = Batches(keys, batches + (batches / 5), batchSize, 1.0, 7);
            for (var b = 0; b < batches / 5; b++)
            {
                await env.Store.GetOnlineAsync(view, work[b]);
            }

            var before = env.Store.Online.Statistics;
            var latencies = new Latencies(batches);
            var total = Stopwatch.StartNew();
            for (var b = batches / 5; b < work.Length; b++)
            {
                var start = Stopwatch.GetTimestamp();
                var result = await env.Store.GetOnlineAsync(view, work[b]);
                latencies.Add(Stopwatch.GetTimestamp() - start);
                if (result.Length != batchSize)
                {
                    throw new InvalidOperationException("short answer");
                }
            }

            total.Stop();
            var after = env.Store.Online.Statistics;
            var hitRatio = (double)(after.Hits - before.Hits) / (after.Hits - before.Hits + after.Misses - before.Misses);
            report.WriteLine($"| {label} | {hitRatio:P1} | {latencies.Percentile(50):F0} us | {latencies.Percentile(90):F0} us | {latencies.Percentile(99):F0} us | {latencies.Percentile(99.9):F0} us | {batches / total.Elapsed.TotalSeconds:N0} | {batches * batchSize / total.Elapsed.TotalSeconds:N0} |");
            Console.Error.WriteLine($"in-process {label}: hit {hitRatio:P1} {latencies.Summary()}");
        }
    }

    /// <summary>Lookups over HTTP against <paramref name="baseUrl"/> (the real server or the in-process host).</summary>
    public static async Task<(Latencies Latencies, double Seconds, long Bytes)> RunHttpAsync(string baseUrl, string? apiKey, int keys, int batches, int batchSize, bool populate)
    {
        using var handler = new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(10), UseProxy = false };
        using var http = new HttpClient(handler) { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(5) };
        if (apiKey is not null)
        {
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        if (populate)
        {
            var created = await http.PostAsJsonAsync("/api/v1/features/views", ViewBody, FeatureApi.Json);
            await EnsureAsync(created);
            var random = new Random(11);
            for (var start = 0; start < keys; start += 10_000)
            {
                var rows = Enumerable.Range(start, Math.Min(10_000, keys - start)).Select(i => Row(i, random)).ToList();
                await EnsureAsync(await http.PostAsJsonAsync($"/api/v1/features/views/{ViewName}/rows", new { rows }, FeatureApi.Json));
            }
        }

        var work = Batches(keys, batches + (batches / 10), batchSize, 1.0, 7);
        var latencies = new Latencies(batches);
        long bytes = 0;
        var total = new Stopwatch();
        for (var b = 0; b < work.Length; b++)
        {
            if (b == batches / 10)
            {
                total.Start();
            }

            var start = Stopwatch.GetTimestamp();
            using var response = await http.PostAsJsonAsync($"/api/v1/features/views/{ViewName}/online", new OnlineBody(work[b], null), FeatureApi.Json);
            var body = await response.Content.ReadAsByteArrayAsync();
            var elapsed = Stopwatch.GetTimestamp() - start;
            if (!response.IsSuccessStatusCode)
            {
                throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: {System.Text.Encoding.UTF8.GetString(body)}");
            }

            if (b >= batches / 10)
            {
                latencies.Add(elapsed);
                bytes += body.Length;
            }

            if (b == 0)
            {
                // Check the answer once: every key found, in order.
                var parsed = JsonSerializer.Deserialize<OnlineResponse>(body, FeatureApi.Json)!;
                if (parsed.Results.Count != batchSize || parsed.Results.Any(r => !r.Found) || parsed.Results[0].EntityKey != work[b][0])
                {
                    throw new InvalidOperationException("The online answer is wrong.");
                }
            }
        }

        total.Stop();
        return (latencies, total.Elapsed.TotalSeconds, bytes);
    }

    private static async Task EnsureAsync(HttpResponseMessage response)
    {
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        }
    }
}
