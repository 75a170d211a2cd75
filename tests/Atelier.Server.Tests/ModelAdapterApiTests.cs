using System.Net;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;
using Atelier.Registry;
using Atelier.Storage.Placement;

namespace Atelier.Server.Tests;

/// <summary><c>GET /api/v1/models/{id}/adapter</c> and <c>/files/{name}</c>: a model's bytes as artifacts, over real HTTP.</summary>
[Trait("Category", "Slow")]
public sealed class ModelAdapterApiTests
{
    private static string Adapter(string modelId) => $"/api/v1/models/{Uri.EscapeDataString(modelId)}/adapter";

    private static string ModelFile(string modelId, string name) => $"/api/v1/models/{Uri.EscapeDataString(modelId)}/files/{name}";

    private static string StoredAdapter(TestServer server, string jobId) =>
        Path.Combine(server.DataDirectory, "blobs", "local", "objects", "job", jobId, "adapter", "lora.safetensors");

    [Fact]
    public async Task AdapterOfAnFp32Job_DownloadsAsBf16RoundedToNearestEven_WithLengthAndSha256_AndOnlyToItsWorkspace()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-f32", SafeTensorDType.F32));
        var (model, jobId) = await TestModels.FineTuneAsync(server, "tiny-f32");
        var stored = StoredAdapter(server, jobId);
        using (var file = SafeTensorsFile.Open(stored))
        {
            Assert.All(file.Tensors.Values, t => Assert.Equal(SafeTensorDType.F32, t.DType));
        }

        using var response = await client.GetAsync(Adapter(model), HttpCompletionOption.ResponseHeadersRead);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, System.Text.Encoding.UTF8.GetString(bytes));
        Assert.Equal(bytes.Length, response.Content.Headers.ContentLength);
        Assert.Equal("application/octet-stream", response.Content.Headers.ContentType!.MediaType);
        Assert.Equal("lora.safetensors", response.Content.Headers.ContentDisposition!.FileName);
        var sha = Convert.ToHexStringLower(SHA256.HashData(bytes));
        Assert.Equal($"\"{sha}\"", response.Headers.ETag!.Tag);
        Assert.Equal(sha, response.Headers.GetValues("X-Content-Sha256").Single());

        // bf16 throughout, mistral-finetune's names, each value the stored float32 rounded to nearest even.
        var downloaded = Path.Combine(TempDirectory.Create("atelier-adapter-dl"), "lora.safetensors");
        await File.WriteAllBytesAsync(downloaded, bytes);
        using (var bf16 = SafeTensorsFile.Open(downloaded))
        using (var fp32 = SafeTensorsFile.Open(stored))
        {
            Assert.Equal(fp32.Tensors.Keys.Order(StringComparer.Ordinal), bf16.Tensors.Keys.Order(StringComparer.Ordinal));
            Assert.Contains("layers.0.attention.wq.lora_A.weight", bf16.Tensors.Keys);
            Assert.Contains("layers.1.feed_forward.w2.lora_B.weight", bf16.Tensors.Keys);
            Assert.Equal(fp32.Header.Metadata[LoraAdapter.ScalingKey], bf16.Header.Metadata[LoraAdapter.ScalingKey]);
            var changed = 0;
            foreach (var (name, info) in bf16.Tensors)
            {
                Assert.Equal(SafeTensorDType.BF16, info.DType);
                Assert.Equal(fp32.Get(name).Shape, info.Shape);
                using var wide = fp32.ReadFloat32(name);
                using var narrow = bf16.ReadFloat32(name);
                var w = wide.Span;
                var n = narrow.Span;
                for (var i = 0; i < w.Length; i++)
                {
                    Assert.Equal(SafeTensorDTypes.FromBFloat16(SafeTensorDTypes.ToBFloat16(w[i])), n[i]);
                    changed += w[i] != n[i] ? 1 : 0;
                }
            }

            Assert.True(changed > 0, "the stored adapter should hold values that bf16 cannot represent exactly");
        }

        // The same bytes again are not modified: 304 on the ETag.
        using (var conditional = new HttpRequestMessage(HttpMethod.Get, Adapter(model)))
        {
            conditional.Headers.IfNoneMatch.Add(new System.Net.Http.Headers.EntityTagHeaderValue($"\"{sha}\""));
            using var notModified = await client.SendAsync(conditional);
            Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
        }

        // The stored file itself, at training precision, for a merge that should not lose it.
        using (var raw = await client.GetAsync(ModelFile(model, "lora.safetensors")))
        {
            Assert.Equal(HttpStatusCode.OK, raw.StatusCode);
            Assert.Equal(await File.ReadAllBytesAsync(stored), await raw.Content.ReadAsByteArrayAsync());
        }

        // Another workspace sees neither, whatever its role, as with every other model route.
        foreach (var role in new[] { "admin", "member" })
        {
            using var stranger = server.Client(await server.CreateKeyAsync("other-team", role));
            foreach (var path in new[] { Adapter(model), ModelFile(model, "lora.safetensors") })
            {
                using var refused = await stranger.GetAsync(path);
                Assert.True(refused.StatusCode == HttpStatusCode.NotFound, $"{role}: GET {path} -> {(int)refused.StatusCode}");
            }
        }
    }

    [Fact]
    public async Task Bf16Adapter_IsSentAsStored_BaseModelIsRefusedClearly_AndBaseFilesDownloadAsImported()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var baseDir = TestModels.TinyModel(server);
        await TestModels.ImportAsync(server, baseDir);

        // An adapter placed for a model as a finished job places it (bf16, the base's dtype).
        var lora = Path.Combine(TempDirectory.Create("atelier-adapter-src"), "lora.safetensors");
        using (var tiny = MistralModel.Load(baseDir))
        {
            tiny.Adapter = LoraAdapter.Create(tiny.Args, new LoraConfig(4, 8), 3);
            tiny.SaveAdapter(lora);
        }

        var workspace = await server.Service<ApiKeyStore>().EnsureWorkspaceAsync("default");
        var jobId = Guid.NewGuid().ToString();
        var receipt = await server.Service<PlacementGuard>().PlaceFileAsync(
            new ArtifactRef("model", jobId, workspace.Id), server.Service<PolicyCatalog>().Resolve("default"), "local", "test", $"job/{jobId}/adapter/lora.safetensors", lora, CancellationToken.None);
        var model = await server.Service<ModelRegistry>().RegisterFineTunedAsync(
            new FineTunedModelRegistration
            {
                Workspace = workspace.Id,
                JobId = jobId,
                BaseModelId = "tiny-model",
                PolicyName = "default",
                Artifacts = [new ModelArtifact("lora.safetensors", receipt.LocationId, receipt.Key, receipt.Bytes, receipt.Sha256)],
            },
            CancellationToken.None);

        using (var response = await client.GetAsync(Adapter(model.Id)))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(await File.ReadAllBytesAsync(lora), await response.Content.ReadAsByteArrayAsync());
            Assert.Equal($"\"{receipt.Sha256}\"", response.Headers.ETag!.Tag);
            Assert.Equal(receipt.Bytes, response.Content.Headers.ContentLength);
        }

        // A base model has no adapter: 400 with a reason, as deleting one through /v1 is.
        using (var refused = await client.GetAsync(Adapter("tiny-model")))
        {
            var body = JsonNode.Parse(await refused.Content.ReadAsStringAsync())!;
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains("base model", body["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        }

        using (var missing = await client.GetAsync(Adapter("ft:tiny-model:00000000:none:00000000")))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }

        // A base model's files are every workspace's to download, as it is every workspace's to use.
        using var member = server.Client(await server.CreateKeyAsync("other-team"));
        foreach (var name in new[] { "params.json", "consolidated.safetensors", "tekken.json" })
        {
            using var response = await member.GetAsync(ModelFile("tiny-model", name));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var expected = await File.ReadAllBytesAsync(Path.Combine(baseDir, name));
            Assert.Equal(expected, await response.Content.ReadAsByteArrayAsync());
            Assert.Equal($"\"{Convert.ToHexStringLower(SHA256.HashData(expected))}\"", response.Headers.ETag!.Tag);
        }

        using (var unknown = await client.GetAsync(ModelFile("tiny-model", "secrets.txt")))
        {
            Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        }
    }
}
