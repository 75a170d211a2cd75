using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary><c>/api/v1/features</c> over real HTTP: views, pushes, online lookups, point-in-time retrieval.</summary>
public sealed class FeaturesApiTests
{
    [Fact]
    public async Task PushedFeatures_AreServedOnlineAndPointInTimeCorrectOffline()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using (var created = await client.PostAsJsonAsync("/api/v1/features/views", new
        {
            name = "quality",
            entity_key = "example_id",
            timestamp_field = "event_time",
            fields = new[] { new { name = "score", type = "float64" } },
        }))
        {
            Assert.True(created.IsSuccessStatusCode, await created.Content.ReadAsStringAsync());
        }

        using (var pushed = await client.PostAsJsonAsync("/api/v1/features/views/quality/rows", new
        {
            rows = new object[]
            {
                new { example_id = "a", event_time = "2026-01-01T00:00:00Z", score = 0.1 },
                new { example_id = "a", event_time = "2026-03-01T00:00:00Z", score = 0.9 },
                new { example_id = "b", event_time = "2026-02-01T00:00:00Z", score = 0.5 },
            },
        }))
        {
            Assert.True(pushed.IsSuccessStatusCode, await pushed.Content.ReadAsStringAsync());
        }

        using var online = await client.PostAsJsonAsync("/api/v1/features/views/quality/online", new { keys = new[] { "a", "b", "missing" } });
        var results = JsonNode.Parse(await online.Content.ReadAsStringAsync())!["results"]!.AsArray();
        Assert.Equal(0.9, results[0]!["features"]!["score"]!.GetValue<double>());
        Assert.Equal(0.5, results[1]!["features"]!["score"]!.GetValue<double>());
        Assert.False(results[2]!["found"]!.GetValue<bool>());

        // As of mid-February, 'a' had 0.1 (its 0.9 came later) and as of mid-January 'b' had nothing yet.
        using var historical = await client.PostAsJsonAsync("/api/v1/features/historical", new
        {
            entity_rows = new[]
            {
                new { entity_key = "a", event_timestamp = "2026-02-15T00:00:00Z" },
                new { entity_key = "b", event_timestamp = "2026-01-15T00:00:00Z" },
            },
            features = new[] { "quality:score" },
            format = "json",
        });
        var rows = JsonNode.Parse(await historical.Content.ReadAsStringAsync())!["data"]!.AsArray();
        Assert.Equal(0.1, rows[0]!["score"]!.GetValue<double>());
        Assert.Null(rows[1]!["score"]);

        var placement = server.Audit.Read(0, 100).Where(e => e.Type == "placement" && e.Location == "local").ToArray();
        Assert.NotEmpty(placement);
    }

    [Fact]
    public async Task BadRows_Get422NamingRowAndFieldAndWriteNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        (await client.PostAsJsonAsync("/api/v1/features/views", new
        {
            name = "quality",
            entity_key = "example_id",
            timestamp_field = "event_time",
            fields = new[] { new { name = "score", type = "float64" } },
        })).Dispose();
        var before = server.Audit.LastSeq;

        using var bad = await client.PostAsJsonAsync("/api/v1/features/views/quality/rows", new { rows = new object[] { new { example_id = "a", event_time = "2026-01-01T00:00:00Z", score = "high" } } });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, bad.StatusCode);
        var problem = JsonNode.Parse(await bad.Content.ReadAsStringAsync())!["problems"]![0]!;
        Assert.Equal("score", problem["field"]!.GetValue<string>());
        Assert.Equal(1, problem["line"]!.GetValue<int>());
        Assert.Equal(before, server.Audit.LastSeq);

        using var unknown = await client.PostAsJsonAsync("/api/v1/features/views/nope/online", new { keys = new[] { "a" } });
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);

        using var other = server.Client(await server.CreateKeyAsync("other-team"));
        using var foreign = await other.PostAsJsonAsync("/api/v1/features/views/quality/online", new { keys = new[] { "a" } });
        Assert.Equal(HttpStatusCode.NotFound, foreign.StatusCode);
    }
}
