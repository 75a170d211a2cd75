using System.Net.Http.Json;
using System.Runtime.Versioning;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core;

namespace Atelier.Server.Tests;

/// <summary>
/// Collections larger than memory through <c>atelier serve</c>: the <c>collections</c> section of
/// <c>atelier.json</c> (segment directories, memory budget) and <c>product_quantization</c> on create.
/// </summary>
public sealed partial class CollectionsApiTests
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    [Fact]
    [UnsupportedOSPlatform("windows")]
    public async Task ProductQuantizedCollection_OnTwoSegmentDirectories_ReopensFromItsSavedGraphsWithTheSameResults()
    {
        var directory = TempDirectory.Create("atelier-collections");
        var drives = TempDirectory.Create("atelier-segments");
        string[] segments = [Path.Combine(drives, "nvme0"), Path.Combine(drives, "nvme1")];
        foreach (var segment in segments)
        {
            Directory.CreateDirectory(segment, Private);
        }

        // min_snapshot_log_bytes 1: shards snapshot (and save their graphs) as soon as their log outgrows the
        // last snapshot, so that the restart below has saved graphs to map.
        AtelierConfig Configure(AtelierConfig config, long budget) => config with
        {
            Collections = new CollectionsConfig { SegmentDirectories = segments, MemoryBudgetBytes = budget, MinSnapshotLogBytes = 1 },
        };

        var data = SeededPoints.Generate(count: 3_000, dimension: 16, seed: 31);
        var queries = Enumerable.Range(0, 20).Select(i => SeededPoints.Query(new Random(200 + i), 16)).ToArray();
        var before = new List<long[]>();
        string id;
        await using (var server = await TestServer.StartAsync(config => Configure(config, 8L << 20), dataDirectory: directory))
        {
            using var client = server.Client();
            using (var created = await client.PostAsJsonAsync("/api/v1/collections", new { name = "big", dimension = 16, metric = "l2", storage = "int8", shards = 2, product_quantization = 4 }))
            {
                var body = await created.Content.ReadAsStringAsync();
                Assert.True(created.StatusCode == System.Net.HttpStatusCode.Created, body);
                Assert.Equal(4, JsonNode.Parse(body)!["config"]!["product_quantization"]!.GetValue<int>());
            }

            await UpsertAsync(client, "big", data, batch: 500);
            using (var response = await client.PostAsJsonAsync("/api/v1/collections/big/points/delete", new { points = Enumerable.Range(2_900, 100).ToArray() }))
            {
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }

            int found = 0, expected = 0;
            var live = data.Take(2_900).ToArray();
            foreach (var query in queries)
            {
                var hits = (await SearchAsync(client, "big", new { vector = query, limit = 10 })).Select(h => h!["id"]!.GetValue<long>()).ToArray();
                Assert.DoesNotContain(hits, h => h >= 2_900);
                before.Add(hits);
                var truth = BruteForce(live, query, "l2", 10, _ => true);
                found += hits.Intersect(truth).Count();
                expected += truth.Length;
            }

            Assert.True((double)found / expected >= 0.8, $"recall@10 {(double)found / expected:F3} < 0.8 on PQ codes re-ranked on full vectors");
            var info = await GetJsonAsync(client, "/api/v1/collections/big");
            id = info["id"]!.GetValue<string>();
            Assert.Equal(4, info["config"]!["product_quantization"]!.GetValue<int>());
            Assert.True(info["memory"]!["resident_bytes"]!.GetValue<long>() > 0);
            Assert.Equal(8L << 20, info["memory"]!["budget_bytes"]!.GetValue<long>());
            Assert.False(info["memory"]!["over_memory_budget"]!.GetValue<bool>());
            Assert.All(info["shards"]!.AsArray(), s => Assert.True(s!["snapshot_bytes"]!.GetValue<long>() > 0, "every shard snapshotted (and saved its graph)"));
        }

        // Shard i keeps its full vectors and saved graph on drive i % 2.
        Assert.True(Directory.Exists(Path.Combine(segments[0], id, "shard-000")));
        Assert.True(Directory.Exists(Path.Combine(segments[1], id, "shard-001")));

        // A second start with a budget the graphs alone exceed: every shard is mapped from its saved graph (no
        // rebuild from the log), the collection reports itself over budget and answers as before.
        await using (var server = await TestServer.StartAsync(config => Configure(config, 1024), dataDirectory: directory))
        {
            using var client = server.Client();
            var info = await GetJsonAsync(client, "/api/v1/collections/big");
            Assert.Equal(2_900, info["points_count"]!.GetValue<long>());
            Assert.All(info["shards"]!.AsArray(), s => Assert.True(s!["opened_from_saved_graph"]!.GetValue<bool>(), $"shard {s["shard"]} was rebuilt"));
            Assert.True(info["memory"]!["over_memory_budget"]!.GetValue<bool>());
            for (int i = 0; i < queries.Length; i++)
            {
                var after = (await SearchAsync(client, "big", new { vector = queries[i], limit = 10 })).Select(h => h!["id"]!.GetValue<long>()).ToArray();
                Assert.Equal(before[i], after);
            }

            // Writes while serving the reopened collection: new points are found, deleted ones are not.
            await UpsertAsync(client, "big", [.. data.Skip(2_900).Take(50)], batch: 50);
            using (var response = await client.PostAsJsonAsync("/api/v1/collections/big/points/delete", new { points = new[] { before[0][0] } }))
            {
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }

            var hits = (await SearchAsync(client, "big", new { vector = data[2_910].Vector, limit = 5 })).Select(h => h!["id"]!.GetValue<long>()).ToArray();
            Assert.Contains(2_910L, hits);
            Assert.DoesNotContain(before[0][0], (await SearchAsync(client, "big", new { vector = queries[0], limit = 10 })).Select(h => h!["id"]!.GetValue<long>()));
            Assert.Equal(2_949, (await GetJsonAsync(client, "/api/v1/collections/big"))["points_count"]!.GetValue<long>());
        }
    }

    [Fact]
    public async Task ProductQuantization_OnAFloat32Collection_Is422NamingTheField()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 16, metric = "l2", product_quantization = 4 }),
            422, "product_quantization", "needs storage int8");
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 16, metric = "l2", storage = "int8", product_quantization = 5 }),
            422, "product_quantization", "divides the dimension");
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 16, metric = "l2", storage = "int8", product_quantization = "x16" }),
            422, "product_quantization", "integer");
        Assert.Empty((await GetJsonAsync(client, "/api/v1/collections"))["data"]!.AsArray());
    }

    [Theory]
    [InlineData("budget-not-a-number")]
    [InlineData("missing-directory")]
    [InlineData("open-directory")]
    [InlineData("relative-directory")]
    [UnsupportedOSPlatform("windows")]
    public async Task BadCollectionsSection_TheServerRefusesToStart_NamingTheField(string fault)
    {
        // The drives are outside the data directory, whose start-up tightens what is inside it to 0700.
        var directory = TempDirectory.Create("atelier-collections");
        var drives = TempDirectory.Create("atelier-segments");
        var drive = Path.Combine(drives, "nvme0");
        Directory.CreateDirectory(drive, Private);
        var missing = Path.Combine(drives, "nvme9");
        var open = Path.Combine(drives, "shared");
        Directory.CreateDirectory(open, Private | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        File.SetUnixFileMode(open, Private | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
        var (section, field, text) = fault switch
        {
            "budget-not-a-number" => (new JsonObject { ["memory_budget_bytes"] = "4 GiB", ["segment_directories"] = new JsonArray(drive) }, "collections.memory_budget_bytes", "not valid configuration"),
            "missing-directory" => (new JsonObject { ["segment_directories"] = new JsonArray(drive, missing) }, "collections.segment_directories[1]", missing),
            "open-directory" => (new JsonObject { ["segment_directories"] = new JsonArray(open) }, "collections.segment_directories[0]", "0700"),
            _ => (new JsonObject { ["segment_directories"] = new JsonArray("segments") }, "collections.segment_directories[0]", "absolute"),
        };
        var config = JsonNode.Parse(JsonSerializer.Serialize(AtelierConfig.CreateDefault(), AtelierConfig.SerializerOptions))!;
        config["collections"] = section;
        File.WriteAllText(Path.Combine(directory, AtelierConfig.FileName), config.ToJsonString());

        var error = await Assert.ThrowsAnyAsync<InvalidOperationException>(async () => await TestServer.StartAsync(dataDirectory: directory));
        Assert.Contains(field, error.Message, StringComparison.Ordinal);
        Assert.Contains(text, error.Message, StringComparison.Ordinal);
    }
}
