using System.Text.Json;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Residency;
using Atelier.Features;
using Atelier.Features.Schema;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using BitFaster.Caching.Scheduler;

namespace Atelier.Features.Tests;

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>A feature store over a fresh data directory: catalog, one EU on-prem location, audit log, guard.</summary>
public sealed class FeatureStoreFixture : IDisposable
{
    public static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public FeatureStoreFixture(int cacheCapacity = 1000, IScheduler? scheduler = null)
    {
        Directory = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-features-tests");
        Clock = new ManualClock(T0);
        Catalog = new CatalogDatabase(Path.Combine(Directory, "catalog.db"));
        Locations = new StorageLocations(
            [
                new LocationDescriptor { Id = "local", Uri = "blobs/local", Country = "FR", Blocs = ["EU", "EEA"], OnPrem = true, Operator = "self" },
                new LocationDescriptor { Id = "us-cloud", Uri = "blobs/us", Country = "US", OnPrem = false, Operator = "bigcloud" },
            ],
            Directory);
        Audit = new AuditLog(Path.Combine(Directory, "audit"), Clock);
        Guard = new PlacementGuard(Locations, Audit);
        Policies =
        [
            new ResidencyPolicy { Name = "default", AllowedJurisdictions = ["EU"] },
            new ResidencyPolicy { Name = "anywhere", AllowedJurisdictions = ["*"] },
            new ResidencyPolicy { Name = "eu-onprem-2", AllowedJurisdictions = ["EU", "US"], MinReplicas = 2, RequireOnPrem = true },
            new ResidencyPolicy { Name = "us-only", AllowedJurisdictions = ["US"] },
        ];
        CacheCapacity = cacheCapacity;
        Scheduler = scheduler ?? new ForegroundScheduler();
        Store = OpenStore();
    }

    public string Directory { get; }

    public ManualClock Clock { get; }

    public CatalogDatabase Catalog { get; }

    public StorageLocations Locations { get; }

    public AuditLog Audit { get; }

    public PlacementGuard Guard { get; }

    public List<ResidencyPolicy> Policies { get; }

    public int CacheCapacity { get; }

    public IScheduler Scheduler { get; }

    public FeatureStore Store { get; private set; }

    public const string Ws = "ws-test";

    public FeatureStore OpenStore(string onlineFile = "features-online.db") =>
        new(new SqliteFeatureRepository(Catalog), new SqliteOnlineFeatureRows(Path.Combine(Directory, onlineFile)), Guard, Policies, new FeatureStoreOptions
        {
            CacheCapacity = CacheCapacity,
            CacheScheduler = Scheduler,
        }, Clock);

    /// <summary>
    /// Simulates a restart: a new store over the same catalog and blobs (optionally with a lost online
    /// file), caught up as a host does when it starts. Returns it and how many segments the catch-up applied.
    /// </summary>
    public async Task<(FeatureStore Store, int Recovered)> ReopenAsync(string onlineFile)
    {
        Store.Dispose();
        Store = OpenStore(onlineFile);
        var recovered = await Store.CatchUpOnlineAsync(CancellationToken.None);
        return (Store, recovered);
    }

    public async Task<List<string>> BlobKeysAsync(string prefix = "") => await Locations.ListKeysAsync("local", prefix, CancellationToken.None).ToListAsync();

    /// <summary>A view "quality" over example ids: quality (float64), cluster (int64), contaminated (bool), lang (string), emb (float32[4]).</summary>
    public async Task<FeatureView> CreateQualityViewAsync(string name = "quality", string? policy = null, TimeSpan? ttl = null) =>
        (await Store.CreateViewAsync(Ws, new FeatureViewSpec
        {
            Name = name,
            EntityKey = "example_id",
            Fields =
            [
                new FeatureField("quality", FeatureType.Float64),
                new FeatureField("cluster", FeatureType.Int64),
                new FeatureField("contaminated", FeatureType.Bool),
                new FeatureField("lang", FeatureType.String),
                new FeatureField("emb", FeatureType.Float32Vector, 4),
            ],
            Ttl = ttl,
            Policy = policy,
        })).View;

    public static Dictionary<string, object?> Row(string key, DateTimeOffset time, double? quality = null, long? cluster = null, bool? contaminated = null, string? lang = null, float[]? emb = null)
    {
        var row = new Dictionary<string, object?> { ["example_id"] = key, ["event_timestamp"] = time };
        if (quality is not null)
        {
            row["quality"] = quality;
        }

        if (cluster is not null)
        {
            row["cluster"] = cluster;
        }

        if (contaminated is not null)
        {
            row["contaminated"] = contaminated;
        }

        if (lang is not null)
        {
            row["lang"] = lang;
        }

        if (emb is not null)
        {
            row["emb"] = emb;
        }

        return row;
    }

    /// <summary>Rows as the API receives them: parsed JSON.</summary>
    public static List<IReadOnlyDictionary<string, object?>> JsonRows(string json) =>
        JsonSerializer.Deserialize<List<Dictionary<string, JsonElement>>>(json)!
            .Select(d => (IReadOnlyDictionary<string, object?>)d.ToDictionary(kv => kv.Key, kv => (object?)kv.Value))
            .ToList();

    public Task<PushResult> PushAsync(string view, params Dictionary<string, object?>[] rows) =>
        Store.PushAsync(Ws, view, null, rows, "test", CancellationToken.None);

    public void Dispose()
    {
        Store.Dispose();
        Audit.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
