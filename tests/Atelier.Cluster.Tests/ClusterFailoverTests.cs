using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Amazon.S3.Model;
using Atelier.Core;
using Atelier.Core.Residency;
using Atelier.Core.Topology;
using Atelier.Testing;

namespace Atelier.Cluster.Tests;

/// <summary>The Ceph cluster the cluster tests share.</summary>
[CollectionDefinition(Name)]
public sealed class ClusterCephCollection : ICollectionFixture<CephRgw>
{
    public const string Name = "cluster-ceph";
}

/// <summary>
/// Three <c>atelier serve</c> processes on loopback (nodes a and b in rack r1, c in rack r2), one
/// real PostgreSQL and one real Ceph RGW, as an operator runs them: a file uploaded on a is listed
/// and downloaded on c (streamed from a's drive); a job whose data sits on b's drive validates and
/// trains on b; kill -9 of b mid-training: membership declares b dead, the job resumes on a or c from
/// the checkpoint on the shared bucket, and its adapter is bit-identical to an uninterrupted run's.
/// A US bucket among the checkpoint locations of that EU-only job gets no byte, and the refusals
/// are audited; once b is back, <c>audit verify</c> passes on every node for every node's chain.
/// </summary>
[Trait("Category", "Slow")]
[Collection(ClusterCephCollection.Name)]
public sealed class ClusterFailoverTests(CephRgw ceph)
{
    private const int Steps = 160;
    private static readonly string[] Nodes = ["a", "b", "c"];

    [Fact]
    public async Task ThreeNodes_KillDashNineOfTheTrainingNode_JobResumesElsewhereToTheSameAdapter()
    {
        var modelDir = TestModels.TinyModel("tiny-base");
        var importRoot = Path.GetDirectoryName(modelDir)!;

        // The reference: the same job on one embedded server, never interrupted.
        byte[] reference;
        await using (var server = await TestServer.StartAsync(c => c with { Models = new ModelsConfig { ImportRoots = [importRoot] } }))
        {
            using var client = server.Client();
            await ImportAsync(client, modelDir, location: null);
            var file = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
            var job = await CreateJobAsync(client, file);
            await WaitForStatusAsync(client, job, "SUCCESS");
            reference = await File.ReadAllBytesAsync(Path.Combine(server.DataDirectory, "blobs", "local", "objects", "job", job, "adapter", "lora.safetensors"));
        }

        var postgres = await PostgreSqlServer.SharedAsync();
        var connection = await postgres.CreateDatabaseAsync("failover");
        var bucket = "cluster-" + Guid.NewGuid().ToString("N")[..8];
        var cloud = "cloud-" + Guid.NewGuid().ToString("N")[..8];
        await ceph.BucketAsync(bucket);
        await ceph.BucketAsync(cloud);

        var root = TestCleanup.CreateDirectory("atelier-cluster");
        var running = new Dictionary<string, ServeNode>(StringComparer.Ordinal);
        try
        {
            foreach (var name in Nodes)
            {
                running[name] = await StartAsync(root, name, connection, bucket, cloud, importRoot);
            }

            var key = (await File.ReadAllTextAsync(Path.Combine(running["a"].Data, "admin.key"))).Trim();
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            string Url(string node) => running[node].Url;

            // Every node lists every node, with its site, rack and health.
            await Waits.UntilAsync(async () => (await ActiveNodesAsync(http, Url("c"))).SetEquals(Nodes), () => "three active nodes listed by c");
            var listed = JsonNode.Parse(await http.GetStringAsync($"{Url("a")}/api/v1/nodes"))!["data"]!.AsArray();
            Assert.Equal("r2", listed.Single(n => n!["name"]!.GetValue<string>() == "c")!["rack"]!.GetValue<string>());
            Assert.Equal("paris", listed.Single(n => n!["name"]!.GetValue<string>() == "a")!["site"]!.GetValue<string>());

            // A file uploaded on a lives on a's drive; c lists it and streams its bytes from a.
            var lines = TestModels.TrainingLines().ToArray();
            var onA = await UploadAsync(http, Url("a"), lines);
            Assert.Contains(onA, JsonNode.Parse(await http.GetStringAsync($"{Url("c")}/v1/files"))!["data"]!.AsArray().Select(f => f!["id"]!.GetValue<string>()));
            var downloaded = await http.GetStringAsync($"{Url("c")}/v1/files/{onA}/content");
            Assert.Equal(string.Join('\n', lines) + "\n", downloaded);
            Assert.False(Directory.Exists(Path.Combine(running["c"].Data, "blobs", "a-local")), "node c opened node a's drive as its own");

            // A download URL signed by a (with the key file every node shares) is valid on c.
            var signed = JsonNode.Parse(await http.GetStringAsync($"{Url("a")}/v1/files/{onA}/url"))!["url"]!.GetValue<string>();
            using (var anyone = new HttpClient())
            {
                var query = new Uri(signed).PathAndQuery;
                Assert.Equal(string.Join('\n', lines) + "\n", await anyone.GetStringAsync($"{Url("c")}{query}"));
                Assert.Equal(HttpStatusCode.Unauthorized, (await anyone.GetAsync($"{Url("c")}{query.Replace("signature=", "signature=x", StringComparison.Ordinal)}")).StatusCode);
            }

            // The node-to-node blob endpoint reads only for members: neither no key nor a user's API key opens it.
            using (var outsider = new HttpClient())
            {
                Assert.Equal(HttpStatusCode.Unauthorized, (await outsider.GetAsync($"{Url("a")}/internal/v1/blobs/a-local?prefix=file/")).StatusCode);
                outsider.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
                Assert.Equal(HttpStatusCode.Unauthorized, (await outsider.GetAsync($"{Url("a")}/internal/v1/blobs/a-local?prefix=file/")).StatusCode);
            }

            // The base model on the shared bucket; the training file on b's drive, so the job runs on b.
            using (var client = Client(http, Url("a")))
            {
                await ImportAsync(client, modelDir, location: "ceph");
            }

            var onB = await UploadAsync(http, Url("b"), lines);
            string jobId;
            using (var client = Client(http, Url("a")))
            {
                jobId = await CreateJobAsync(client, onB);
            }

            var job = await WaitForCheckpointsAsync(http, Url("a"), jobId, 2);
            Assert.Equal("b", (string?)job["events"]!.AsArray().Last(e => e!["name"]!.GetValue<string>() == "placed")!["data"]!["node"]);
            Assert.Contains(job["events"]!.AsArray(), e => e!["name"]!.GetValue<string>() == "data-curated");

            // kill -9 of b in the middle of training.
            await running["b"].KillAsync();

            // Until membership votes b dead, a grain that lived on b does not answer: the node list
            // says so with 503 and Retry-After (never a 500), then lists b as no longer active.
            await Waits.UntilAsync(
                async () =>
                {
                    using var answer = await http.GetAsync($"{Url("a")}/api/v1/nodes");
                    var text = await answer.Content.ReadAsStringAsync();
                    Assert.True(answer.StatusCode is HttpStatusCode.OK or HttpStatusCode.ServiceUnavailable, $"{(int)answer.StatusCode}: {text}");
                    if (answer.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        Assert.NotNull(answer.Headers.RetryAfter);
                        Assert.Equal("cluster_unavailable", JsonNode.Parse(text)!["code"]!.GetValue<string>());
                        return false;
                    }

                    return !JsonNode.Parse(text)!["data"]!.AsArray().Any(n => n!["name"]!.GetValue<string>() == "b" && n["status"]!.GetValue<string>() == "active");
                },
                () => "b listed as not active after its kill");

            var done = await WaitForStatusAsync(http, Url("a"), jobId, "SUCCESS", TimeSpan.FromMinutes(8));
            var events = done["events"]!.AsArray();
            Assert.Contains(events, e => e!["name"]!.GetValue<string>() == "rescheduled" && (string?)e["data"]!["lost_node"] == "b");
            var resumed = events.Where(e => e!["name"]!.GetValue<string>() == "resumed").ToArray();
            Assert.NotEmpty(resumed);
            Assert.True(resumed[^1]!["data"]!["from_step"]!.GetValue<long>() > 0, "the job started over instead of resuming: " + done.ToJsonString());
            var finalNode = (string?)events.Last(e => e!["name"]!.GetValue<string>() == "placed")!["data"]!["node"];
            Assert.Contains(finalNode, new[] { "a", "c" });

            // Bit for bit the uninterrupted run's adapter, read behind Atelier's back from the bucket.
            using var s3 = ceph.NewClient();
            var adapterKey = (await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket })).S3Objects
                .Select(o => o.Key).Single(k => k.EndsWith($"job/{jobId}/adapter/lora.safetensors", StringComparison.Ordinal));
            using (var adapter = await s3.GetObjectAsync(bucket, adapterKey))
            {
                using var bytes = new MemoryStream();
                await adapter.ResponseStream.CopyToAsync(bytes);
                Assert.True(reference.AsSpan().SequenceEqual(bytes.ToArray()), $"the resumed job's adapter ({bytes.Length} bytes) differs from the uninterrupted run's ({reference.Length} bytes)");
            }

            // Residency: the US bucket holds nothing, every checkpoint has an on-prem copy, and the
            // refusals are in the audit log of the node that wrote the checkpoints after the failover.
            Assert.Empty((await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = cloud })).S3Objects ?? []);
            var checkpoints = JsonNode.Parse(await http.GetStringAsync($"{Url(finalNode!)}/api/v1/checkpoints?job_id={jobId}"))!["data"]!.AsArray();
            Assert.NotEmpty(checkpoints);
            Assert.All(checkpoints, c => Assert.Contains(c!["locations"]!.AsArray().Select(l => l!.GetValue<string>()), l => l is "ceph" or "a-local" or "b-local" or "c-local"));
            Assert.All(checkpoints, c => Assert.DoesNotContain("us-cloud", c!["locations"]!.AsArray().Select(l => l!.GetValue<string>())));
            var audit = JsonNode.Parse(await http.GetStringAsync($"{Url(finalNode!)}/api/v1/audit?limit=10000"))!["data"]!.AsArray();
            Assert.Contains(audit, e => (string?)e!["location"] == "us-cloud" && ((string?)e["type"])!.Contains("refus", StringComparison.Ordinal));

            // b comes back; every node verifies every node's chain.
            running["b"] = await StartAsync(root, "b", connection, bucket, cloud, importRoot);
            await Waits.UntilAsync(async () => (await ActiveNodesAsync(http, Url("a"))).SetEquals(Nodes), () => "b active again");
            foreach (var node in Nodes)
            {
                var verify = JsonNode.Parse(await http.GetStringAsync($"{Url(node)}/api/v1/audit/verify"))!;
                Assert.True(verify["valid"]!.GetValue<bool>(), verify.ToJsonString());
                var checks = verify["nodes"]!.AsArray();
                Assert.Equal(Nodes, checks.Select(n => n!["node"]!.GetValue<string>()).Order());
                Assert.All(checks, n => Assert.True(n!["valid"]!.GetValue<bool>() && n["reachable"]!.GetValue<bool>(), verify.ToJsonString()));
            }
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

    // The key every node shares, as an operator makes it: 32 random bytes in base64, owner-only.
    private static Task<string> SigningKeyAsync(string root)
    {
        var path = Path.Combine(root, "url-signing.key");
        if (!File.Exists(path))
        {
            Atelier.Core.IO.SecretFile.Write(path, Encoding.ASCII.GetBytes(Convert.ToBase64String(System.Security.Cryptography.RandomNumberGenerator.GetBytes(32))), overwrite: false);
        }

        return Task.FromResult(path);
    }

    private static async Task<HashSet<string>> ActiveNodesAsync(HttpClient http, string url)
    {
        using var nodes = JsonDocument.Parse(await http.GetStringAsync($"{url}/api/v1/nodes"));
        return [.. nodes.RootElement.GetProperty("data").EnumerateArray().Where(n => n.GetProperty("status").GetString() == "active").Select(n => n.GetProperty("name").GetString()!)];
    }

    private static HttpClient Client(HttpClient http, string url)
    {
        var client = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
        client.DefaultRequestHeaders.Authorization = http.DefaultRequestHeaders.Authorization;
        return client;
    }

    private static async Task<string> UploadAsync(HttpClient http, string url, IEnumerable<string> lines)
    {
        using var client = Client(http, url);
        return await ApiRequests.UploadAsync(client, "train.jsonl", lines);
    }

    private static async Task ImportAsync(HttpClient client, string dir, string? location)
    {
        using var response = await client.PostAsync("/api/v1/models/import", new StringContent(JsonSerializer.Serialize(new { path = dir, location }), Encoding.UTF8, "application/json"));
        Assert.True(response.StatusCode == HttpStatusCode.Created, await response.Content.ReadAsStringAsync());
    }

    private static async Task<string> CreateJobAsync(HttpClient client, string file)
    {
        var request = new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = file, weight = 1 } },
            hyperparameters = new { training_steps = Steps, learning_rate = 3e-3, seq_len = 64 },
            auto_start = true,
        };
        using var response = await client.PostAsync("/v1/fine_tuning/jobs", new StringContent(JsonSerializer.Serialize(request), Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        return JsonNode.Parse(body)!["id"]!.GetValue<string>();
    }

    // Polled fast: a tiny model trains in seconds, and the kill must land between checkpoints.
    private static async Task<JsonNode> WaitForCheckpointsAsync(HttpClient http, string url, string jobId, int count)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var job = JsonNode.Parse(await http.GetStringAsync($"{url}/v1/fine_tuning/jobs/{jobId}"))!;
            var status = job["status"]!.GetValue<string>();
            if (job["checkpoints"]!.AsArray().Count >= count)
            {
                Assert.True(status == "RUNNING", "the job is no longer training: " + job.ToJsonString());
                return job;
            }

            Assert.True(status is "QUEUED" or "VALIDATING" or "VALIDATED" or "RUNNING", job.ToJsonString());
            Assert.True(deadline.Elapsed < TimeSpan.FromMinutes(5), $"no {count} checkpoints: {job.ToJsonString()}");
            await Task.Delay(5);
        }
    }

    private static Task<JsonNode> WaitForStatusAsync(HttpClient client, string jobId, string status) =>
        WaitForStatusAsync(client, client.BaseAddress!.ToString().TrimEnd('/'), jobId, status, TimeSpan.FromMinutes(5));

    private static async Task<JsonNode> WaitForStatusAsync(HttpClient http, string url, string jobId, string status, TimeSpan limit)
    {
        JsonNode job = new JsonObject();
        await Waits.UntilAsync(
            async () =>
            {
                job = JsonNode.Parse(await http.GetStringAsync($"{url}/v1/fine_tuning/jobs/{jobId}"))!;
                var now = job["status"]!.GetValue<string>();
                Assert.True(now == status || !(now.Contains("FAILED", StringComparison.Ordinal) || now == "CANCELLED"), job.ToJsonString());
                return now == status;
            },
            () => $"job {jobId} {status}: {job.ToJsonString()}",
            limit);
        return job;
    }

    /// <summary>
    /// One node of the cluster, started as an operator starts it, with the cluster's one
    /// configuration: three nodes in two racks, each node's own drive, the shared Ceph bucket (on-prem,
    /// in France) and a US cloud bucket, checkpoints to the node's drive then the shared bucket.
    /// Each node uploads to its own drive.
    /// </summary>
    private async Task<ServeNode> StartAsync(string root, string node, string connection, string bucket, string cloud, string importRoot)
    {
        var data = Path.Combine(root, node);
        Directory.CreateDirectory(data);
        var endpoint = ceph.Endpoint.GetLeftPart(UriPartial.Authority);
        var defaults = AtelierConfig.CreateDefault();
        var config = defaults with
        {
            Sites = [new Site("paris", "FR", [new Rack("r1", ["a", "b"]), new Rack("r2", ["c"])])],
            Locations =
            [
                .. Nodes.Select(n => new LocationDescriptor
                {
                    Id = $"{n}-local", Kind = LocationKind.LocalDirectory, Uri = $"blobs/{n}-local", Country = "FR", Blocs = ["EU", "EEA"],
                    Site = "paris", Rack = n == "c" ? "r2" : "r1", Node = n, OnPrem = true, Operator = "self",
                }),
                new LocationDescriptor
                {
                    Id = "ceph", Kind = LocationKind.S3Bucket, Uri = $"{endpoint}/{bucket}/atelier", Country = "FR", Blocs = ["EU", "EEA"],
                    Site = "paris", OnPrem = true, Operator = "self", S3 = new S3LocationSettings { CredentialsFile = ceph.CredentialsFile },
                },
                new LocationDescriptor
                {
                    Id = "us-cloud", Kind = LocationKind.S3Bucket, Uri = $"{endpoint}/{cloud}", Country = "US",
                    OnPrem = false, Operator = "cloud", S3 = new S3LocationSettings { CredentialsFile = ceph.CredentialsFile },
                },
            ],
            Defaults = defaults.Defaults with { FileLocation = $"{node}-local", CheckpointLocations = ["a-local", "b-local", "c-local", "ceph", "us-cloud"] },
            Models = new ModelsConfig { ImportRoots = [importRoot] },
            // Short enough that the test does not wait for Orleans' default, long enough that a node
            // slowed by a loaded CI machine is not voted dead while it lives.
            Cluster = new ClusterConfig { Id = "failover", SharedLocation = "ceph", ProbeTimeoutSeconds = 5 },
            Server = defaults.Server with { UrlSigningKeyFile = await SigningKeyAsync(root) },
        };
        await File.WriteAllTextAsync(Path.Combine(data, AtelierConfig.FileName), JsonSerializer.Serialize(config, AtelierConfig.SerializerOptions));
        return await ServeNode.StartAsync(node, data, connection);
    }
}
