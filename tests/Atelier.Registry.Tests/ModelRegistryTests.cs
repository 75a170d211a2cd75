using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Registry.Tests;

public sealed class ModelRegistryTests : IDisposable, IAsyncLifetime
{
    private static readonly ResidencyPolicy EuOnly = new() { Name = "eu-only", AllowedJurisdictions = ["EU"] };

    private readonly string _data = Atelier.Testing.TestCleanup.CreateDirectory("atelier-registry");

    // The one import root of the registries under test; TinyModel writes its models here.
    private readonly string _importRoot = Atelier.Testing.TestCleanup.CreateDirectory("atelier-tiny");
    private readonly CatalogDatabase _catalog;
    private readonly AuditLog _audit;
    private readonly PlacementGuard _guard;
    private readonly ModelRegistry _registry;
    private Workspace _teamA = null!;
    private Workspace _teamB = null!;

    public ModelRegistryTests()
    {
        _catalog = new CatalogDatabase(Path.Combine(_data, "catalog.db"));
        var locations = new StorageLocations(
            [
                new LocationDescriptor { Id = "paris", Uri = "blobs/paris", Country = "FR", Blocs = ["EU"], OnPrem = true },
                new LocationDescriptor { Id = "us-east", Uri = "blobs/us", Country = "US", OnPrem = false, Operator = "cloud" },
            ],
            _data);
        _audit = new AuditLog(Path.Combine(_data, "audit"), TimeProvider.System);
        _guard = new PlacementGuard(locations, _audit);
        _registry = new ModelRegistry(new SqliteModelRepository(_catalog), _guard, TimeProvider.System, Path.Combine(_data, "cache"), new ModelImportRoots([_importRoot]));
    }

    public async Task InitializeAsync()
    {
        var keys = new ApiKeyStore(new SqliteApiKeyRepository(_catalog), TimeProvider.System);
        _teamA = await keys.EnsureWorkspaceAsync("team-a");
        _teamB = await keys.EnsureWorkspaceAsync("team-b");
    }

    public Task DisposeAsync() => Task.CompletedTask;

    public void Dispose()
    {
        _audit.Dispose();
        Atelier.Testing.TestCleanup.Delete(_data);
        Atelier.Testing.TestCleanup.Delete(_importRoot);
    }

    private string TinyModel(string name = "tiny-model", TinyTokenizer tokenizer = TinyTokenizer.TekkenV7)
    {
        var dir = Path.Combine(_importRoot, Guid.NewGuid().ToString("N"), name);
        TinyModelWriter.Write(dir, seed: 3, tokenizer: tokenizer);
        return dir;
    }

    private static void SetVocabSize(string dir, int vocabSize)
    {
        var path = Path.Combine(dir, "params.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!;
        json["vocab_size"] = vocabSize;
        File.WriteAllText(path, json.ToJsonString());
    }

    private Task<RegisteredModel> ImportAsync(string dir, string? id = null, IReadOnlyList<string>? aliases = null) =>
        _registry.ImportBaseModelAsync(new BaseModelImport { SourceDirectory = dir, Id = id, Aliases = aliases ?? [] }, EuOnly, "paris", "key:admin", "default", CancellationToken.None);

    private Task<RegisteredModel> RegisterAsync(Workspace ws, string jobId, string baseId = "tiny-model", string? suffix = null) =>
        _registry.RegisterFineTunedAsync(
            new FineTunedModelRegistration
            {
                Workspace = ws.Id,
                JobId = jobId,
                BaseModelId = baseId,
                Suffix = suffix,
                PolicyName = "eu-only",
                Artifacts = [new ModelArtifact("lora.safetensors", "paris", $"job/{jobId}/lora.safetensors", 10, new string('0', 64))],
                Lineage = new ModelLineage { TrainingFileIds = ["file-1"], DatasetId = "ds-1", CheckpointId = "ck-1" },
            },
            CancellationToken.None);

    private async Task<List<string>> BlobsAsync(string prefix) => await _guard.Locations.ListKeysAsync("paris", prefix, CancellationToken.None).ToListAsync();

    [Fact]
    public async Task Import_CopiesEveryFileThroughTheGuardAndTheDirectoryLoadsAsAModel()
    {
        var dir = TinyModel("Tiny-Model");
        var model = await ImportAsync(dir);

        Assert.Equal("tiny-model", model.Id);
        Assert.Equal(ModelKind.Base, model.Kind);
        Assert.Null(model.WorkspaceId);
        Assert.Equal(["consolidated.safetensors", "tekken.json", "params.json"], model.Artifacts.Select(a => a.Name));
        Assert.All(model.Artifacts, a => Assert.Equal("model/tiny-model/" + a.Name, a.Key));
        Assert.Equal(new FileInfo(Path.Combine(dir, "consolidated.safetensors")).Length, model.Artifacts[0].Bytes);
        Assert.Equal(32768, model.MaxContextLength);
        Assert.True(model.Capabilities.FineTuning);

        var placements = _audit.Read(0, 100).Where(e => e.Type == "placement" && e.ArtifactId == "tiny-model").ToArray();
        Assert.Equal(3, placements.Length);
        Assert.All(placements, e => Assert.Equal("eu-only", e.Policy));
        Assert.Contains(_audit.Read(0, 100), e => e.Type == "model_registered" && e.ArtifactId == "tiny-model");

        var local = await _registry.LocalModelDirectoryAsync(model, CancellationToken.None);
        using var loaded = MistralModel.Load(local);
        Assert.Equal(TinyModelWriter.DefaultArgs.Dim, loaded.Args.Dim);
    }

    [Fact]
    public async Task Import_OfADirectoryMissingTheWeights_NamesTheFileAndLeavesNothing()
    {
        var dir = TinyModel();
        File.Delete(Path.Combine(dir, "consolidated.safetensors"));

        var error = await Assert.ThrowsAsync<ValidationFailedException>(() => ImportAsync(dir));
        Assert.Contains("consolidated.safetensors", error.Message, StringComparison.Ordinal);
        Assert.Contains(error.Problems, p => p.File == "consolidated.safetensors");
        Assert.Null(await _registry.FindAsync(_teamA.Id, "tiny-model", CancellationToken.None));
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task Import_OfAMistralV03StyleTokenizerModelV3_IsAcceptedAsV3WithTheModelVocabularyPadded()
    {
        // 267 SentencePiece pieces under a vocab_size of 276: a model may have more rows than its tokeniser has ids.
        var dir = TinyModel(tokenizer: TinyTokenizer.SentencePieceV3);

        var model = await ImportAsync(dir);

        Assert.Equal(["consolidated.safetensors", "tokenizer.model.v3", "params.json"], model.Artifacts.Select(a => a.Name));
        var tokenizer = MistralModelTokenizer.Load(await _registry.LocalModelDirectoryAsync(model, CancellationToken.None));
        Assert.Equal(MistralTokenizerVersion.V3, tokenizer.Version);
        Assert.Equal(3 + 7 + 256 + 1, tokenizer.File.VocabularySize);
        Assert.Equal(3, tokenizer.Control.Inst);
    }

    [Fact]
    public void TinyModel_TekkenIsV7_SoItsSystemPromptsRenderAsSystemPromptTokens()
    {
        var tokenizer = MistralModelTokenizer.Load(TinyModel());

        Assert.Equal(MistralTokenizerVersion.V7, tokenizer.Version);
        Assert.Equal(TinyModelWriter.SpecialTokens.ToList().IndexOf("[SYSTEM_PROMPT]"), tokenizer.Control.SystemPrompt);
        Assert.Equal(TinyModelWriter.ByteVocabSize, tokenizer.File.VocabularySize);
    }

    [Fact]
    public async Task Import_WithATokenizerLargerThanTheModelVocabulary_IsRefusedNamingBothSizesAndFiles()
    {
        var dir = TinyModel();
        SetVocabSize(dir, 200);

        var error = await Assert.ThrowsAsync<ValidationFailedException>(() => ImportAsync(dir));

        var problem = Assert.Single(error.Problems);
        Assert.Equal(("tekken.json", "vocab_size"), (problem.File, problem.Field));
        Assert.Contains($"the tokeniser has {TinyModelWriter.ByteVocabSize} tokens but params.json has vocab_size 200", problem.Message, StringComparison.Ordinal);
        Assert.Contains("tekken.json vocab_size", error.Message, StringComparison.Ordinal);
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task Import_WithAnUnknownOrUnsupportedTokenizer_IsRefused()
    {
        var dir = TinyModel();
        File.Move(Path.Combine(dir, "tekken.json"), Path.Combine(dir, "tokenizer.json"));

        var missing = await Assert.ThrowsAsync<ValidationFailedException>(() => ImportAsync(dir));
        Assert.Contains("tekken.json or tokenizer.model", missing.Message, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(dir, "tekken.json"), File.ReadAllText(Path.Combine(dir, "tokenizer.json")).Replace("\"version\":\"v7\"", "\"version\":\"v15\"", StringComparison.Ordinal));
        var unsupported = await Assert.ThrowsAsync<ValidationFailedException>(() => ImportAsync(dir));
        Assert.Contains("v15 is not supported", Assert.Single(unsupported.Problems).Message, StringComparison.Ordinal);
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task Import_OfTruncatedWeights_IsRefusedBeforeAnythingIsCopied()
    {
        var dir = TinyModel();
        var weights = Path.Combine(dir, "consolidated.safetensors");
        var bytes = await File.ReadAllBytesAsync(weights);
        await File.WriteAllBytesAsync(weights, bytes[..(bytes.Length / 2)]);

        var error = await Assert.ThrowsAsync<ValidationFailedException>(() => ImportAsync(dir));
        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task Import_RefusedByPolicy_LeavesNoModelAndNoBytes()
    {
        var dir = TinyModel();
        await Assert.ThrowsAsync<PlacementRefusedException>(() =>
            _registry.ImportBaseModelAsync(new BaseModelImport { SourceDirectory = dir }, EuOnly, "us-east", "key:admin", "default", CancellationToken.None));
        Assert.Null(await _registry.FindBaseAsync("tiny-model", CancellationToken.None));
        Assert.Empty(await _guard.Locations.ListKeysAsync("us-east", "model/", CancellationToken.None).ToListAsync());
        Assert.Contains(_audit.Read(0, 100), e => e.Type == "placement_refused" && e.ArtifactId == "tiny-model");
    }

    [Theory]
    [InlineData("Upper")]
    [InlineData("../escape")]
    [InlineData("a/b")]
    [InlineData(".hidden")]
    [InlineData("ft:x")]
    public async Task Import_WithAnInvalidId_IsRefused(string id)
    {
        var error = await Assert.ThrowsAsync<BadRequestException>(() => ImportAsync(TinyModel(), id));
        Assert.Equal("invalid_model_id", error.Code);
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task Import_OfAnExistingIdOrAlias_IsAConflict()
    {
        await ImportAsync(TinyModel(), aliases: ["tiny-latest"]);
        await Assert.ThrowsAsync<ConflictException>(() => ImportAsync(TinyModel()));
        await Assert.ThrowsAsync<ConflictException>(() => ImportAsync(TinyModel(), "tiny-latest"));
        Assert.Equal("tiny-model", (await _registry.FindAsync(_teamB.Id, "tiny-latest", CancellationToken.None))!.Id);
    }

    [Fact]
    public async Task RemoveOrphanedBlobs_DeletesBytesOfAnImportThatNeverRegistered()
    {
        var model = await ImportAsync(TinyModel());
        await using (var write = await _guard.BeginWriteAsync(new ArtifactRef("model", "crashed", "default"), EuOnly, "paris", "test", key: "model/crashed/params.json"))
        {
            await write.WriteAsync(new byte[] { 1, 2, 3 }, CancellationToken.None);
            await write.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(1, await _registry.RemoveOrphanedBlobsAsync("system:recovery", CancellationToken.None));
        Assert.Empty(await BlobsAsync("model/crashed/"));
        Assert.Equal(model.Artifacts.Count, (await BlobsAsync("model/tiny-model/")).Count);
    }

    [Fact]
    public async Task RegisterFineTuned_FollowsMistralsIdShapeInheritsFromTheBaseAndIsIdempotent()
    {
        var root = await ImportAsync(TinyModel());
        var jobId = "0198c6a0-0000-7000-8000-000000000001";
        var model = await RegisterAsync(_teamA, jobId, suffix: "my-bot");

        var parts = model.Id.Split(':');
        Assert.Equal(5, parts.Length);
        Assert.Equal(["ft", "tiny-model"], parts[..2]);
        Assert.Matches("^[0-9a-f]{8}$", parts[2]);
        Assert.Equal("my-bot", parts[3]);
        Assert.Matches("^[0-9a-f]{8}$", parts[4]);
        Assert.Equal(ModelKind.FineTuned, model.Kind);
        Assert.Equal(_teamA.Id, model.WorkspaceId);
        Assert.Equal("team-a", model.OwnedBy);
        Assert.Equal("tiny-model", model.Root);
        Assert.Equal(jobId, model.JobId);
        Assert.Equal(root.MaxContextLength, model.MaxContextLength);
        Assert.True(model.Capabilities.CompletionChat);
        Assert.False(model.Capabilities.FineTuning);
        Assert.Equal(root.Artifacts.Single(a => a.Name == "consolidated.safetensors").Sha256, model.Lineage.RootVersion);
        Assert.Equal("ds-1", model.Lineage.DatasetId);

        var again = await RegisterAsync(_teamA, jobId, suffix: "my-bot");
        Assert.Equal(model.Id, again.Id);

        var other = await RegisterAsync(_teamA, "0198c6a0-0000-7000-8000-000000000002");
        Assert.NotEqual(model.Id, other.Id);
        Assert.Matches("^ft:tiny-model:[0-9a-f]{8}:[0-9]{8}:[0-9a-f]{8}$", other.Id);
    }

    [Fact]
    public async Task RegisterFineTuned_OfAnUnknownBaseOrWithABadSuffix_IsRefused()
    {
        await Assert.ThrowsAsync<NotFoundException>(() => RegisterAsync(_teamA, "job-1", baseId: "nope"));
        await ImportAsync(TinyModel());
        await Assert.ThrowsAsync<BadRequestException>(() => RegisterAsync(_teamA, "job-1", suffix: "has space"));
        await Assert.ThrowsAsync<BadRequestException>(() => RegisterAsync(_teamA, "job-1", suffix: new string('a', 19)));
    }

    [Fact]
    public async Task Find_SeesBaseModelsEverywhereAndFineTunedModelsOnlyInTheirWorkspace()
    {
        await ImportAsync(TinyModel());
        var model = await RegisterAsync(_teamA, "job-1");

        Assert.NotNull(await _registry.FindAsync(_teamA.Id, model.Id, CancellationToken.None));
        Assert.Null(await _registry.FindAsync(_teamB.Id, model.Id, CancellationToken.None));
        Assert.NotNull(await _registry.FindAsync(_teamB.Id, "tiny-model", CancellationToken.None));
        Assert.Null(await _registry.FindAsync(_teamA.Id, "unknown", CancellationToken.None));

        Assert.Equal(["tiny-model", model.Id], (await _registry.ListAsync(_teamA.Id, CancellationToken.None)).Select(m => m.Id));
        Assert.Equal(["tiny-model"], (await _registry.ListAsync(_teamB.Id, CancellationToken.None)).Select(m => m.Id));

        await Assert.ThrowsAsync<NotFoundException>(() => _registry.SetArchivedAsync(_teamB.Id, model.Id, true, CancellationToken.None));
        await Assert.ThrowsAsync<NotFoundException>(() => _registry.DeleteFineTunedAsync(_teamB.Id, model.Id, "key:b", CancellationToken.None));
    }

    [Fact]
    public async Task ArchiveUnarchiveAndUpdate_ApplyToFineTunedModelsOnly()
    {
        await ImportAsync(TinyModel());
        var model = await RegisterAsync(_teamA, "job-1");

        Assert.True((await _registry.SetArchivedAsync(_teamA.Id, model.Id, true, CancellationToken.None)).Archived);
        Assert.True((await _registry.FindAsync(_teamA.Id, model.Id, CancellationToken.None))!.Archived);
        Assert.True((await _registry.SetArchivedAsync(_teamA.Id, model.Id, true, CancellationToken.None)).Archived);
        Assert.False((await _registry.SetArchivedAsync(_teamA.Id, model.Id, false, CancellationToken.None)).Archived);
        Assert.False((await _registry.FindAsync(_teamA.Id, model.Id, CancellationToken.None))!.Archived);

        await _registry.UpdateAsync(_teamA.Id, model.Id, "Support bot", true, "v1", true, CancellationToken.None);
        await _registry.UpdateAsync(_teamA.Id, model.Id, null, false, null, true, CancellationToken.None);
        var updated = await _registry.FindAsync(_teamA.Id, model.Id, CancellationToken.None);
        Assert.Equal("Support bot", updated!.Name);
        Assert.Null(updated.Description);

        var error = await Assert.ThrowsAsync<BadRequestException>(() => _registry.SetArchivedAsync(_teamA.Id, "tiny-model", true, CancellationToken.None));
        Assert.Contains("base model", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<BadRequestException>(() => _registry.UpdateAsync(_teamA.Id, "tiny-model", "x", true, null, false, CancellationToken.None));
    }

    [Fact]
    public async Task DeleteFineTuned_RemovesTheRowAndTheAdapterBytesButRefusesBaseModels()
    {
        await ImportAsync(TinyModel());
        var jobId = "job-1";
        await using (var write = await _guard.BeginWriteAsync(new ArtifactRef("job", jobId, "team-a"), EuOnly, "paris", "test", key: $"job/{jobId}/lora.safetensors"))
        {
            await write.WriteAsync(new byte[10], CancellationToken.None);
            await write.CommitAsync(CancellationToken.None);
        }

        var model = await RegisterAsync(_teamA, jobId);
        await Assert.ThrowsAsync<BadRequestException>(() => _registry.DeleteFineTunedAsync(_teamA.Id, "tiny-model", "key:a", CancellationToken.None));
        var conflict = await Assert.ThrowsAsync<ConflictException>(() => _registry.DeleteBaseAsync("tiny-model", "key:admin", "default", CancellationToken.None));
        Assert.Equal([new DerivedArtifact(DerivedArtifact.Model, model.Id)], conflict.Derived);
        Assert.NotNull(await _registry.FindBaseAsync("tiny-model", CancellationToken.None));

        await _registry.DeleteFineTunedAsync(_teamA.Id, model.Id, "key:a", CancellationToken.None);
        Assert.Null(await _registry.FindAsync(_teamA.Id, model.Id, CancellationToken.None));
        Assert.Empty(await BlobsAsync($"job/{jobId}/"));
        Assert.Contains(_audit.Read(0, 1000), e => e.Type == "deletion" && e.ArtifactId == model.Id);
        await Assert.ThrowsAsync<NotFoundException>(() => _registry.DeleteFineTunedAsync(_teamA.Id, model.Id, "key:a", CancellationToken.None));

        await _registry.DeleteBaseAsync("tiny-model", "key:admin", "default", CancellationToken.None);
        Assert.Null(await _registry.FindBaseAsync("tiny-model", CancellationToken.None));
        Assert.Empty(await BlobsAsync("model/"));
    }

    [Fact]
    public async Task ModelDirectoryAsync_WhenBlobsAreNotLocalFiles_MaterialisesALoadableCopy()
    {
        // A store whose reads are not FileStreams, as an S3-compatible one would be.
        var store = new StreamOnlyStore(new Storage.Blobs.LocalDirectoryBlobStore("remote", Path.Combine(_data, "remote")));
        var locations = new StorageLocations([(new LocationDescriptor { Id = "remote", Uri = "remote", Country = "FR", Blocs = ["EU"], OnPrem = true }, (Storage.Blobs.IBlobStore)store)]);
        var registry = new ModelRegistry(new SqliteModelRepository(_catalog), new PlacementGuard(locations, _audit), TimeProvider.System, Path.Combine(_data, "cache"), new ModelImportRoots([_importRoot]));
        var model = await registry.ImportBaseModelAsync(new BaseModelImport { SourceDirectory = TinyModel() }, EuOnly, "remote", "key:admin", "default", CancellationToken.None);

        await Assert.ThrowsAsync<NotSupportedException>(async () => await registry.LocalModelDirectoryAsync(model, CancellationToken.None));
        var local = await registry.ModelDirectoryAsync(model, CancellationToken.None);
        Assert.StartsWith(Path.Combine(_data, "cache"), local, StringComparison.Ordinal);
        using (var loaded = MistralModel.Load(local))
        {
            Assert.Equal(TinyModelWriter.DefaultArgs.NLayers, loaded.Args.NLayers);
        }

        Assert.Equal(local, await registry.ModelDirectoryAsync(model, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(async () => await registry.LocalModelDirectoryAsync(model with { Kind = ModelKind.FineTuned }, CancellationToken.None));
    }

    private sealed class StreamOnlyStore(Storage.Blobs.IBlobStore inner) : Storage.Blobs.IBlobStore
    {
        public string LocationId => inner.LocationId;

        public ValueTask<Storage.Blobs.PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken) => inner.BeginWriteAsync(key, cancellationToken);

        public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) => inner.DeleteAsync(key, cancellationToken);

        public async ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken) =>
            await inner.OpenReadAsync(key, cancellationToken) is { } file ? new BufferedStream(file) : null;

        public async ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken) =>
            await inner.OpenReadRangeAsync(key, offset, length, cancellationToken) is { } file ? new BufferedStream(file) : null;

        public ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken) => inner.GetLengthAsync(key, cancellationToken);

        public IAsyncEnumerable<string> ListAsync(string prefix, CancellationToken cancellationToken) => inner.ListAsync(prefix, cancellationToken);

        public ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken) => inner.RemoveOrphansAsync(cancellationToken);
    }

    [Fact]
    public async Task UpgradeFromASchemaWithoutModels_AddsTheTableAndKeepsRows()
    {
        using (var connection = _catalog.Open())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "DROP TABLE models; DELETE FROM schema_migrations WHERE version = 4;";
            command.ExecuteNonQuery();
        }

        var upgraded = new CatalogDatabase(_catalog.Path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, upgraded.SchemaVersion);
        Assert.Equal("team-a", (await new ApiKeyStore(new SqliteApiKeyRepository(upgraded), TimeProvider.System).GetWorkspaceAsync(_teamA.Id))!.Name);
        var registry = new ModelRegistry(new SqliteModelRepository(upgraded), _guard, TimeProvider.System, importRoots: new ModelImportRoots([_importRoot]));
        await registry.ImportBaseModelAsync(new BaseModelImport { SourceDirectory = TinyModel() }, EuOnly, "paris", "key:admin", "default", CancellationToken.None);
        Assert.Single(await registry.ListAsync(_teamA.Id, CancellationToken.None));
    }
}
