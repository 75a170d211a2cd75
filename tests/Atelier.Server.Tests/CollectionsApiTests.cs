using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core.Residency;

namespace Atelier.Server.Tests;

/// <summary><c>/api/v1/collections</c> over real HTTP: recall, filters, deletes, durability across restarts, bad input, isolation.</summary>
public sealed partial class CollectionsApiTests
{
    [Theory]
    [InlineData("cosine", "float32", 1, 0.95)]
    [InlineData("l2", "int8", 2, 0.95)]
    [InlineData("dot", "float16", 3, 0.90)]
    public async Task Search_ThroughTheApi_FindsTheBruteForceNeighbours(string metric, string storage, int shards, double minRecall)
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var data = SeededPoints.Generate(count: 2_000, dimension: 24, seed: 7);
        await CreateAsync(client, "docs", 24, metric, storage, shards);
        await UpsertAsync(client, "docs", data, batch: 250);

        // The ground truth sees the vectors the collection stores: float16 rounds them.
        var stored = storage == "float16" ? data.Select(p => p with { Vector = [.. p.Vector.Select(x => (float)(Half)x)] }).ToArray() : data;
        var random = new Random(11);
        int found = 0, expected = 0;
        for (int q = 0; q < 40; q++)
        {
            var query = SeededPoints.Query(random, 24);
            var truth = BruteForce(stored, query, metric, 10, _ => true);
            var hits = await SearchAsync(client, "docs", new { vector = query, limit = 10 });
            Assert.Equal(10, hits.Count);
            found += hits.Select(h => h!["id"]!.GetValue<long>()).Intersect(truth).Count();
            expected += truth.Length;
        }

        double recall = (double)found / expected;
        Assert.True(recall >= minRecall, $"recall@10 {recall:F3} < {minRecall} for {metric}/{storage}/{shards} shard(s)");

        var info = await GetJsonAsync(client, "/api/v1/collections/docs");
        Assert.Equal(2_000, info["points_count"]!.GetValue<long>());
        Assert.Equal(shards, info["shards"]!.AsArray().Count);
        Assert.Equal(storage, info["config"]!["storage"]!.GetValue<string>());
    }

    [Fact]
    public async Task FilteredSearch_NeverReturnsAPointThatFailsTheFilter_AndFindsTheFilteredNeighbours()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var data = SeededPoints.Generate(count: 3_000, dimension: 16, seed: 3);
        await CreateAsync(client, "docs", 16, "cosine", "float32", 2);
        await UpsertAsync(client, "docs", data, batch: 500);
        var byId = data.ToDictionary(p => p.Id);

        var filters = new (object Filter, Func<SeededPoint, bool> Matches)[]
        {
            (new { must = new object[] { new { key = "category", match = new { value = "math" } } } }, p => p.Category == "math"),
            (new { must = new object[] { new { key = "price", range = new { gte = 10, lt = 12.5 } } } }, p => p.Price >= 10 && p.Price < 12.5),
            (new { must_not = new object[] { new { key = "category", match = new { any = new[] { "news", "code", "law" } } } } }, p => p.Category is not ("news" or "code" or "law")),
            (new
            {
                must = new object[] { new { key = "published", match = new { value = true } }, new { key = "price", range = new { gt = 50 } } },
                must_not = new object[] { new { key = "category", match = new { value = "chat" } } },
            }, p => p.Published && p.Price > 50 && p.Category != "chat"),
            (new { must = new object[] { new { key = "category", match = new { value = "math" } }, new { key = "rank", match = new { value = 7 } } } }, p => p.Category == "math" && p.Rank == 7),
            (new { must = new object[] { new { key = "missing_field", match = new { value = "x" } } } }, _ => false),
        };

        var random = new Random(5);
        foreach (var (filter, matches) in filters)
        {
            int found = 0, expected = 0;
            for (int q = 0; q < 15; q++)
            {
                var query = SeededPoints.Query(random, 16);
                var hits = await SearchAsync(client, "docs", new { vector = query, limit = 10, filter });
                foreach (var hit in hits)
                {
                    var point = byId[hit!["id"]!.GetValue<long>()];
                    Assert.True(matches(point), $"point {point.Id} ({point.Category}, {point.Price}, {point.Published}, {point.Rank}) fails {JsonSerializer.Serialize(filter)}");
                    Assert.Equal(point.Category, hit["payload"]!["category"]!.GetValue<string>());
                }

                var truth = BruteForce(data, query, "cosine", 10, matches);
                Assert.Equal(truth.Length, hits.Count);
                found += hits.Select(h => h!["id"]!.GetValue<long>()).Intersect(truth).Count();
                expected += truth.Length;
            }

            Assert.True(expected == 0 || (double)found / expected >= 0.9, $"filtered recall {(double)found / expected:F3} for {JsonSerializer.Serialize(filter)}");
        }
    }

    [Fact]
    public async Task DeletedPoints_AreNeverReturned_AndCanBeUpsertedAgain()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var data = SeededPoints.Generate(count: 1_500, dimension: 16, seed: 9);
        await CreateAsync(client, "docs", 16, "l2", "int8", 2);
        await UpsertAsync(client, "docs", data, batch: 500);

        var deleted = data.Where(p => p.Id % 3 == 0).Select(p => p.Id).ToHashSet();
        using (var response = await client.PostAsJsonAsync("/api/v1/collections/docs/points/delete", new { points = deleted.Append(999_999).ToArray() }))
        {
            var body = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
            Assert.True(response.IsSuccessStatusCode, body.ToJsonString());
            Assert.Equal(deleted.Count, body["deleted"]!.GetValue<int>());
            Assert.Equal(data.Length - deleted.Count, body["points_count"]!.GetValue<long>());
        }

        var random = new Random(2);
        for (int q = 0; q < 30; q++)
        {
            // Queries at deleted points themselves: the nearest vectors are the tombstones.
            var query = q % 2 == 0 ? data[(int)deleted.ElementAt(q)].Vector : SeededPoints.Query(random, 16);
            var hits = await SearchAsync(client, "docs", new { vector = query, limit = 50 });
            Assert.Equal(50, hits.Count);
            Assert.DoesNotContain(hits, h => deleted.Contains(h!["id"]!.GetValue<long>()));
        }

        using (var gone = await client.GetAsync($"/api/v1/collections/docs/points/{deleted.First()}"))
        {
            Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        }

        var back = data[(int)deleted.First()];
        await UpsertAsync(client, "docs", [back], batch: 1);
        var again = await SearchAsync(client, "docs", new { vector = back.Vector, limit = 1 });
        Assert.Equal(back.Id, again[0]!["id"]!.GetValue<long>());
    }

    [Fact]
    public async Task Restart_KeepsEveryAcknowledgedUpsertAndDelete()
    {
        var directory = TempDirectory.Create("atelier-collections");
        var data = SeededPoints.Generate(count: 1_200, dimension: 12, seed: 21);
        var queries = Enumerable.Range(0, 10).Select(i => SeededPoints.Query(new Random(100 + i), 12)).ToArray();
        var before = new List<long[]>();
        await using (var server = await TestServer.StartAsync(dataDirectory: directory))
        {
            using var client = server.Client();
            await CreateAsync(client, "docs", 12, "cosine", "float16", 3);
            await UpsertAsync(client, "docs", data, batch: 100);

            // Overwrite some points (new vector and payload) and delete others; all acknowledged.
            var moved = data.Take(50).Select(p => p with { Vector = data[^(int)(p.Id + 1)].Vector, Category = "moved" }).ToArray();
            await UpsertAsync(client, "docs", moved, batch: 50);
            using (var response = await client.PostAsJsonAsync("/api/v1/collections/docs/points/delete", new { points = Enumerable.Range(1_000, 100).ToArray() }))
            {
                Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
            }

            foreach (var query in queries)
            {
                before.Add([.. (await SearchAsync(client, "docs", new { vector = query, limit = 10 })).Select(h => h!["id"]!.GetValue<long>())]);
            }
        }

        // Disposing flushes nothing (every batch was committed before it was acknowledged), so the second
        // start sees exactly what a crash after the last acknowledgement would have left.
        await using (var server = await TestServer.StartAsync(dataDirectory: directory))
        {
            using var client = server.Client();
            var info = await GetJsonAsync(client, "/api/v1/collections/docs");
            Assert.Equal(1_100, info["points_count"]!.GetValue<long>());
            for (int i = 0; i < queries.Length; i++)
            {
                var after = (await SearchAsync(client, "docs", new { vector = queries[i], limit = 10 })).Select(h => h!["id"]!.GetValue<long>()).ToArray();
                Assert.Equal(before[i], after);
            }

            var point = await GetJsonAsync(client, "/api/v1/collections/docs/points/3");
            Assert.Equal("moved", point["payload"]!["category"]!.GetValue<string>());
            using (var gone = await client.GetAsync("/api/v1/collections/docs/points/1050"))
            {
                Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
            }

            var kept = await GetJsonAsync(client, "/api/v1/collections/docs/points/700");
            Assert.Equal(data[700].Category, kept["payload"]!["category"]!.GetValue<string>());
            Assert.Equal(data[700].Price, kept["payload"]!["price"]!.GetValue<double>());
            var vector = kept["vector"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
            var norm = MathF.Sqrt(data[700].Vector.Sum(x => (float)(Half)x * (float)(Half)x));
            for (int d = 0; d < 12; d++)
            {
                Assert.Equal((float)(Half)data[700].Vector[d] / norm, vector[d], 2e-3f);
            }
        }
    }

    [Fact]
    public async Task BadInput_Gets4xxNamingTheFieldAndWritesNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await CreateAsync(client, "docs", 4, "cosine", "float32", 1);
        await UpsertAsync(client, "docs", SeededPoints.Generate(10, 4, 1), batch: 10);
        var audit = server.Audit.LastSeq;

        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":100,"vector":[1,2,3,4]},{"id":101,"vector":[1,2,3]}]}"""), 422, "points[1].vector", "dimension 3");
        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":100,"vector":[1,2,"NaN",4]}]}"""), 422, "points[0].vector[2]", "finite");
        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":100,"vector":[1,2,1e39,4]}]}"""), 422, "points[0].vector[2]", "float32");
        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":-4,"vector":[1,2,3,4]}]}"""), 422, "points[0].id", "non-negative");
        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":5,"vector":[1,2,3,4],"payload":{"tags":["a"]}}]}"""), 422, "points[0].payload.tags", "string, a finite number or a boolean");
        await AssertProblemAsync(await PutRawAsync(client, "docs", """{"points":[{"id":5,"vector":[1,2,3,4]"""), 400, null, "not valid JSON");
        await AssertProblemAsync(await PutRawAsync(client, "nope", """{"points":[{"id":5,"vector":[1,2,3,4]}]}"""), 404, null, "nope");
        Assert.Equal(audit, server.Audit.LastSeq);
        Assert.Equal(10, (await GetJsonAsync(client, "/api/v1/collections/docs"))["points_count"]!.GetValue<long>());

        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections/docs/points/search", new { vector = new[] { 1f, 2f } }), 422, "vector", "dimension 2");
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections/docs/points/search", new { vector = new[] { 1f, 2f, 3f, 4f }, filter = new { must = new object[] { new { key = "price", range = new { gte = "ten" } } } } }),
            422, "filter.must[0].range.gte", "finite number");
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections/docs/points/search", new { vector = new[] { 1f, 2f, 3f, 4f }, filter = new { must = new object[] { new { key = "price", equals = 3 } } } }),
            422, "filter.must[0].equals", "Unknown condition field");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections/docs/points/search", new { vector = new[] { 1f, 2f, 3f, 4f }, limit = 0 }), 422, "limit", "integer");
        await AssertProblemAsync(await client.GetAsync("/api/v1/collections/docs/points/abc"), 422, "id", "non-negative");
        await AssertProblemAsync(await client.GetAsync("/api/v1/collections/missing"), 404, null, "missing");

        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 4, metric = "hamming" }), 422, "metric", "cosine, dot, l2");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 0, metric = "l2" }), 422, "dimension", "integer");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 4, metric = "l2", locations = new[] { "mars" } }), 422, "locations[0]", "mars");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "x", dimension = 4, metric = "l2", storage = "bits" }), 422, "storage", "float32, float16, int8");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "../x", dimension = 4, metric = "l2" }), 422, "name", "letters");
        await AssertProblemAsync(await client.PostAsJsonAsync("/api/v1/collections", new { name = "docs", dimension = 4, metric = "l2" }), 409, null, "already exists");
    }

    [Fact]
    public async Task AnotherWorkspace_SeesNoneOfTheCollection()
    {
        await using var server = await TestServer.StartAsync();
        using var owner = server.Client();
        await CreateAsync(owner, "private", 4, "cosine", "float32", 1);
        await UpsertAsync(owner, "private", SeededPoints.Generate(20, 4, 2), batch: 20);

        using var other = server.Client(await server.CreateKeyAsync("rivals"));
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync("/api/v1/collections/private")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync("/api/v1/collections/private/points/1")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.PostAsJsonAsync("/api/v1/collections/private/points/search", new { vector = new[] { 1f, 0f, 0f, 0f } })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await PutRawAsync(other, "private", """{"points":[{"id":1,"vector":[1,0,0,0]}]}""")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.PostAsJsonAsync("/api/v1/collections/private/points/delete", new { points = new[] { 1 } })).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.DeleteAsync("/api/v1/collections/private")).StatusCode);
        Assert.Empty((await GetJsonAsync(other, "/api/v1/collections"))["data"]!.AsArray());

        // The same name in the other workspace is a different collection.
        await CreateAsync(other, "private", 4, "l2", "float32", 1);
        Assert.Equal(0, (await GetJsonAsync(other, "/api/v1/collections/private"))["points_count"]!.GetValue<long>());
        Assert.Equal(20, (await GetJsonAsync(owner, "/api/v1/collections/private"))["points_count"]!.GetValue<long>());
    }

    [Fact]
    public async Task Residency_PlacesEveryBlobThroughTheGuard_AndRefusesAForbiddenLocation()
    {
        await using var server = await TestServer.StartAsync(config => config with
        {
            Locations =
            [
                .. config.Locations,
                new LocationDescriptor { Id = "us-cloud", Kind = LocationKind.LocalDirectory, Uri = "blobs/us", Country = "US", Site = "us-east", Rack = "r1", OnPrem = false, Operator = "hyperscaler" },
            ],
        });
        using var client = server.Client();
        var seq = server.Audit.LastSeq;
        await AssertProblemAsync(
            await client.PostAsJsonAsync("/api/v1/collections", new { name = "eu-only", dimension = 4, metric = "l2", shards = 2, locations = new[] { "local", "us-cloud" } }),
            403, null, "us-cloud");
        var refusals = server.Audit.Read(seq, 100).Where(e => e.Type == "placement_refused").ToArray();
        Assert.Contains(refusals, e => e.ArtifactKind == "collection" && e.Location == "us-cloud");
        Assert.Empty((await GetJsonAsync(client, "/api/v1/collections"))["data"]!.AsArray());
        Assert.Empty(await server.Locations.ListKeysAsync("local", "collection/", CancellationToken.None).ToListAsync());

        await CreateAsync(client, "eu", 4, "l2", "float32", 2);
        await UpsertAsync(client, "eu", SeededPoints.Generate(30, 4, 8), batch: 30);
        var placements = server.Audit.Read(seq, 1_000).Where(e => e.Type == "placement" && e.ArtifactKind == "collection").ToArray();
        Assert.True(placements.Length >= 3, "config blob and one log blob per shard");
        Assert.All(placements, e => Assert.Equal("local", e.Location));

        using (var deleted = await client.DeleteAsync("/api/v1/collections/eu"))
        {
            Assert.True(deleted.IsSuccessStatusCode, await deleted.Content.ReadAsStringAsync());
        }

        Assert.Empty(await server.Locations.ListKeysAsync("local", "collection/", CancellationToken.None).ToListAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/api/v1/collections/eu")).StatusCode);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task Cli_CreatesUpsertsFromJsonlSearchesAndDeletes()
    {
        await using var server = await TestServer.StartAsync();
        var jsonl = Path.Combine(server.DataDirectory, "points.jsonl");
        var data = SeededPoints.Generate(300, 4, 6);
        await File.WriteAllLinesAsync(jsonl, data.Select(p => JsonSerializer.Serialize(p.ToJson())));

        var (exit, output) = await AtelierAsync(server, "collections", "create", "docs", "--dimension", "4", "--metric", "cosine", "--shards", "2");
        Assert.True(exit == 0, output);
        (exit, output) = await AtelierAsync(server, "collections", "upsert", "docs", jsonl, "--batch-size", "128");
        Assert.True(exit == 0, output);
        Assert.Contains("300", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "collections", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("docs", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "collections", "search", "docs", "--vector", string.Join(',', data[42].Vector), "--limit", "3", "--filter", """{"must":[{"key":"category","match":{"value":"%C%"}}]}""".Replace("%C%", data[42].Category, StringComparison.Ordinal), "--json");
        Assert.True(exit == 0, output);
        Assert.Equal(42, JsonNode.Parse(output)!["data"]![0]!["id"]!.GetValue<long>());
        (exit, output) = await AtelierAsync(server, "collections", "get", "docs", "--json");
        Assert.True(exit == 0, output);
        Assert.Equal(300, JsonNode.Parse(output)!["points_count"]!.GetValue<long>());

        var bad = Path.Combine(server.DataDirectory, "bad.jsonl");
        await File.WriteAllLinesAsync(bad, ["""{"id":1,"vector":[1,2,3,4]}""", """{"id":2,"vector":[1,2]}"""]);
        (exit, output) = await AtelierAsync(server, "collections", "upsert", "docs", bad);
        Assert.Equal(2, exit);
        Assert.Contains("line 2", output, StringComparison.Ordinal);

        (exit, output) = await AtelierAsync(server, "collections", "delete", "docs");
        Assert.True(exit == 0, output);
        (exit, output) = await AtelierAsync(server, "collections", "get", "docs");
        Assert.Equal(2, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);

        // A collection walked on product-quantisation codes, with its graph's knobs, from the command line.
        (exit, output) = await AtelierAsync(server, "collections", "create", "big", "--dimension", "4", "--storage", "int8", "--pq", "2", "--m", "8", "--ef-construction", "40", "--ef-search", "20");
        Assert.True(exit == 0, output);
        Assert.Contains("int8 + PQ2", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "collections", "get", "big", "--json");
        Assert.True(exit == 0, output);
        var config = JsonNode.Parse(output)!["config"]!;
        Assert.Equal(2, config["product_quantization"]!.GetValue<int>());
        Assert.Equal(8, config["hnsw"]!["m"]!.GetValue<int>());
        Assert.Equal(40, config["hnsw"]!["ef_construction"]!.GetValue<int>());
        Assert.Equal(20, config["hnsw"]!["ef_search"]!.GetValue<int>());
        (exit, output) = await AtelierAsync(server, "collections", "get", "big");
        Assert.True(exit == 0, output);
        Assert.Contains("In memory:", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "collections", "create", "bad", "--dimension", "4", "--pq", "2");
        Assert.Equal(2, exit);
        Assert.Contains("product_quantization", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "collections", "create", "bad", "--dimension", "4", "--storage", "int8", "--pq", "3");
        Assert.Equal(2, exit);
        Assert.Contains("product_quantization", output, StringComparison.Ordinal);
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task Cli_FeatureCommands_CreateAViewPushRowsAndLookThemUpOnline()
    {
        await using var server = await TestServer.StartAsync();
        var view = Path.Combine(server.DataDirectory, "view.json");
        await File.WriteAllTextAsync(view, """{"name":"quality","entity_key":"example_id","timestamp_field":"event_time","fields":[{"name":"score","type":"float64"}]}""");
        var rows = Path.Combine(server.DataDirectory, "rows.jsonl");
        await File.WriteAllLinesAsync(rows,
        [
            """{"example_id":"a","event_time":"2026-01-01T00:00:00Z","score":0.1}""",
            """{"example_id":"a","event_time":"2026-03-01T00:00:00Z","score":0.9}""",
            """{"example_id":"b","event_time":"2026-02-01T00:00:00Z","score":0.5}""",
        ]);

        var (exit, output) = await AtelierAsync(server, "features", "views", "create", view);
        Assert.True(exit == 0, output);
        Assert.Contains("quality version 1", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "features", "push", "quality", rows, "--batch-size", "2");
        Assert.True(exit == 0, output);
        Assert.Contains("Pushed 3 rows", output, StringComparison.Ordinal);
        (exit, output) = await AtelierAsync(server, "features", "online", "quality", "a", "b", "missing", "--json");
        Assert.True(exit == 0, output);
        var results = JsonNode.Parse(output)!["results"]!.AsArray();
        Assert.Equal(0.9, results[0]!["features"]!["score"]!.GetValue<double>());
        Assert.Equal(0.5, results[1]!["features"]!["score"]!.GetValue<double>());
        Assert.False(results[2]!["found"]!.GetValue<bool>());
        (exit, output) = await AtelierAsync(server, "features", "views", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("score:float64", output, StringComparison.Ordinal);

        await File.WriteAllLinesAsync(rows, ["""{"example_id":"c","event_time":"2026-01-01T00:00:00Z","score":"high"}"""]);
        (exit, output) = await AtelierAsync(server, "features", "push", "quality", rows);
        Assert.Equal(2, exit);
        Assert.Contains("score", output, StringComparison.Ordinal);
    }

    private static Task<(int ExitCode, string Output)> AtelierAsync(TestServer server, params string[] args) =>
        Repo.RunAsync(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. args, "--server", server.BaseUrl, "--api-key", server.AdminKey],
            server.DataDirectory,
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });

    private static async Task CreateAsync(HttpClient client, string name, int dimension, string metric, string storage, int shards)
    {
        using var response = await client.PostAsJsonAsync("/api/v1/collections", new { name, dimension, metric, storage, shards });
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.Created, body);
    }

    private static async Task UpsertAsync(HttpClient client, string name, IReadOnlyList<SeededPoint> points, int batch)
    {
        foreach (var chunk in points.Chunk(batch))
        {
            using var response = await client.PutAsJsonAsync($"/api/v1/collections/{name}/points", new { points = chunk.Select(p => p.ToJson()) });
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, body);
            Assert.Equal("acknowledged", JsonNode.Parse(body)!["status"]!.GetValue<string>());
        }
    }

    private static async Task<JsonArray> SearchAsync(HttpClient client, string name, object request)
    {
        using var response = await client.PostAsJsonAsync($"/api/v1/collections/{name}/points/search", request);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonNode.Parse(body)!["data"]!.AsArray();
    }

    private static async Task<JsonNode> GetJsonAsync(HttpClient client, string path)
    {
        using var response = await client.GetAsync(path);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonNode.Parse(body)!;
    }

    private static Task<HttpResponseMessage> PutRawAsync(HttpClient client, string name, string json) =>
        client.PutAsync($"/api/v1/collections/{name}/points", new StringContent(json, Encoding.UTF8, "application/json"));

    private static async Task AssertProblemAsync(HttpResponseMessage response, int status, string? field, string text)
    {
        using (response)
        {
            var body = await response.Content.ReadAsStringAsync();
            Assert.True((int)response.StatusCode == status, $"expected {status}, got {(int)response.StatusCode}: {body}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            var problem = JsonNode.Parse(body)!;
            if (field is not null)
            {
                var fields = problem["problems"]!.AsArray().Select(p => p!["field"]?.GetValue<string>()).ToArray();
                Assert.Contains(field, fields);
            }

            Assert.Contains(text, body, StringComparison.Ordinal);
        }
    }

    private static long[] BruteForce(IReadOnlyList<SeededPoint> points, float[] query, string metric, int k, Func<SeededPoint, bool> filter)
    {
        double Score(float[] v)
        {
            double dot = 0, nv = 0, nq = 0, l2 = 0;
            for (int i = 0; i < v.Length; i++)
            {
                dot += v[i] * query[i];
                nv += v[i] * v[i];
                nq += query[i] * query[i];
                l2 += (v[i] - query[i]) * (v[i] - query[i]);
            }

            // Higher is nearer.
            return metric switch
            {
                "cosine" => dot / Math.Sqrt(nv * nq),
                "dot" => dot,
                _ => -l2,
            };
        }

        return [.. points.Where(filter).OrderByDescending(p => Score(p.Vector)).ThenBy(p => p.Id).Take(k).Select(p => p.Id)];
    }
}

/// <summary>A generated point: a clustered vector and a payload of every kind.</summary>
internal sealed record SeededPoint(long Id, float[] Vector, string Category, double Price, bool Published, int Rank)
{
    public object ToJson() => new { id = Id, vector = Vector, payload = new { category = Category, price = Price, published = Published, rank = Rank } };
}

/// <summary>Seeded clustered data: Gaussian blobs around random centres, as embeddings cluster by topic.</summary>
internal static class SeededPoints
{
    public static SeededPoint[] Generate(int count, int dimension, int seed)
    {
        var random = new Random(seed);
        int clusters = Math.Max(4, count / 100);
        var centres = Enumerable.Range(0, clusters).Select(_ => Enumerable.Range(0, dimension).Select(_ => Gaussian(random) * 3).ToArray()).ToArray();
        var categories = new[] { "news", "code", "math", "law", "chat" };
        var points = new SeededPoint[count];
        for (int i = 0; i < count; i++)
        {
            var centre = centres[random.Next(clusters)];
            var vector = new float[dimension];
            for (int d = 0; d < dimension; d++)
            {
                vector[d] = (float)(centre[d] + Gaussian(random));
            }

            points[i] = new SeededPoint(i, vector, categories[random.Next(categories.Length)], Math.Round(random.NextDouble() * 100, 2), random.Next(2) == 0, random.Next(10));
        }

        return points;
    }

    public static float[] Query(Random random, int dimension) =>
        [.. Enumerable.Range(0, dimension).Select(_ => (float)(Gaussian(random) * 3))];

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
