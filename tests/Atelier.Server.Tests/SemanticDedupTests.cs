using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Numerics.Tensors;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Parquet.Serialization;

namespace Atelier.Server.Tests;

/// <summary>
/// <c>POST /api/v1/datasets/{id}/semantic-dedup</c> end to end: a dataset built from uploaded files,
/// a tiny imported base model as the embedder, planted near duplicates and a contaminated example.
/// </summary>
/// <remarks>
/// With the tiny random model (seed 5), texts differing by one character or one word have cosine
/// similarity 0.991 to 0.9996, while the unrelated texts here stay at or below 0.89: thresholds of
/// 0.98 (duplicates) and 0.97 (contamination) sit in that gap, which
/// <see cref="TinyModel_SeparatesPlantedVariantsFromUnrelatedTexts"/> checks directly.
/// </remarks>
[Trait("Category", "Slow")]
public sealed class SemanticDedupTests
{
    private const string Router = "How do I reset my router password?";
    private const string RouterAnswer = "Hold the reset button for ten seconds, then log in with the default password.";
    private const string Boiling = "What is the boiling point of water at sea level?";
    private const string Haiku = "Write a haiku about autumn leaves.";
    private const string HaikuAnswer = "Crimson leaves falling, whispering to the cold ground, the year exhales slow.";

    // Line (1-based) → example. Expected: 1 keeps 2 and 5 out, 3 keeps 6 out, 7 is contaminated, 4 and 8 are controls.
    private static readonly (string Q, string A)[] Training =
    [
        (Router, RouterAnswer),
        (Router, RouterAnswer.Replace('.', '!')),
        (Boiling, "It boils at one hundred degrees Celsius."),
        ("Translate 'good morning' into German.", "Guten Morgen."),
        (Router.Replace("password", "pasword", StringComparison.Ordinal), RouterAnswer),
        (Boiling, "It boils at 100 degrees Celsius."),
        (Haiku, HaikuAnswer),
        ("List three prime numbers greater than ten.", "Eleven, thirteen and seventeen."),
    ];

    private static readonly (string Q, string A) EvalItem = (Haiku, HaikuAnswer.Replace("slow", "slowly", StringComparison.Ordinal));

    private static string Chat((string Q, string A) e) => ApiRequests.Chat(e.Q, e.A);

    private static async Task<(HttpStatusCode Status, JsonNode Body)> PostAsync(HttpClient client, string path, object body)
    {
        using var response = await client.PostAsJsonAsync(path, body);
        return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!);
    }

    /// <summary>A server with the source dataset built (near-dup MinHash off, so the planted variants survive it), the eval file and the tiny model.</summary>
    private static async Task<(TestServer Server, HttpClient Client, string Source, string Eval, string Model)> SetUpAsync()
    {
        var server = await TestServer.StartAsync();
        var client = server.Client();
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", Training.Select(Chat));
        var eval = await ApiRequests.UploadAsync(client, "eval.jsonl", [Chat(EvalItem)]);
        var (status, created) = await PostAsync(client, "/api/v1/datasets", new { training_files = new[] { train }, seq_len = 64, options = new { near_dedup = new { enabled = false } } });
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        var source = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
        Assert.True(source["status"]!.GetValue<string>() == "succeeded", source.ToJsonString());
        Assert.Equal(8, source["summary"]!["manifest"]!["counters"]!["examples_kept"]!.GetValue<long>());
        var model = (await TestModels.ImportAsync(server, TestModels.TinyModel(server))).GetProperty("id").GetString()!;
        return (server, client, source["id"]!.GetValue<string>(), eval, model);
    }

    private static async Task<JsonNode> DedupAsync(HttpClient client, string source, object body)
    {
        var (status, created) = await PostAsync(client, $"/api/v1/datasets/{source}/semantic-dedup", body);
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        var done = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        return done;
    }

    private static async Task<byte[]> DownloadAsync(HttpClient client, string dataset, string path)
    {
        using var response = await client.GetAsync($"/api/v1/datasets/{dataset}/files/{path}");
        Assert.True(response.IsSuccessStatusCode, $"{path}: {(int)response.StatusCode}");
        return await response.Content.ReadAsByteArrayAsync();
    }

    [Fact]
    public void TinyModel_SeparatesPlantedVariantsFromUnrelatedTexts()
    {
        var dir = TestModels.TinyModel();
        var tokenizer = ModelTokenizers.Load(dir);
        using var model = MistralModel.Load(dir);
        var texts = Training.Append(EvalItem).Select(e => { var ids = new List<int> { tokenizer.Control.Bos }; tokenizer.Encode(e.Q + "\n" + e.A + "\n", ids); return ids.ToArray(); }).ToList();
        var v = model.PooledEmbeddings(texts);
        float Sim(int a, int b) => TensorPrimitives.Dot(v[a], v[b]);

        Assert.All(v, x => Assert.Equal(1f, TensorPrimitives.Norm(x), 3));
        Assert.Equal(v[3], model.PooledEmbedding(texts[3]), (a, b) => Math.Abs(a - b) < 1e-5f);
        foreach (var (a, b) in new[] { (0, 1), (0, 4), (2, 5), (6, 8) })
        {
            Assert.True(Sim(a, b) >= 0.98f, $"{a}~{b}: {Sim(a, b)}");
        }

        var planted = new HashSet<(int, int)> { (0, 1), (0, 4), (1, 4), (2, 5), (6, 8) };
        for (var a = 0; a < v.Length; a++)
        {
            for (var b = a + 1; b < v.Length; b++)
            {
                if (!planted.Contains((a, b)))
                {
                    Assert.True(Sim(a, b) < 0.95f, $"{a}/{b}: {Sim(a, b)}");
                }
            }
        }
    }

    [Fact]
    public async Task SemanticDedup_OverHttp_KeepsOnePerClusterDropsTheContaminatedExampleAndPlacesTheVersion()
    {
        var (server, client, source, eval, model) = await SetUpAsync();
        await using var serverScope = server;
        using var clientScope = client;

        var done = await DedupAsync(client, source, new { model, threshold = 0.98, eval_files = new[] { eval }, contamination_threshold = 0.97, name = "deduped" });
        var id = done["id"]!.GetValue<string>();
        Assert.Equal("deduped", done["name"]!.GetValue<string>());
        var counters = done["summary"]!["semantic_dedup"]!["counters"]!;
        Assert.Equal(8, counters["examples_in"]!.GetValue<int>());
        Assert.Equal(4, counters["examples_kept"]!.GetValue<int>());
        Assert.Equal(2, counters["clusters"]!.GetValue<int>());
        Assert.Equal(3, counters["duplicates_dropped"]!.GetValue<int>());
        Assert.Equal(1, counters["contaminated"]!.GetValue<int>());
        Assert.Equal(4, done["summary"]!["manifest"]!["counters"]!["examples_kept"]!.GetValue<long>());
        var lineage = done["summary"]!["semantic_dedup"]!["lineage"]!;
        Assert.Equal(source, lineage["source_dataset"]!.GetValue<string>());
        Assert.Equal(model, lineage["model"]!.GetValue<string>());
        Assert.Equal("exact", lineage["search"]!.GetValue<string>());

        var report = JsonNode.Parse(await DownloadAsync(client, id, "semantic-dedup.json"))!;
        var clusters = report["clusters"]!.AsArray();
        Assert.Equal(2, clusters.Count);
        Assert.Equal(1, clusters[0]!["kept"]!["source_line"]!.GetValue<long>());
        Assert.Equal([2L, 5L], clusters[0]!["dropped"]!.AsArray().Select(d => d!["source_line"]!.GetValue<long>()));
        Assert.Equal(3, clusters[0]!["size"]!.GetValue<int>());
        Assert.All(clusters[0]!["dropped"]!.AsArray(), d => Assert.InRange(d!["similarity"]!.GetValue<double>(), 0.98, 1.0));
        Assert.Equal(3, clusters[1]!["kept"]!["source_line"]!.GetValue<long>());
        Assert.Equal([6L], clusters[1]!["dropped"]!.AsArray().Select(d => d!["source_line"]!.GetValue<long>()));
        var contaminated = Assert.Single(report["contaminated"]!.AsArray())!;
        Assert.Equal(7, contaminated["source_line"]!.GetValue<long>());
        Assert.Equal($"{eval}:1", contaminated["eval_item"]!["id"]!.GetValue<string>());
        Assert.Equal("eval.jsonl", contaminated["eval_item"]!["source_file"]!.GetValue<string>());
        Assert.InRange(contaminated["similarity"]!.GetValue<double>(), 0.97, 1.0);

        // The new version holds exactly the kept examples, at their original lines.
        var manifest = JsonNode.Parse(await DownloadAsync(client, id, "manifest.json"))!;
        Assert.Contains(manifest["reports"]!.AsArray(), r => r!["path"]!.GetValue<string>() == "semantic-dedup.json");
        var kept = new List<long>();
        foreach (var part in manifest["features"]!.AsArray())
        {
            using var stream = new MemoryStream(await DownloadAsync(client, id, part!["path"]!.GetValue<string>()));
            kept.AddRange((await ParquetSerializer.DeserializeAsync<ExampleFeatures>(stream)).Data.Where(f => f.DropReason is null).Select(f => f.SourceLine));
        }

        Assert.Equal([1L, 3L, 4L, 8L], kept);
        Assert.NotEmpty(manifest["shards"]!.AsArray());

        // Placed through the guard under dataset/<id>/, with the source's residency.
        var record = (await server.Service<Atelier.Catalog.IDatasetRepository>().GetForBuilderAsync(id))!;
        Assert.Equal((await server.Service<Atelier.Catalog.IDatasetRepository>().GetForBuilderAsync(source))!.Policy, record.Policy);
        Assert.Contains($"dataset/{id}/manifest.json", await server.Locations.ListKeysAsync(record.LocationId, $"dataset/{id}/", CancellationToken.None).ToListAsync());
    }

    [Fact]
    public async Task SemanticDedup_SameInputsTwice_GivesByteIdenticalVersions()
    {
        var (server, client, source, eval, model) = await SetUpAsync();
        await using var serverScope = server;
        using var clientScope = client;
        var request = new { model, threshold = 0.98, eval_files = new[] { eval }, contamination_threshold = 0.97 };
        var first = (await DedupAsync(client, source, request))["id"]!.GetValue<string>();
        var second = (await DedupAsync(client, source, request))["id"]!.GetValue<string>();

        var manifest = await DownloadAsync(client, first, "manifest.json");
        Assert.Equal(manifest, await DownloadAsync(client, second, "manifest.json"));
        foreach (var list in new[] { "shards", "features", "reports" })
        {
            foreach (var file in JsonNode.Parse(manifest)![list]!.AsArray())
            {
                var path = file!["path"]!.GetValue<string>();
                Assert.Equal(await DownloadAsync(client, first, path), await DownloadAsync(client, second, path));
            }
        }
    }

    [Fact]
    public async Task SemanticDedup_WithBadInput_AnswersWhatIsWrongAndQueuesNothing()
    {
        var (server, client, source, eval, model) = await SetUpAsync();
        await using var serverScope = server;
        using var clientScope = client;
        var sourceRecord = (await server.Service<Atelier.Catalog.IDatasetRepository>().GetForBuilderAsync(source))!;
        var before = (await server.Service<Atelier.Catalog.IDatasetRepository>().ListAsync(sourceRecord.WorkspaceId, 0, 100)).Count;

        var (status, body) = await PostAsync(client, "/api/v1/datasets/ds-nope/semantic-dedup", new { model });
        Assert.Equal(HttpStatusCode.NotFound, status);
        (status, body) = await PostAsync(client, $"/api/v1/datasets/{source}/semantic-dedup", new { model = "no-such-model" });
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("no-such-model", body.ToJsonString(), StringComparison.Ordinal);
        (status, _) = await PostAsync(client, $"/api/v1/datasets/{source}/semantic-dedup", new { model, eval_files = new[] { "file-nope" } });
        Assert.Equal(HttpStatusCode.NotFound, status);

        foreach (var (field, value) in new[] { ("threshold", 1.5), ("threshold", 0.0), ("contamination_threshold", -0.1), ("contamination_threshold", 1.01) })
        {
            (status, body) = await PostAsync(client, $"/api/v1/datasets/{source}/semantic-dedup", new Dictionary<string, object> { ["model"] = model, [field] = value });
            Assert.True(status == HttpStatusCode.UnprocessableEntity, body.ToJsonString());
            Assert.Equal(field, body["problems"]![0]!["field"]!.GetValue<string>());
        }

        // A dataset that has not succeeded (here: one that failed) cannot be deduplicated.
        await server.Service<Atelier.Catalog.IDatasetRepository>().InsertAsync(sourceRecord with { Id = "ds-failed", Status = "failed", SummaryJson = null, Error = "boom" });
        (status, body) = await PostAsync(client, "/api/v1/datasets/ds-failed/semantic-dedup", new { model });
        Assert.True(status == HttpStatusCode.Conflict, body.ToJsonString());

        Assert.Equal(before + 1, (await server.Service<Atelier.Catalog.IDatasetRepository>().ListAsync(sourceRecord.WorkspaceId, 0, 100)).Count);
    }

    [Fact]
    public async Task Cli_SemanticDedup_WaitsAndPrintsWhatWasKept()
    {
        var (server, client, source, eval, model) = await SetUpAsync();
        await using var serverScope = server;
        using var clientScope = client;
        var (exit, output) = await Repo.RunAsync(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), "datasets", "semantic-dedup", source, "--model", model, "--threshold", "0.98", "--eval-file", eval, "--contamination-threshold", "0.97", "--server", server.BaseUrl, "--api-key", server.AdminKey],
            server.DataDirectory,
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });
        Assert.True(exit == 0, output);
        Assert.Contains("succeeded, 4 of 8 examples kept (3 semantic duplicates in 2 clusters, 1 contaminated)", output, StringComparison.Ordinal);
    }
}
