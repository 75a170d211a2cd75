using System.Net;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary><c>GET /api/v1/nodes</c>: the training nodes and their slots the console's overview shows.</summary>
public sealed class NodesApiTests
{
    [Fact]
    public async Task Nodes_ListsThisNodeWithItsConfiguredSlots_ToAnyKey_AndNothingWithoutOne()
    {
        await using var server = await TestServer.StartAsync(config => config with { Defaults = config.Defaults with { TrainingSlots = 3 } });
        var member = await server.CreateKeyAsync("team-a");
        using var client = server.Client(member);

        // The node registers once the silo is up, just after the server starts listening.
        JsonNode body;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            body = JsonNode.Parse(await client.GetStringAsync("/api/v1/nodes"))!;
            if (body["data"]!.AsArray().Count > 0)
            {
                break;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "no node registered in 60 s: " + body.ToJsonString());
            await Task.Delay(50);
        }

        var node = Assert.Single(body["data"]!.AsArray())!;
        Assert.Equal(Environment.MachineName, node["name"]!.GetValue<string>());
        Assert.Equal(3, node["slots"]!.GetValue<int>());
        Assert.Equal(0, node["running"]!.GetValue<int>());
        Assert.Equal(3, node["free"]!.GetValue<int>());
        Assert.Equal(0, body["queued"]!.GetValue<int>());

        using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("/api/v1/nodes")).StatusCode);
    }
}
