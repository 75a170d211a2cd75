using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Atelier.Core;
using Atelier.Core.Residency;

namespace Atelier.Server.Tests;

/// <summary>Where requests are served: only on replicas a model's residency policy allows, refused with 403 (audited) when none is.</summary>
public sealed class ServingRoutingTests
{
    private static readonly string Chat = """{"model":"tiny-model","messages":[{"role":"user","content":"hello"}],"max_tokens":3,"temperature":0}""";

    // A US location beside the default French one; the replicas are set per test.
    private static Func<AtelierConfig, AtelierConfig> WithReplicas(params ReplicaConfig[] replicas) => config => config with
    {
        Locations = [.. config.Locations, new LocationDescriptor { Id = "us-east", Uri = "blobs/us-east", Country = "US", Site = "local-site", Rack = "rack-0" }],
        Serving = config.Serving with { Replicas = replicas },
    };

    private static async Task<(HttpStatusCode Status, JsonNode Body, string? Replica)> PostChatAsync(HttpClient client)
    {
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(Chat, Encoding.UTF8, "application/json"));
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text)!, response.Headers.TryGetValues("X-Atelier-Replica", out var r) ? r.Single() : null);
    }

    [Fact]
    public async Task AnEuOnlyModel_WithOnlyAUsReplica_IsRefusedWith403NamingThePolicy_AndTheRefusalIsAudited()
    {
        await using var server = await TestServer.StartAsync(WithReplicas(new ReplicaConfig("us", "us-east")));
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        using var client = server.Client();
        var (status, body, _) = await PostChatAsync(client);
        Assert.True(status == HttpStatusCode.Forbidden, body.ToJsonString());
        Assert.Equal("error", body["object"]!.GetValue<string>());
        var message = body["message"]!.GetValue<string>();
        Assert.Contains("'default'", message, StringComparison.Ordinal);
        Assert.Contains("us: location jurisdiction US", message, StringComparison.Ordinal);
        Assert.Contains(server.Audit.Tail(50), e => e.Type == "access_refused" && e.Detail!.Contains("/v1/chat/completions", StringComparison.Ordinal) && e.Detail.Contains("'default'", StringComparison.Ordinal));

        // The same holds for embeddings and FIM: nothing is loaded outside the policy.
        using var embeddings = await client.PostAsync("/v1/embeddings", new StringContent("""{"model":"tiny-model","input":"x"}""", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Forbidden, embeddings.StatusCode);
    }

    [Fact]
    public async Task WithAUsAndAnEuReplica_AnEuOnlyModelIsServedByTheEuReplica_EveryTime()
    {
        await using var server = await TestServer.StartAsync(WithReplicas(new ReplicaConfig("us", "us-east"), new ReplicaConfig("eu", "local")));
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        using var client = server.Client();
        for (var i = 0; i < 4; i++)
        {
            var (status, body, replica) = await PostChatAsync(client);
            Assert.True(status == HttpStatusCode.OK, body.ToJsonString());
            Assert.Equal("eu", replica);
        }

        // What served them shows in /metrics: latencies, the engine's sequences, KV blocks and prefix cache.
        var metrics = await client.GetStringAsync("/metrics");
        foreach (var name in new[] { "atelier_inference_time_to_first_token_seconds_count", "atelier_inference_inter_token_latency_seconds_count", "atelier_inference_completions_total", "atelier_inference_kv_blocks_free", "atelier_inference_sequences_running", "atelier_inference_prefix_lookups" })
        {
            Assert.Contains(name, metrics, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task AReplicaAtAnUndefinedLocation_StopsTheServerFromStarting_NamingIt()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => TestServer.StartAsync(WithReplicas(new ReplicaConfig("mars", "olympus"))));
        Assert.Contains("'olympus'", error.Message, StringComparison.Ordinal);
    }
}
