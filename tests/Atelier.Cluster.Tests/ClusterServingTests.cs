using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core;
using Atelier.Core.Residency;
using Atelier.Core.Topology;
using Atelier.Testing;

namespace Atelier.Cluster.Tests;

/// <summary>
/// Serving replicas on cluster nodes (decision 0025): two <c>atelier serve</c> processes on one real
/// PostgreSQL, node <c>eu</c> on a French drive and node <c>us</c> on an American one. A chat for an
/// EU-only model sent to the US node is forwarded to the EU node (named by <c>X-Atelier-Replica</c>,
/// the same greedy answer as the EU node gives directly, streamed through as well); a model allowed
/// anywhere is served where it was asked, and asked of the other node it goes where that node publishes
/// it is held; a request marked as forwarded is judged again where it
/// lands; once the EU node is gone, the US node refuses the EU-only model with 403 naming the policy,
/// and audits it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ClusterServingTests
{
    private static readonly string[] Nodes = ["eu", "us"];

    [Fact]
    public async Task AnEuOnlyModelAskedOfTheUsNode_IsServedByTheEuNode_AndRefusedOnceTheEuNodeIsGone()
    {
        var euModel = TestModels.TinyModel("tiny-eu");
        var anyModel = TestModels.TinyModel("tiny-any");
        var importRoots = new[] { Path.GetDirectoryName(euModel)!, Path.GetDirectoryName(anyModel)! };
        var postgres = await PostgreSqlServer.SharedAsync();
        var connection = await postgres.CreateDatabaseAsync("replicas");
        var root = TestCleanup.CreateDirectory("atelier-replicas");
        var running = new Dictionary<string, ServeNode>(StringComparer.Ordinal);
        try
        {
            foreach (var name in Nodes)
            {
                running[name] = await StartAsync(root, name, connection, importRoots);
            }

            var key = (await File.ReadAllTextAsync(Path.Combine(running["eu"].Data, "admin.key"))).Trim();
            using var eu = Client(running["eu"].Url, key);
            using var us = Client(running["us"].Url, key);
            await Waits.UntilAsync(async () => (await ActiveNodesAsync(us)).SetEquals(Nodes), () => "both nodes active, as the us node sees them");

            // The EU-only model's bytes on the EU drive; the other model's on the US drive, allowed anywhere.
            await ImportAsync(eu, euModel, "tiny-eu", "eu-local", "eu-only");
            await ImportAsync(us, anyModel, "tiny-any", "us-local", "anywhere");

            // Asked of the US node, served by the EU node: the same greedy answer as the EU node's own.
            var (directStatus, direct, directReplica) = await ChatAsync(eu, "tiny-eu");
            Assert.True(directStatus == HttpStatusCode.OK, direct.ToJsonString());
            Assert.Equal("eu", directReplica);
            var (status, proxied, replica) = await ChatAsync(us, "tiny-eu");
            Assert.True(status == HttpStatusCode.OK, proxied.ToJsonString());
            Assert.Equal("eu", replica);
            Assert.Equal(Content(direct), Content(proxied));
            Assert.Equal(direct["usage"]!.ToJsonString(), proxied["usage"]!.ToJsonString());

            // Streamed through the US node: server-sent events, the same text, [DONE] last.
            var (streamReplica, streamed) = await StreamAsync(us, "tiny-eu");
            Assert.Equal("eu", streamReplica);
            Assert.Equal(Content(direct), streamed);

            // A model allowed anywhere is served by the node it was asked of.
            var (anyStatus, anyAnswer, anyReplica) = await ChatAsync(us, "tiny-any");
            Assert.True(anyStatus == HttpStatusCode.OK, anyAnswer.ToJsonString());
            Assert.Equal("us", anyReplica);

            // Asked of the EU node, which has forwarded nothing yet: the US node publishes that it holds
            // the model, so the EU node sends the request there rather than loading the model itself.
            // A node's publication is read again once a second old (ClusterServingReplicas.PublicationAge):
            // wait that out, so the EU node does not judge by the one it read before the US node loaded it.
            await Task.Delay(TimeSpan.FromSeconds(2));
            var (heldStatus, heldAnswer, heldReplica) = await ChatAsync(eu, "tiny-any");
            Assert.True(heldStatus == HttpStatusCode.OK, heldAnswer.ToJsonString());
            Assert.Equal("us", heldReplica);
            Assert.Equal(Content(anyAnswer), Content(heldAnswer));

            // The US node counts what it forwarded, by node and outcome.
            var metrics = await us.GetStringAsync("/metrics");
            Assert.Contains(metrics.Split('\n'), l => l.StartsWith("atelier_inference_forwarded_total{", StringComparison.Ordinal) && l.Contains("node=\"eu\"", StringComparison.Ordinal) && l.Contains("outcome=\"answered\"", StringComparison.Ordinal));

            // Defence in depth: a request marked as forwarded is served where it lands or refused there, never sent on.
            var (markedStatus, marked, _) = await ChatAsync(us, "tiny-eu", forwardedBy: "eu");
            Assert.True(markedStatus == HttpStatusCode.Forbidden, marked.ToJsonString());
            Assert.Contains("forwarded here by another node", marked["message"]!.GetValue<string>(), StringComparison.Ordinal);

            // The EU node goes away. Until membership declares it dead a request may still be sent its
            // way and fail: then a 503 with a body that names it; afterwards, the policy's 403.
            await running["eu"].KillAsync();
            var (refused, refusal, _) = await ChatAsync(us, "tiny-eu");
            await Waits.UntilAsync(
                async () =>
                {
                    (refused, refusal, _) = await ChatAsync(us, "tiny-eu");
                    Assert.True(refused is HttpStatusCode.ServiceUnavailable or HttpStatusCode.Forbidden, refusal.ToJsonString());
                    if (refused == HttpStatusCode.ServiceUnavailable)
                    {
                        Assert.Contains("eu:", refusal["message"]!.GetValue<string>(), StringComparison.Ordinal);
                    }

                    return refused == HttpStatusCode.Forbidden;
                },
                () => "the us node refusing the EU-only model once the eu node is gone; last answer " + refusal.ToJsonString(),
                TimeSpan.FromMinutes(3));
            Assert.Equal("error", refusal["object"]!.GetValue<string>());
            var message = refusal["message"]!.GetValue<string>();
            Assert.Contains("'eu-only'", message, StringComparison.Ordinal);
            Assert.Contains("us: location jurisdiction US", message, StringComparison.Ordinal);
            var audit = JsonNode.Parse(await us.GetStringAsync("/api/v1/audit?limit=1000"))!["data"]!.AsArray();
            Assert.Contains(audit, e => (string?)e!["type"] == "access_refused" && ((string?)e["detail"] ?? "").Contains("'eu-only'", StringComparison.Ordinal));

            // The model allowed anywhere is still served.
            Assert.Equal(HttpStatusCode.OK, (await ChatAsync(us, "tiny-any")).Status);
        }
        finally
        {
            foreach (var node in running.Values)
            {
                await node.KillAsync();
                node.Process.Dispose();
            }

            await postgres.DropDatabaseAsync(connection);
        }
    }

    private static string Content(JsonNode answer) => answer["choices"]![0]!["message"]!["content"]!.GetValue<string>();

    private static string ChatBody(string model, bool stream) =>
        JsonSerializer.Serialize(new { model, messages = new[] { new { role = "user", content = "hello" } }, max_tokens = 8, temperature = 0, stream });

    private static async Task<(HttpStatusCode Status, JsonNode Body, string? Replica)> ChatAsync(HttpClient client, string model, string? forwardedBy = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(ChatBody(model, stream: false), Encoding.UTF8, "application/json") };
        if (forwardedBy is not null)
        {
            request.Headers.Add("X-Atelier-Forwarded-By", forwardedBy);
        }

        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.False(string.IsNullOrEmpty(text), $"{(int)response.StatusCode} with an empty body");
        return (response.StatusCode, JsonNode.Parse(text)!, response.Headers.TryGetValues("X-Atelier-Replica", out var r) ? r.Single() : null);
    }

    private static async Task<(string? Replica, string Text)> StreamAsync(HttpClient client, string model)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(ChatBody(model, stream: true), Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var text = new StringBuilder();
        string? last = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
            {
                continue;
            }

            last = line;
            if (line == "data: [DONE]")
            {
                break;
            }

            var delta = JsonNode.Parse(line["data: ".Length..])!["choices"]!.AsArray().FirstOrDefault()?["delta"]?["content"];
            text.Append(delta?.GetValue<string>());
        }

        Assert.Equal("data: [DONE]", last);
        return (response.Headers.TryGetValues("X-Atelier-Replica", out var r) ? r.Single() : null, text.ToString());
    }

    private static HttpClient Client(string url, string key)
    {
        var client = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    private static async Task<HashSet<string>> ActiveNodesAsync(HttpClient client)
    {
        using var nodes = JsonDocument.Parse(await client.GetStringAsync("/api/v1/nodes"));
        return [.. nodes.RootElement.GetProperty("data").EnumerateArray().Where(n => n.GetProperty("status").GetString() == "active").Select(n => n.GetProperty("name").GetString()!)];
    }

    private static async Task ImportAsync(HttpClient client, string dir, string name, string location, string policy)
    {
        using var response = await client.PostAsync("/api/v1/models/import", new StringContent(JsonSerializer.Serialize(new { path = dir, name, location, policy }), Encoding.UTF8, "application/json"));
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// One node with the cluster's one configuration: eu in Paris (FR, EU), us in Virginia (US), each
    /// with its own drive, which is where it serves; an EU-only policy and one that allows anywhere.
    /// </summary>
    private static async Task<ServeNode> StartAsync(string root, string node, string connection, string[] importRoots)
    {
        var data = Path.Combine(root, node);
        Directory.CreateDirectory(data);
        var defaults = AtelierConfig.CreateDefault();
        var config = defaults with
        {
            Sites = [new Site("paris", "FR", [new Rack("r1", ["eu"])]), new Site("virginia", "US", [new Rack("r1", ["us"])])],
            Locations =
            [
                new LocationDescriptor
                {
                    Id = "eu-local", Kind = LocationKind.LocalDirectory, Uri = "blobs/eu-local", Country = "FR", Blocs = ["EU", "EEA"],
                    Site = "paris", Rack = "r1", Node = "eu", OnPrem = true, Operator = "self",
                },
                new LocationDescriptor
                {
                    Id = "us-local", Kind = LocationKind.LocalDirectory, Uri = "blobs/us-local", Country = "US",
                    Site = "virginia", Rack = "r1", Node = "us", OnPrem = true, Operator = "self",
                },
            ],
            Policies =
            [
                new ResidencyPolicy { Name = "eu-only", AllowedJurisdictions = ["EU"] },
                new ResidencyPolicy { Name = "anywhere", AllowedJurisdictions = ["*"] },
            ],
            Defaults = defaults.Defaults with { FileLocation = $"{node}-local", FilePolicy = "anywhere", CheckpointPolicy = "anywhere", CheckpointLocations = [$"{node}-local"] },
            Models = new ModelsConfig { ImportRoots = importRoots },
            Cluster = new ClusterConfig { Id = "replicas", ProbeTimeoutSeconds = 5 },
        };
        await File.WriteAllTextAsync(Path.Combine(data, AtelierConfig.FileName), JsonSerializer.Serialize(config, AtelierConfig.SerializerOptions));
        return await ServeNode.StartAsync(node, data, connection);
    }
}
