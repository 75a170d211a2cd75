using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary>
/// A server with a tiny base model and two fine-tunes of it registered as versions 1 and 2 of
/// <c>tiny-model:reg</c>, shared by the registry tests (each test uses its own aliases).
/// </summary>
public sealed class RegistryFixture : IAsyncLifetime
{
    public const string Name = "tiny-model:reg";

    public TestServer Server { get; private set; } = null!;

    public string First { get; private set; } = "";

    public string Second { get; private set; } = "";

    public string FirstJob { get; private set; } = "";

    public string SecondJob { get; private set; } = "";

    public async Task InitializeAsync()
    {
        Server = await TestServer.StartAsync();
        await TestModels.ImportAsync(Server, TestModels.TinyModel(Server));
        (First, FirstJob) = await TestModels.FineTuneAsync(Server, "tiny-model", steps: 4, suffix: "reg");

        // The second learns the training data hard, so that its loss on it is clearly below its base's.
        (Second, SecondJob) = await TestModels.FineTuneAsync(Server, "tiny-model", steps: 24, learningRate: 3e-2, suffix: "reg");
    }

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// <c>/api/v1/registry/models</c>: versions in order, aliases with their history (also under concurrent
/// moves), <c>name@alias</c> wherever a model is named, workspace scoping, evaluations.
/// </summary>
[Trait("Category", "Slow")]
public sealed class RegistryApiTests(RegistryFixture fixture) : IClassFixture<RegistryFixture>
{
    private static readonly string NamePath = "/api/v1/registry/models/" + Uri.EscapeDataString(RegistryFixture.Name);

    private TestServer Server => fixture.Server;

    private static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    private static async Task<(HttpStatusCode Status, JsonNode Body)> SendAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = body is null ? null : Json(body) };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text.Length == 0 ? "{}" : text)!);
    }

    private static async Task<JsonNode> OkAsync(HttpClient client, HttpMethod method, string path, object? body = null)
    {
        var (status, json) = await SendAsync(client, method, path, body);
        Assert.True(status == HttpStatusCode.OK, $"{method} {path}: {(int)status} {json}");
        return json;
    }

    private static async Task<(HttpStatusCode Status, JsonNode Body)> ChatAsync(HttpClient client, string model)
    {
        var body = new { model, messages = new[] { new { role = "user", content = "Say apple 0." } }, max_tokens = 4, temperature = 0 };
        return await SendAsync(client, HttpMethod.Post, "/v1/chat/completions", body);
    }

    [Fact]
    public async Task ImportAndFineTunes_BecomeVersionsInOrder_AndTheMistralCardsStayAsTheyWere()
    {
        using var client = Server.Client();
        var list = await OkAsync(client, HttpMethod.Get, "/api/v1/registry/models");
        var names = list["data"]!.AsArray().ToDictionary(n => n!["name"]!.GetValue<string>());
        Assert.True(names["tiny-model"]!["shared"]!.GetValue<bool>());
        Assert.Equal(1, names["tiny-model"]!["latest_version"]!.GetValue<int>());
        Assert.Equal("tiny-model", names["tiny-model"]!["latest_model_id"]!.GetValue<string>());
        Assert.False(names[RegistryFixture.Name]!["shared"]!.GetValue<bool>());
        Assert.Equal(2, names[RegistryFixture.Name]!["latest_version"]!.GetValue<int>());
        Assert.Equal(fixture.Second, names[RegistryFixture.Name]!["latest_model_id"]!.GetValue<string>());

        var versions = (await OkAsync(client, HttpMethod.Get, NamePath + "/versions"))["data"]!.AsArray();
        Assert.Equal([1, 2], versions.Select(v => v!["version"]!.GetValue<int>()));
        Assert.Equal([fixture.First, fixture.Second], versions.Select(v => v!["model_id"]!.GetValue<string>()));
        Assert.Equal([fixture.FirstJob, fixture.SecondJob], versions.Select(v => v!["job_id"]!.GetValue<string>()));
        Assert.All(versions, v => Assert.Equal("ready", v!["status"]!.GetValue<string>()));
        Assert.True(versions[0]!["created_at"]!.GetValue<long>() <= versions[1]!["created_at"]!.GetValue<long>());

        var one = await OkAsync(client, HttpMethod.Get, NamePath + "/versions/2");
        Assert.Equal(fixture.Second, one["model_id"]!.GetValue<string>());

        // The Mistral card keeps its shape: aliases there are the model's own names, still empty.
        var card = await OkAsync(client, HttpMethod.Get, "/v1/models/" + fixture.Second);
        Assert.Empty(card["aliases"]!.AsArray());
        Assert.Null(card["version"]);

        // Registration is audited as the version it became.
        var audit = await OkAsync(client, HttpMethod.Get, "/api/v1/audit?tail=1000");
        Assert.Contains(audit["data"]!.AsArray(), e => e!["type"]!.GetValue<string>() == "model_version_registered" && e["detail"]!.GetValue<string>() == $"{RegistryFixture.Name} version 2");
    }

    [Fact]
    public async Task Alias_SetMovedAndRemoved_KeepsEveryMoveInItsHistory_AndIsAudited()
    {
        using var client = Server.Client();
        var set = await OkAsync(client, HttpMethod.Put, NamePath + "/aliases/staging", new { version = 1, reason = "first cut" });
        Assert.True(set["changed"]!.GetValue<bool>());
        Assert.Null(set["move"]!["from_version"]);
        var again = await OkAsync(client, HttpMethod.Put, NamePath + "/aliases/staging", new { version = 1 });
        Assert.False(again["changed"]!.GetValue<bool>());
        await OkAsync(client, HttpMethod.Put, NamePath + "/aliases/staging", new { version = 2, reason = "better loss" });

        var name = await OkAsync(client, HttpMethod.Get, NamePath);
        Assert.Contains(name["aliases"]!.AsArray(), a => a!["alias"]!.GetValue<string>() == "staging" && a["version"]!.GetValue<int>() == 2);
        var versions = (await OkAsync(client, HttpMethod.Get, NamePath + "/versions"))["data"]!.AsArray();
        Assert.Contains("staging", versions[1]!["aliases"]!.AsArray().Select(a => a!.GetValue<string>()));

        await OkAsync(client, HttpMethod.Delete, NamePath + "/aliases/staging?reason=retired");
        var (gone, _) = await SendAsync(client, HttpMethod.Delete, NamePath + "/aliases/staging");
        Assert.Equal(HttpStatusCode.NotFound, gone);

        var history = (await OkAsync(client, HttpMethod.Get, NamePath + "/aliases/staging/history"))["data"]!.AsArray();
        Assert.Equal(3, history.Count);
        Assert.Equal([1L, 2L, 3L], history.Select(m => m!["seq"]!.GetValue<long>()));
        Assert.Equal(new int?[] { null, 1, 2 }, history.Select(m => m!["from_version"]?.GetValue<int>()));
        Assert.Equal(new int?[] { 1, 2, null }, history.Select(m => m!["to_version"]?.GetValue<int>()));
        Assert.Equal(["first cut", "better loss", "retired"], history.Select(m => m!["reason"]!.GetValue<string>()));
        Assert.All(history, m => Assert.StartsWith("key:", m!["actor"]!.GetValue<string>()));
        Assert.All(history, m => Assert.False(string.IsNullOrEmpty(m!["workspace_id"]!.GetValue<string>())));

        var audit = (await OkAsync(client, HttpMethod.Get, "/api/v1/audit?tail=1000"))["data"]!.AsArray();
        var moves = audit.Where(e => e!["detail"]?.GetValue<string>().StartsWith(RegistryFixture.Name + "@staging:", StringComparison.Ordinal) == true).ToList();
        Assert.Equal(["model_alias_moved", "model_alias_moved", "model_alias_removed"], moves.Select(e => e!["type"]!.GetValue<string>()));
        Assert.Equal(fixture.Second, moves[1]!["artifact_id"]!.GetValue<string>());
        Assert.True((await OkAsync(client, HttpMethod.Get, "/api/v1/audit/verify"))["valid"]!.GetValue<bool>());
    }

    [Fact]
    public async Task ConcurrentAliasMoves_AreOrdered_EachChangeIsRecorded_AndTheHistoryIsOneChain()
    {
        using var client = Server.Client();
        const int Moves = 12;
        var responses = await Task.WhenAll(Enumerable.Range(0, Moves).Select(i =>
            OkAsync(client, HttpMethod.Put, NamePath + "/aliases/canary", new { version = 1 + (i % 2), reason = $"move {i}" })));

        var history = (await OkAsync(client, HttpMethod.Get, NamePath + "/aliases/canary/history"))["data"]!.AsArray();
        var changed = responses.Where(r => r["changed"]!.GetValue<bool>()).ToList();

        // Both targets were asked for at once: the first move wins its step, and every move that
        // changed the alias is in the history exactly once, in a chain with no gap.
        Assert.True(changed.Count >= 2, string.Join("\n", responses.Select(r => r.ToJsonString())));
        Assert.Equal(changed.Count, history.Count);
        Assert.Equal(Enumerable.Range(1, history.Count).Select(i => (long)i), history.Select(m => m!["seq"]!.GetValue<long>()));
        Assert.Null(history[0]!["from_version"]);
        for (var i = 1; i < history.Count; i++)
        {
            Assert.Equal(history[i - 1]!["to_version"]!.GetValue<int>(), history[i]!["from_version"]!.GetValue<int>());
            Assert.NotEqual(history[i]!["from_version"]!.GetValue<int>(), history[i]!["to_version"]!.GetValue<int>());
        }

        Assert.Equal(
            changed.Select(r => r["move"]!["seq"]!.GetValue<long>()).Order(),
            history.Select(m => m!["seq"]!.GetValue<long>()));
        var name = await OkAsync(client, HttpMethod.Get, NamePath);
        var current = name["aliases"]!.AsArray().Single(a => a!["alias"]!.GetValue<string>() == "canary")!["version"]!.GetValue<int>();
        Assert.Equal(history[^1]!["to_version"]!.GetValue<int>(), current);
    }

    [Fact]
    public async Task NameAtAlias_ResolvesInChat_AndMovingTheAliasChangesWhichModelAnswers()
    {
        using var client = Server.Client();
        await OkAsync(client, HttpMethod.Put, NamePath + "/aliases/production", new { version = 1, reason = "launch" });
        var (status, first) = await ChatAsync(client, RegistryFixture.Name + "@production");
        Assert.True(status == HttpStatusCode.OK, first.ToJsonString());
        Assert.Equal(fixture.First, first["model"]!.GetValue<string>());
        Assert.False(string.IsNullOrEmpty(first["choices"]![0]!["message"]!["content"]!.GetValue<string>()));

        await OkAsync(client, HttpMethod.Put, NamePath + "/aliases/production", new { version = 2, reason = "promote" });
        var (_, second) = await ChatAsync(client, RegistryFixture.Name + "@production");
        Assert.Equal(fixture.Second, second["model"]!.GetValue<string>());

        // Embeddings resolve through the same router.
        var (embedStatus, embeddings) = await SendAsync(client, HttpMethod.Post, "/v1/embeddings", new { model = RegistryFixture.Name + "@production", input = new[] { "apple" } });
        Assert.True(embedStatus == HttpStatusCode.OK, embeddings.ToJsonString());
        Assert.Equal(fixture.Second, embeddings["model"]!.GetValue<string>());

        // A version number names a version directly, and a model card resolves the same way.
        var (_, byNumber) = await ChatAsync(client, RegistryFixture.Name + "@1");
        Assert.Equal(fixture.First, byNumber["model"]!.GetValue<string>());
        var card = await OkAsync(client, HttpMethod.Get, "/v1/models/" + Uri.EscapeDataString(RegistryFixture.Name + "@production"));
        Assert.Equal(fixture.Second, card["id"]!.GetValue<string>());
        var detail = await OkAsync(client, HttpMethod.Get, "/api/v1/models/" + Uri.EscapeDataString(RegistryFixture.Name + "@production"));
        Assert.Equal(fixture.Second, detail["id"]!.GetValue<string>());
    }

    [Fact]
    public async Task NameAtAlias_ResolvesWhenAJobIsCreated_AndTheJobRecordsTheModelItResolvedTo()
    {
        using var client = Server.Client();
        await OkAsync(client, HttpMethod.Put, "/api/v1/registry/models/tiny-model/aliases/trainable", new { version = 1, reason = "the base to fine-tune" });
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines(8));
        var (status, job) = await SendAsync(client, HttpMethod.Post, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-model@trainable",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 1, seq_len = 64 },
            auto_start = false,
        });
        Assert.True(status == HttpStatusCode.OK, job.ToJsonString());
        Assert.Equal("tiny-model", job["model"]!.GetValue<string>());
        await SendAsync(client, HttpMethod.Post, $"/v1/fine_tuning/jobs/{job["id"]}/cancel");

        var (unknown, body) = await SendAsync(client, HttpMethod.Post, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-model@nosuchalias",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 1, seq_len = 64 },
        });
        Assert.True(unknown == HttpStatusCode.NotFound, body.ToJsonString());
    }

    [Fact]
    public async Task UnknownAliasOrVersion_Is404_AndABadAliasNameIs422WithItsField()
    {
        using var client = Server.Client();
        var (chat, _) = await ChatAsync(client, RegistryFixture.Name + "@nosuchalias");
        Assert.Equal(HttpStatusCode.NotFound, chat);
        var (version, _) = await ChatAsync(client, RegistryFixture.Name + "@99");
        Assert.Equal(HttpStatusCode.NotFound, version);
        var (unknownName, _) = await SendAsync(client, HttpMethod.Get, "/api/v1/registry/models/no-such-model/versions");
        Assert.Equal(HttpStatusCode.NotFound, unknownName);
        var (noVersion, _) = await SendAsync(client, HttpMethod.Put, NamePath + "/aliases/later", new { version = 99 });
        Assert.Equal(HttpStatusCode.NotFound, noVersion);

        foreach (var bad in new[] { "Production", "3", "a@b", "-x", new string('a', 65) })
        {
            var (status, body) = await SendAsync(client, HttpMethod.Put, NamePath + "/aliases/" + Uri.EscapeDataString(bad), new { version = 1 });
            Assert.True(status == HttpStatusCode.UnprocessableEntity, $"{bad}: {(int)status} {body}");
            Assert.Contains("alias", body.ToJsonString(), StringComparison.Ordinal);
        }

        var (noBody, missing) = await SendAsync(client, HttpMethod.Put, NamePath + "/aliases/later", new { reason = "no version" });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, noBody);
        Assert.Contains("version", missing.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnotherWorkspace_SeesNoneOfTheNames_AndOnlyTheOperatorAliasesABaseModel()
    {
        using var operatorClient = Server.Client();
        await OkAsync(operatorClient, HttpMethod.Put, NamePath + "/aliases/private", new { version = 1 });
        var key = await Server.CreateKeyAsync("registry-other", "admin");
        using var other = Server.Client(key);

        var list = await OkAsync(other, HttpMethod.Get, "/api/v1/registry/models");
        Assert.Equal(["tiny-model"], list["data"]!.AsArray().Select(n => n!["name"]!.GetValue<string>()));
        foreach (var path in new[] { NamePath, NamePath + "/versions", NamePath + "/versions/1", NamePath + "/aliases/private/history", NamePath + "/versions/1/evaluations" })
        {
            var (status, body) = await SendAsync(other, HttpMethod.Get, path);
            Assert.True(status == HttpStatusCode.NotFound, $"{path}: {(int)status} {body}");
        }

        var (put, _) = await SendAsync(other, HttpMethod.Put, NamePath + "/aliases/private", new { version = 2 });
        Assert.Equal(HttpStatusCode.NotFound, put);
        var (chat, _) = await ChatAsync(other, RegistryFixture.Name + "@private");
        Assert.Equal(HttpStatusCode.NotFound, chat);
        var (chatByNumber, _) = await ChatAsync(other, RegistryFixture.Name + "@1");
        Assert.Equal(HttpStatusCode.NotFound, chatByNumber);

        // A base model's name is shared: an admin of a workspace may not move its aliases, the operator may.
        var (baseAlias, refused) = await SendAsync(other, HttpMethod.Put, "/api/v1/registry/models/tiny-model/aliases/stable", new { version = 1 });
        Assert.True(baseAlias == HttpStatusCode.Forbidden, refused.ToJsonString());
        await OkAsync(operatorClient, HttpMethod.Put, "/api/v1/registry/models/tiny-model/aliases/stable", new { version = 1 });
        var (chatBase, answered) = await ChatAsync(other, "tiny-model@stable");
        Assert.True(chatBase == HttpStatusCode.OK, answered.ToJsonString());
        Assert.Equal("tiny-model", answered["model"]!.GetValue<string>());
    }

    [Fact]
    public async Task Evaluation_OfAMemorisingFineTune_OnItsTrainingData_HasLowerLossThanItsBase_AndIsStoredWithTheVersion()
    {
        using var client = Server.Client();
        var file = await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines());
        var (status, evaluation) = await SendAsync(client, HttpMethod.Post, NamePath + "/versions/2/evaluations", new { file_id = file, seq_len = 64 });
        Assert.True(status == HttpStatusCode.Created, evaluation.ToJsonString());
        var result = evaluation["result"]!;
        Assert.Equal(fixture.Second, result["model"]!["model_id"]!.GetValue<string>());
        Assert.Equal("tiny-model", result["base"]!["model_id"]!.GetValue<string>());
        var loss = result["model"]!["loss"]!.GetValue<double>();
        var baseLoss = result["base"]!["loss"]!.GetValue<double>();
        Assert.True(double.IsFinite(loss) && loss > 0, result.ToJsonString());
        Assert.True(loss < baseLoss, result.ToJsonString());
        var accuracy = result["model"]!["token_accuracy"]!.GetValue<double>();
        Assert.InRange(accuracy, 0, 1);
        Assert.True(accuracy >= result["base"]!["token_accuracy"]!.GetValue<double>(), result.ToJsonString());
        Assert.True(result["windows"]!.GetValue<int>() > 0);

        // The base model's own version measures the base: the same numbers on both sides.
        var (_, ofBase) = await SendAsync(client, HttpMethod.Post, "/api/v1/registry/models/tiny-model/versions/1/evaluations", new { file_id = file, seq_len = 64 });
        Assert.Equal(baseLoss, ofBase["result"]!["model"]!["loss"]!.GetValue<double>(), 6);

        var stored = (await OkAsync(client, HttpMethod.Get, NamePath + "/versions/2/evaluations"))["data"]!.AsArray();
        var mine = Assert.Single(stored, e => e!["id"]!.GetValue<string>() == evaluation["id"]!.GetValue<string>());
        Assert.Equal(loss, mine!["result"]!["model"]!["loss"]!.GetValue<double>());
        Assert.Equal(file, mine["file_id"]!.GetValue<string>());

        var (missing, body) = await SendAsync(client, HttpMethod.Post, NamePath + "/versions/2/evaluations", new { });
        Assert.True(missing == HttpStatusCode.UnprocessableEntity, body.ToJsonString());
        Assert.Contains("file_id", body.ToJsonString(), StringComparison.Ordinal);
        var (noFile, _) = await SendAsync(client, HttpMethod.Post, NamePath + "/versions/2/evaluations", new { file_id = "file-nope" });
        Assert.Equal(HttpStatusCode.NotFound, noFile);
    }

    [Fact]
    public async Task RegisteredModelName_GroupsAFineTuneUnderTheGivenName_AndABaseModelsNameIsRefused()
    {
        using var client = Server.Client();
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines(8));
        var (status, body) = await SendAsync(client, HttpMethod.Post, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-model",
            training_files = new[] { new { file_id = train, weight = 1 } },
            registered_model_name = "tiny-model",
            hyperparameters = new { training_steps = 1, seq_len = 64 },
            auto_start = false,
        });
        Assert.True(status == HttpStatusCode.UnprocessableEntity, body.ToJsonString());
        Assert.Contains("registered_model_name", body.ToJsonString(), StringComparison.Ordinal);
        var (badName, bad) = await SendAsync(client, HttpMethod.Post, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-model",
            training_files = new[] { new { file_id = train, weight = 1 } },
            registered_model_name = "support@bot",
            hyperparameters = new { training_steps = 1, seq_len = 64 },
            auto_start = false,
        });
        Assert.True(badName == HttpStatusCode.UnprocessableEntity, bad.ToJsonString());

        var (model, job) = await TestModels.FineTuneAsync(Server, "tiny-model", steps: 1, registeredModelName: "support-bot");
        var versions = (await OkAsync(client, HttpMethod.Get, "/api/v1/registry/models/support-bot/versions"))["data"]!.AsArray();
        var only = Assert.Single(versions);
        Assert.Equal(model, only!["model_id"]!.GetValue<string>());
        Assert.Equal(job, only["job_id"]!.GetValue<string>());
    }
}
