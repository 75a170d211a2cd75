using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using Atelier.Testing;

namespace Atelier.Cluster.Tests;

/// <summary>
/// Two <c>atelier serve --node NAME --cluster CONNECTION</c> processes on one real PostgreSQL, as a user
/// starts them: they join one Orleans cluster through the catalog's database, and each serves the
/// same catalog (a key made by the first works on the second; a file uploaded on one is listed on the other).
/// </summary>
[Trait("Category", "Slow")]
public sealed class ClusterServeTests
{
    [Fact]
    public async Task TwoNodesServeOneCatalog_AndBothSeeEveryNode()
    {
        var server = await PostgreSqlServer.SharedAsync();
        var connectionString = await server.CreateDatabaseAsync("serve");

        var (a, urlA, dataA) = await StartNodeAsync("node-a", connectionString);
        using var nodeA = a;
        var key = (await File.ReadAllTextAsync(Path.Combine(dataA, "admin.key"))).Trim();
        var (b, urlB, dataB) = await StartNodeAsync("node-b", connectionString);
        using var nodeB = b;

        // The second node found the operator's key in the shared catalog and made none of its own.
        Assert.False(File.Exists(Path.Combine(dataB, "admin.key")), "node b bootstrapped a second operator key");

        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        // Both joined one Orleans cluster through the catalog's database.
        await Waits.UntilAsync(async () => (await ClusterTable.MembersAsync(connectionString, ClusterTable.Active)).SequenceEqual(["node-a", "node-b"]), () => "both nodes active in cluster_members");

        // Each node registered its slots with the one scheduler of the cluster: both list both.
        foreach (var url in new[] { urlA, urlB })
        {
            var answer = "";
            await Waits.UntilAsync(
                async () =>
                {
                    answer = await http.GetStringAsync($"{url}/api/v1/nodes");
                    using var nodes = JsonDocument.Parse(answer);
                    var names = nodes.RootElement.GetProperty("data").EnumerateArray().Select(n => n.GetProperty("name").GetString()).ToHashSet();
                    return names.SetEquals(["node-a", "node-b"]);
                },
                () => $"both nodes listed by {url}; last answer {answer}");
        }

        // A file uploaded through node a is in the catalog node b answers from.
        using var form = new MultipartFormDataContent
        {
            { new StringContent("fine-tune"), "purpose" },
            { new ByteArrayContent("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n"u8.ToArray()), "file", "train.jsonl" },
        };
        using var uploaded = await http.PostAsync($"{urlA}/v1/files", form);
        var body = await uploaded.Content.ReadAsStringAsync();
        Assert.True(uploaded.IsSuccessStatusCode, body);
        var fileId = JsonDocument.Parse(body).RootElement.GetProperty("id").GetString()!;
        using var listed = JsonDocument.Parse(await http.GetStringAsync($"{urlB}/v1/files"));
        Assert.Contains(fileId, listed.RootElement.GetProperty("data").EnumerateArray().Select(f => f.GetProperty("id").GetString()));
        using var retrieved = JsonDocument.Parse(await http.GetStringAsync($"{urlB}/v1/files/{fileId}"));
        Assert.Equal("train.jsonl", retrieved.RootElement.GetProperty("filename").GetString());

        a.Kill(entireProcessTree: true);
        b.Kill(entireProcessTree: true);
        await a.WaitForExitAsync();
        await b.WaitForExitAsync();
        await server.DropDatabaseAsync(connectionString);
    }

    private static async Task<(Process Process, string Url, string Data)> StartNodeAsync(string node, string connectionString)
    {
        var started = await ServeNode.StartAsync(node, Path.Combine(TestCleanup.CreateDirectory("atelier-node"), "data"), connectionString);
        return (started.Process, started.Url, started.Data);
    }
}
