using System.Diagnostics;
using System.Globalization;
using Atelier.Catalog;
using Atelier.Catalog.PostgreSql;
using Atelier.Catalog.Sqlite;

// Hot catalog operations, each timed one by one, on PostgreSQL and on SQLite in the same run:
// operations per second (one client, then eight at once) and p50/p99 latency.
// Usage: Atelier.Catalog.Bench POSTGRES_CONNECTION_STRING SQLITE_DIRECTORY [operations]
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: Atelier.Catalog.Bench POSTGRES_CONNECTION_STRING SQLITE_DIRECTORY [operations]");
    return 2;
}

var operations = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 2000;
await using var postgres = await PostgreSqlCatalog.OpenAsync(args[0]);
var sqlite = SqliteCatalog.Open(Path.Combine(args[1], "catalog.db"));
var sqliteOnline = new SqliteOnlineFeatureRows(Path.Combine(args[1], "features-online.db"));
var providers = new (string Name, IApiKeyRepository Keys, IFileRepository Files, IJobRepository Jobs, IOnlineFeatureRows Online)[]
{
    ("postgresql", postgres.Keys, postgres.Files, postgres.Jobs, postgres.OnlineFeatures),
    ("sqlite", sqlite.Keys, sqlite.Files, sqlite.Jobs, sqliteOnline),
};

Console.WriteLine($"{"operation",-34} {"provider",-11} {"clients",7} {"ops/s",9} {"p50 ms",8} {"p99 ms",8}");
foreach (var (name, keys, files, jobs, online) in providers)
{
    await keys.EnsureWorkspaceAsync("ws_bench", "bench", 0);
    foreach (var clients in new[] { 1, 8 })
    {
        var run = $"{clients}-";
        await MeasureAsync("file insert", name, clients, operations, i => files.InsertAsync(File(run + i)));
        for (var i = 0; i < operations; i++)
        {
            await jobs.InsertAsync(Job(run + i));
        }

        await MeasureAsync("job transition QUEUED->RUNNING", name, clients, operations, async i =>
        {
            if (!await jobs.TransitionAsync("job-" + run + i, ["QUEUED"], "RUNNING"))
            {
                throw new InvalidOperationException("A transition from QUEUED failed.");
            }
        });

        // One segment of 100 rows per call, over 10,000 entity keys; then lookups of 10 keys.
        var t0 = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        await MeasureAsync("online upsert (100 rows)", name, clients, operations / 4, async i =>
        {
            var rows = new OnlineFeatureRow[100];
            for (var r = 0; r < rows.Length; r++)
            {
                rows[r] = new OnlineFeatureRow($"k{(i * 100 + r) % 10_000}", t0.AddSeconds(i), ((long)i << 32) | (uint)r, new byte[32]);
            }

            await online.ApplyAsync("view-" + run, i + 1, rows);
        });
        await MeasureAsync("online get (10 keys)", name, clients, operations, async i =>
        {
            var asked = new string[10];
            for (var k = 0; k < asked.Length; k++)
            {
                asked[k] = $"k{(i * 37 + k * 1009) % 10_000}";
            }

            if ((await online.GetAsync("view-" + run, asked)).Count != asked.Length)
            {
                throw new InvalidOperationException("A lookup missed a key.");
            }
        });
    }
}

return 0;

static async Task MeasureAsync(string operation, string provider, int clients, int count, Func<int, Task> work)
{
    var latencies = new double[count];
    var next = -1;
    var total = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, clients).Select(_ => Task.Run(async () =>
    {
        for (var i = Interlocked.Increment(ref next); i < count; i = Interlocked.Increment(ref next))
        {
            var one = Stopwatch.GetTimestamp();
            await work(i);
            latencies[i] = Stopwatch.GetElapsedTime(one).TotalMilliseconds;
        }
    })));
    total.Stop();
    Array.Sort(latencies);
    Console.WriteLine(string.Create(
        CultureInfo.InvariantCulture,
        $"{operation,-34} {provider,-11} {clients,7} {count / total.Elapsed.TotalSeconds,9:F0} {latencies[count / 2],8:F2} {latencies[(int)(count * 0.99)],8:F2}"));
}

static FileRecord File(string id) => new()
{
    Id = "f-" + id,
    WorkspaceId = "ws_bench",
    Filename = "train.jsonl",
    Purpose = "fine-tune",
    Bytes = 1_000,
    CreatedAt = 1,
    SampleType = "instruct",
    Signature = "00",
    Policy = "default",
    LocationId = "local",
    BlobKey = "file/" + id,
    CreatedBy = "key:bench",
};

static JobRecord Job(string id) => new()
{
    Id = "job-" + id,
    WorkspaceId = "ws_bench",
    Model = "base",
    Status = "QUEUED",
    AutoStart = true,
    RequestJson = "{}",
    Policy = "default",
    LocationId = "local",
    CreatedAt = 1,
    ModifiedAt = 1,
    CreatedBy = "key:bench",
};
