using System.Net;
using System.Text;
using System.Text.Json;
using Atelier.Modeling.Mistral;
using Atelier.Registry;

namespace Atelier.Server.Tests;

/// <summary><c>/v1/models</c>, <c>/v1/fine_tuning/models</c> and <c>/api/v1/models</c> against a real server.</summary>
public sealed class ModelsApiTests
{
    /// <summary>Registers a fine-tuned model as a finished job would, through a registry over the server's catalog.</summary>
    internal static async Task<RegisteredModel> RegisterFineTunedAsync(TestServer server, string workspaceName, string jobId, string? suffix = null)
    {
        var registry = server.Service<ModelRegistry>();
        var workspace = await server.Service<Atelier.Catalog.ApiKeyStore>().EnsureWorkspaceAsync(workspaceName);
        return await registry.RegisterFineTunedAsync(
            new FineTunedModelRegistration
            {
                Workspace = workspace.Id,
                JobId = jobId,
                BaseModelId = "tiny-model",
                Suffix = suffix,
                PolicyName = "default",
                Artifacts = [new ModelArtifact("lora.safetensors", "local", $"job/{jobId}/lora.safetensors", 0, new string('0', 64))],
                Lineage = new ModelLineage { TrainingFileIds = ["f-1"] },
            },
            CancellationToken.None);
    }

    private static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    private static async Task<(HttpStatusCode Status, JsonElement Body)> SendAsync(HttpClient client, HttpMethod method, string path, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        using var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    private static string ModelPath(string modelId) => "/v1/models/" + Uri.EscapeDataString(modelId);

    private static string FineTuning(string modelId) => "/v1/fine_tuning/models/" + Uri.EscapeDataString(modelId);

    [Fact]
    public async Task Import_ThenListAndRetrieve_ReturnsMistralBaseCardsToEveryWorkspace()
    {
        await using var server = await TestServer.StartAsync();
        var imported = await TestModels.ImportAsync(server, TestModels.TinyModel(server, "Tiny-Model"));
        Assert.Equal("tiny-model", imported.GetProperty("id").GetString());
        Assert.Equal("default", imported.GetProperty("policy").GetString());
        Assert.Equal(3, imported.GetProperty("artifacts").GetArrayLength());

        using var other = server.Client(await server.CreateKeyAsync("other-team"));
        var (status, list) = await SendAsync(other, HttpMethod.Get, "/v1/models");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("list", list.GetProperty("object").GetString());
        var card = Assert.Single(list.GetProperty("data").EnumerateArray());
        Assert.Equal("tiny-model", card.GetProperty("id").GetString());
        Assert.Equal("model", card.GetProperty("object").GetString());
        Assert.Equal("base", card.GetProperty("type").GetString());
        Assert.Equal("atelier", card.GetProperty("owned_by").GetString());
        Assert.Equal(32768, card.GetProperty("max_context_length").GetInt32());
        Assert.True(card.GetProperty("capabilities").GetProperty("completion_chat").GetBoolean());
        Assert.True(card.GetProperty("capabilities").GetProperty("fine_tuning").GetBoolean());
        Assert.False(card.TryGetProperty("job", out _));

        (status, var one) = await SendAsync(other, HttpMethod.Get, ModelPath("tiny-model"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(card.GetRawText(), one.GetRawText());
    }

    [Fact]
    public async Task Import_OfADirectoryMissingTheWeights_Returns422NamingTheFileAndStoresNothing()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TestModels.TinyModel(server);
        File.Delete(System.IO.Path.Combine(dir, "consolidated.safetensors"));

        var error = await TestModels.ImportAsync(server, dir, expected: HttpStatusCode.UnprocessableEntity);
        Assert.Contains("consolidated.safetensors", error.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal("consolidated.safetensors", error.GetProperty("problems")[0].GetProperty("file").GetString());

        using var client = server.Client();
        var (status, _) = await SendAsync(client, HttpMethod.Get, ModelPath("tiny-model"));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Empty(await server.Locations.ListKeysAsync("local", "model/", CancellationToken.None).ToListAsync());
    }

    [Fact]
    public async Task Import_ChecksTheTokenizerAgainstVocabSize_AndAcceptsTokenizerModelV3()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TestModels.TinyModel(server);
        var paramsPath = System.IO.Path.Combine(dir, "params.json");
        var parameters = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(paramsPath))!;
        parameters["vocab_size"] = 100;
        File.WriteAllText(paramsPath, parameters.ToJsonString());

        var error = await TestModels.ImportAsync(server, dir, expected: HttpStatusCode.UnprocessableEntity);
        var problem = error.GetProperty("problems")[0];
        Assert.Equal(("tekken.json", "vocab_size"), (problem.GetProperty("file").GetString(), problem.GetProperty("field").GetString()));
        Assert.Contains($"the tokeniser has {TinyModelWriter.ByteVocabSize} tokens but params.json has vocab_size 100", error.GetProperty("detail").GetString(), StringComparison.Ordinal);

        var v3 = System.IO.Path.Combine(server.ImportRoot, "tiny-v3");
        TinyModelWriter.Write(v3, seed: 5, tokenizer: TinyTokenizer.SentencePieceV3);
        var imported = await TestModels.ImportAsync(server, v3);
        Assert.Equal("tiny-v3", imported.GetProperty("id").GetString());
    }

    [Fact]
    public async Task Import_WithBadInputs_IsRefusedClearly()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TestModels.TinyModel(server);
        var error = await TestModels.ImportAsync(server, dir, name: "../../etc", expected: HttpStatusCode.BadRequest);
        Assert.Contains("not a valid model id", error.GetProperty("detail").GetString(), StringComparison.Ordinal);
        await TestModels.ImportAsync(server, "relative/dir", expected: HttpStatusCode.BadRequest);
        await TestModels.ImportAsync(server, System.IO.Path.Combine(dir, "nope"), expected: HttpStatusCode.BadRequest);
        await TestModels.ImportAsync(server, dir, key: await server.CreateKeyAsync("other-team"), expected: HttpStatusCode.Forbidden);

        using var client = server.Client();
        var (status, body) = await SendAsync(client, HttpMethod.Post, "/api/v1/models/import", Json(new { path = dir, policy = "nowhere" }));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("nowhere", body.GetProperty("detail").GetString(), StringComparison.Ordinal);

        await TestModels.ImportAsync(server, dir);
        await TestModels.ImportAsync(server, dir, expected: HttpStatusCode.Conflict);
        Assert.Equal(3, (await server.Locations.ListKeysAsync("local", "model/", CancellationToken.None).ToListAsync()).Count);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task Import_FromOutsideTheImportRoots_IsRefusedWithOneMessageWhetherThePathExistsOrNot()
    {
        await using var server = await TestServer.StartAsync();
        Assert.Equal(Atelier.Core.IO.DataDirectoryPermissions.DirectoryMode, File.GetUnixFileMode(server.ImportRoot));
        var outside = TestModels.TinyModel();
        var link = System.IO.Path.Combine(server.ImportRoot, "linked-model");
        Directory.CreateSymbolicLink(link, outside);

        var refusals = new List<string>();
        foreach (var path in new[]
        {
            outside,                                                                            // exists, outside
            System.IO.Path.Combine(System.IO.Path.GetDirectoryName(outside)!, "no-such-model"), // missing, outside
            System.IO.Path.Combine(server.ImportRoot, "..", "blobs"),                           // `..` out of the root
            System.IO.Path.Combine(server.ImportRoot, "..", "import", "x"),                     // `..` even when it comes back
            link,                                                                               // a link out of the root
        })
        {
            var error = await TestModels.ImportAsync(server, path, expected: HttpStatusCode.Forbidden);
            refusals.Add(error.GetProperty("detail").GetString()!);
        }

        Assert.Single(refusals.Distinct());
        Assert.StartsWith("Models can be imported only from the configured import roots (models.import_roots): " + server.ImportRoot, refusals[0], StringComparison.Ordinal);
        Assert.Empty(await server.Locations.ListKeysAsync("local", "model/", CancellationToken.None).ToListAsync());

        // The same bytes under the root import.
        var inside = TestModels.TinyModel(server);
        Assert.Equal("tiny-model", (await TestModels.ImportAsync(server, inside)).GetProperty("id").GetString());
    }

    [Fact]
    public async Task Import_FromAConfiguredRoot_Works_AndTheDefaultRootIsThenNotOne()
    {
        var root = TempDirectory.Create("atelier-models-root");
        await using var server = await TestServer.StartAsync(c => c with { Models = new Atelier.Core.ModelsConfig { ImportRoots = [root] } });
        var dir = System.IO.Path.Combine(root, "tiny-model");
        TinyModelWriter.Write(dir, seed: 5);
        var imported = await TestModels.ImportAsync(server, dir);
        Assert.Equal(dir, imported.GetProperty("lineage").GetProperty("source_directory").GetString());

        var error = await TestModels.ImportAsync(server, TestModels.TinyModel(server, "other"), expected: HttpStatusCode.Forbidden);
        Assert.Contains(root, error.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task FineTunedModel_RetrieveUpdateArchiveUnarchiveDelete_BehaveAsMistral()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var model = await RegisterFineTunedAsync(server, "default", "0198c6a0-0000-7000-8000-00000000000a", "bot");
        using var client = server.Client();

        var (status, card) = await SendAsync(client, HttpMethod.Get, ModelPath(model.Id));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("fine-tuned", card.GetProperty("type").GetString());
        Assert.Equal(model.JobId, card.GetProperty("job").GetString());
        Assert.Equal("tiny-model", card.GetProperty("root").GetString());
        Assert.False(card.GetProperty("archived").GetBoolean());
        Assert.Equal("default", card.GetProperty("owned_by").GetString());
        Assert.False(card.GetProperty("capabilities").GetProperty("fine_tuning").GetBoolean());

        (status, var listed) = await SendAsync(client, HttpMethod.Get, "/v1/models");
        Assert.Equal(["tiny-model", model.Id], listed.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));

        (status, var updated) = await SendAsync(client, HttpMethod.Patch, FineTuning(model.Id), Json(new { name = "Support bot", description = "first try" }));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("completion", updated.GetProperty("model_type").GetString());
        Assert.Equal("Support bot", updated.GetProperty("name").GetString());
        Assert.Equal("first try", updated.GetProperty("description").GetString());
        Assert.Equal(model.WorkspaceId, updated.GetProperty("workspace_id").GetString());
        Assert.Equal(8, updated.GetProperty("root_version").GetString()!.Length);

        (status, var archived) = await SendAsync(client, HttpMethod.Post, FineTuning(model.Id) + "/archive");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.True(archived.GetProperty("archived").GetBoolean());
        (_, card) = await SendAsync(client, HttpMethod.Get, ModelPath(model.Id));
        Assert.True(card.GetProperty("archived").GetBoolean());
        Assert.Equal("Support bot", card.GetProperty("name").GetString());

        (status, var unarchived) = await SendAsync(client, HttpMethod.Delete, FineTuning(model.Id) + "/archive");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.False(unarchived.GetProperty("archived").GetBoolean());

        (status, var deleted) = await SendAsync(client, HttpMethod.Delete, ModelPath(model.Id));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(model.Id, deleted.GetProperty("id").GetString());
        Assert.True(deleted.GetProperty("deleted").GetBoolean());

        (status, var missing) = await SendAsync(client, HttpMethod.Get, ModelPath(model.Id));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("error", missing.GetProperty("object").GetString());
        Assert.Equal("404", missing.GetProperty("code").GetString());
    }

    [Fact]
    public async Task AnotherWorkspacesFineTunedModel_IsNotFoundForEveryOperation()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var model = await RegisterFineTunedAsync(server, "default", "job-1");
        using var other = server.Client(await server.CreateKeyAsync("other-team"));

        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(other, HttpMethod.Get, ModelPath(model.Id))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(other, HttpMethod.Delete, ModelPath(model.Id))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(other, HttpMethod.Patch, FineTuning(model.Id), Json(new { name = "x" }))).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(other, HttpMethod.Post, FineTuning(model.Id) + "/archive")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(other, HttpMethod.Delete, FineTuning(model.Id) + "/archive")).Status);
        var (_, list) = await SendAsync(other, HttpMethod.Get, "/v1/models");
        Assert.Equal(["tiny-model"], list.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()));

        using var owner = server.Client();
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(owner, HttpMethod.Get, ModelPath(model.Id))).Status);
    }

    [Fact]
    public async Task BaseModels_CannotBeDeletedArchivedOrUpdatedThroughTheMistralApi()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        using var client = server.Client();

        var (status, error) = await SendAsync(client, HttpMethod.Delete, ModelPath("tiny-model"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Equal("invalid_model_type", error.GetProperty("type").GetString());
        Assert.Contains("base model", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(client, HttpMethod.Post, FineTuning("tiny-model") + "/archive")).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await SendAsync(client, HttpMethod.Patch, FineTuning("tiny-model"), Json(new { name = "x" }))).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(client, HttpMethod.Get, ModelPath("tiny-model"))).Status);

        (status, error) = await SendAsync(client, HttpMethod.Delete, ModelPath("ft:nope:00000000:x:00000000"));
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("not_found", error.GetProperty("type").GetString());
    }

    [Fact]
    public async Task Patch_WithBadJson_Is400AndWithWrongTypes_Is422NamingTheField()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var model = await RegisterFineTunedAsync(server, "default", "job-1");
        using var client = server.Client();

        var (status, error) = await SendAsync(client, HttpMethod.Patch, FineTuning(model.Id), new StringContent("{\"name\":", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains("not valid JSON", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        (status, error) = await SendAsync(client, HttpMethod.Patch, FineTuning(model.Id), Json(new { name = 5 }));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Equal("name", error.GetProperty("problems")[0].GetProperty("field").GetString());
        Assert.Equal("value_error", error.GetProperty("detail")[0].GetProperty("type").GetString());

        (status, _) = await SendAsync(client, HttpMethod.Patch, FineTuning(model.Id), Json(new[] { 1 }));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        var (_, card) = await SendAsync(client, HttpMethod.Get, ModelPath(model.Id));
        Assert.Equal(JsonValueKind.Null, card.GetProperty("name").ValueKind);
    }

    [Fact]
    public async Task PlatformDelete_RemovesABaseModelOnlyForAdminsAndOnlyWithoutFineTunedModels()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var model = await RegisterFineTunedAsync(server, "default", "job-1");
        using var admin = server.Client();
        using var member = server.Client(await server.CreateKeyAsync("other-team"));

        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(member, HttpMethod.Delete, "/api/v1/models/tiny-model")).Status);
        Assert.Equal(HttpStatusCode.Conflict, (await SendAsync(admin, HttpMethod.Delete, "/api/v1/models/tiny-model")).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(admin, HttpMethod.Delete, ModelPath(model.Id))).Status);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(admin, HttpMethod.Delete, "/api/v1/models/tiny-model")).Status);
        Assert.Empty(await server.Locations.ListKeysAsync("local", "model/", CancellationToken.None).ToListAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(admin, HttpMethod.Get, ModelPath("tiny-model"))).Status);
    }
}

/// <summary><c>atelier models import|list|get|archive|unarchive|delete</c> as a user runs them.</summary>
[Trait("Category", "Slow")]
public sealed class ModelsCliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) =>
        Repo.RunAsync(
            "dotnet",
            [System.IO.Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. args, "--server", server.BaseUrl, "--api-key", server.AdminKey],
            server.DataDirectory,
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });

    [Fact]
    public async Task ModelsImport_OfATinyModel_RegistersItAndTheOtherCommandsSeeIt()
    {
        await using var server = await TestServer.StartAsync();
        var dir = TestModels.TinyModel(server);

        var (exit, output) = await Atelier(server, "models", "import", dir, "--name", "tiny-model", "--alias", "tiny-latest");
        Assert.True(exit == 0, output);
        Assert.Contains("Imported base model tiny-model: 3 files", output, StringComparison.Ordinal);

        var model = await ModelsApiTests.RegisterFineTunedAsync(server, "default", "job-cli");
        (exit, output) = await Atelier(server, "models", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("tiny-model", output, StringComparison.Ordinal);
        Assert.Contains("2 model(s).", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "models", "get", "tiny-latest");
        Assert.True(exit == 0, output);
        Assert.Contains("\"consolidated.safetensors\"", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "models", "archive", model.Id);
        Assert.True(exit == 0, output);
        Assert.Contains("archived true", output, StringComparison.Ordinal);
        (exit, output) = await Atelier(server, "models", "unarchive", model.Id);
        Assert.True(exit == 0, output);
        Assert.Contains("archived false", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "models", "delete", "tiny-model");
        Assert.Equal(2, exit);
        Assert.Contains("base model", output, StringComparison.Ordinal);
        (exit, output) = await Atelier(server, "models", "delete", model.Id);
        Assert.True(exit == 0, output);
        (exit, output) = await Atelier(server, "models", "delete", "tiny-model", "--base");
        Assert.True(exit == 0, output);

        var broken = TestModels.TinyModel(server, "broken");
        File.Delete(System.IO.Path.Combine(broken, "tekken.json"));
        (exit, output) = await Atelier(server, "models", "import", broken);
        Assert.Equal(2, exit);
        Assert.Contains("tekken.json or tokenizer.model", output, StringComparison.Ordinal);
    }
}
