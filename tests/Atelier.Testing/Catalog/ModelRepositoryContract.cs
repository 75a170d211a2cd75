using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core.Errors;

namespace Atelier.Testing.Catalog;

/// <summary>
/// What every backend of <see cref="IModelRepository"/> must do: a test class per backend derives
/// from this and says how to open a fresh catalog, add a workspace to it, and record a fine-tuning
/// job (what the core catalog's own repositories write), so the lineage checks have something to find.
/// </summary>
public abstract class ModelRepositoryContract
{
    private static readonly string[] NoAliases = [];

    /// <summary>A new, empty repository over a fresh catalog.</summary>
    protected abstract Task<IModelRepository> NewRepositoryAsync();

    /// <summary>Adds a workspace to the catalog of <paramref name="repository"/>.</summary>
    protected abstract Task AddWorkspaceAsync(IModelRepository repository, string id, string name);

    /// <summary>Records, in the catalog of <paramref name="repository"/>, a fine-tuning job of the workspace that trains on <paramref name="model"/> (a model id or alias).</summary>
    protected abstract Task AddJobAsync(IModelRepository repository, string workspaceId, string jobId, string model);

    private async Task<IModelRepository> WithWorkspacesAsync()
    {
        var repository = await NewRepositoryAsync();
        await AddWorkspaceAsync(repository, "ws-a", "alpha");
        await AddWorkspaceAsync(repository, "ws-b", "beta");
        return repository;
    }

    [Fact]
    public async Task InsertedModels_RoundTripEveryField_IncludingLineageAndNulls()
    {
        var repository = await WithWorkspacesAsync();
        var base1 = Base("mistral-7b", 100, ["mistral-tiny-latest", "m7"]);
        var tuned = FineTuned("ft:mistral-7b:alpha:abc", "ws-a", "mistral-7b", "job-1", 200) with
        {
            Name = null,
            Description = "a description",
            Archived = true,
            LineageJson = """{"training_file_ids":["file-1","file-2"],"validation_file_ids":[],"dataset_id":"ds-1","checkpoint_id":"ck-9","root_version":"abc123"}""",
        };
        Assert.True(await repository.TryInsertAsync(base1));
        Assert.True(await repository.TryInsertAsync(tuned));

        AssertSame(base1, await repository.FindBaseAsync("mistral-7b"));
        AssertSame(tuned, await repository.FindByJobAsync("job-1"));
        AssertSame(tuned, await repository.FindVisibleAsync("ws-a", tuned.Id));
        Assert.Null(await repository.FindBaseAsync(tuned.Id));
        Assert.Null(await repository.FindByJobAsync("job-2"));
    }

    [Fact]
    public async Task AModelWithATakenIdOrJob_IsRefused_AndTheFirstStays()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100)));
        var first = FineTuned("ft:1", "ws-a", "mistral-7b", "job-1", 200);
        Assert.True(await repository.TryInsertAsync(first));

        Assert.False(await repository.TryInsertAsync(Base("mistral-7b", 300) with { Name = "second" }));
        Assert.False(await repository.TryInsertAsync(FineTuned("ft:2", "ws-a", "mistral-7b", "job-1", 300)));
        Assert.False(await repository.TryInsertAsync(FineTuned("ft:1", "ws-b", "mistral-7b", "job-2", 300)));

        Assert.Equal("mistral-7b", (await repository.FindBaseAsync("mistral-7b"))!.Name);
        AssertSame(first, await repository.FindByJobAsync("job-1"));
        Assert.Null(await repository.FindByJobAsync("job-2"));
        Assert.Equal(2, (await repository.ListVisibleAsync("ws-a")).Count);
    }

    [Fact]
    public async Task AWorkspaceSeesBaseModelsAndItsOwn_BaseByIdThenFineTunedNewestFirst()
    {
        var repository = await WithWorkspacesAsync();
        foreach (var model in new[]
        {
            Base("zeta", 50),
            FineTuned("ft:a-old", "ws-a", "zeta", "job-1", 100),
            Base("alpha", 400),
            FineTuned("ft:b", "ws-b", "zeta", "job-2", 300),
            FineTuned("ft:a-new", "ws-a", "alpha", "job-3", 200),
        })
        {
            Assert.True(await repository.TryInsertAsync(model));
        }

        Assert.Equal(new[] { "alpha", "zeta", "ft:a-new", "ft:a-old" }, (await repository.ListVisibleAsync("ws-a")).Select(m => m.Id));
        Assert.Equal(new[] { "alpha", "zeta", "ft:b" }, (await repository.ListVisibleAsync("ws-b")).Select(m => m.Id));
        Assert.Equal(new[] { "alpha", "zeta" }, (await repository.ListVisibleAsync("ws-c")).Select(m => m.Id));

        // Another workspace's model is as absent as a missing one.
        Assert.Null(await repository.FindVisibleAsync("ws-b", "ft:a-new"));
        Assert.NotNull(await repository.FindVisibleAsync("ws-b", "alpha"));
        Assert.NotNull(await repository.FindByJobAsync("job-3"));
    }

    [Fact]
    public async Task Aliases_ResolveLikeIds_TheWorkspacesOwnModelFirst()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100, ["latest", "m7"])));
        Assert.True(await repository.TryInsertAsync(FineTuned("ft:mine", "ws-a", "mistral-7b", "job-1", 50) with { Aliases = ["latest"] }));

        Assert.Equal("mistral-7b", (await repository.FindVisibleAsync("ws-a", "m7"))!.Id);
        Assert.Equal("ft:mine", (await repository.FindVisibleAsync("ws-a", "latest"))!.Id);
        Assert.Equal("mistral-7b", (await repository.FindVisibleAsync("ws-b", "latest"))!.Id);
        Assert.Null(await repository.FindVisibleAsync("ws-a", "unknown"));

        Assert.True(await repository.ExistsAsync("mistral-7b"));
        Assert.True(await repository.ExistsAsync("m7"));
        Assert.True(await repository.ExistsAsync("ft:mine"));
        Assert.False(await repository.ExistsAsync("m8"));
    }

    [Fact]
    public async Task UpdateAndArchive_ChangeOnlyWhatTheyAreAsked_AndMissingModelsAreReported()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100)));
        var model = FineTuned("ft:1", "ws-a", "mistral-7b", "job-1", 200) with { Name = "before", Description = "kept" };
        Assert.True(await repository.TryInsertAsync(model));

        Assert.True(await repository.UpdateTextAsync("ft:1", "after", setName: true, "ignored", setDescription: false));
        var read = (await repository.FindByJobAsync("job-1"))!;
        Assert.Equal(("after", "kept"), (read.Name, read.Description));

        Assert.True(await repository.UpdateTextAsync("ft:1", null, setName: false, null, setDescription: true));
        read = (await repository.FindByJobAsync("job-1"))!;
        Assert.Equal(("after", (string?)null), (read.Name, read.Description));

        Assert.True(await repository.SetArchivedAsync("ft:1", true));
        Assert.True((await repository.FindByJobAsync("job-1"))!.Archived);
        Assert.True(await repository.SetArchivedAsync("ft:1", false));
        Assert.False((await repository.FindByJobAsync("job-1"))!.Archived);

        Assert.False(await repository.UpdateTextAsync("ft:none", "x", true, null, false));
        Assert.False(await repository.SetArchivedAsync("ft:none", true));
    }

    [Fact]
    public async Task Delete_RemovesTheRow_AndReportsAMissingOne()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100, ["m7"])));

        Assert.Equal(ModelDeleteStatus.Deleted, (await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b", "m7"], null)).Status);
        Assert.Null(await repository.FindBaseAsync("mistral-7b"));
        Assert.False(await repository.ExistsAsync("m7"));

        var again = await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b"], null);
        Assert.Equal(ModelDeleteStatus.NotFound, again.Status);
        Assert.Empty(again.Derived);
    }

    [Fact]
    public async Task Delete_IsRefusedWhileAFineTunedModelDerivesFromIt_AndNothingIsDeleted()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100)));
        Assert.True(await repository.TryInsertAsync(FineTuned("ft:1", "ws-b", "mistral-7b", "job-1", 200)));

        var refused = await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b"], null);
        Assert.Equal(ModelDeleteStatus.InUse, refused.Status);
        Assert.Equal(new[] { new DerivedArtifact(DerivedArtifact.Model, "ft:1") }, refused.Derived);
        Assert.NotNull(await repository.FindBaseAsync("mistral-7b"));

        Assert.Equal(ModelDeleteStatus.Deleted, (await repository.DeleteUnlessDerivedAsync("ft:1", ["ft:1"], "ws-b")).Status);
        Assert.Equal(ModelDeleteStatus.Deleted, (await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b"], null)).Status);
    }

    [Fact]
    public async Task Delete_IsRefusedWhileAJobTrainsOnItByAnyOfItsNames_InTheScopeAsked()
    {
        var repository = await WithWorkspacesAsync();
        Assert.True(await repository.TryInsertAsync(Base("mistral-7b", 100, ["m7"])));
        await AddJobAsync(repository, "ws-b", "job-9", "m7");

        // The job names the model by an alias: found through the names given.
        var refused = await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b", "m7"], null);
        Assert.Equal(ModelDeleteStatus.InUse, refused.Status);
        Assert.Equal(new[] { "job-9" }, refused.Derived.Select(d => d.Id));
        Assert.NotNull(await repository.FindBaseAsync("mistral-7b"));

        // Scoped to another workspace, that job does not count.
        Assert.Equal(ModelDeleteStatus.Deleted, (await repository.DeleteUnlessDerivedAsync("mistral-7b", ["mistral-7b", "m7"], "ws-a")).Status);
    }

    [Fact]
    public async Task WorkspaceName_IsTheWorkspacesName_OrNull()
    {
        var repository = await WithWorkspacesAsync();
        Assert.Equal("alpha", await repository.WorkspaceNameAsync("ws-a"));
        Assert.Equal("beta", await repository.WorkspaceNameAsync("ws-b"));
        Assert.Null(await repository.WorkspaceNameAsync("ws-z"));
    }

    private static ModelRecord Base(string id, long createdAt, string[]? aliases = null) => new()
    {
        Id = id,
        Type = ModelRecord.BaseType,
        Name = id,
        CreatedAt = createdAt,
        MaxContextLength = 32_768,
        CapabilitiesJson = """{"completion_chat":true,"fine_tuning":true}""",
        Policy = "default",
        ArtifactsJson = $$"""[{"name":"consolidated.safetensors","location_id":"local","key":"model/{{id}}/consolidated.safetensors","bytes":10,"sha256":"ab"}]""",
        Aliases = aliases ?? [],
        LineageJson = """{"source_directory":"/models/x"}""",
        OwnedBy = "atelier",
        CreatedBy = "admin",
    };

    private static ModelRecord FineTuned(string id, string workspaceId, string root, string jobId, long createdAt) => new()
    {
        Id = id,
        WorkspaceId = workspaceId,
        Type = ModelRecord.FineTunedType,
        Root = root,
        JobId = jobId,
        CreatedAt = createdAt,
        MaxContextLength = 8_192,
        CapabilitiesJson = """{"completion_chat":true}""",
        Policy = "eu-only",
        ArtifactsJson = $$"""[{"name":"lora.safetensors","location_id":"local","key":"job/{{jobId}}/lora.safetensors","bytes":5,"sha256":"cd"}]""",
        OwnedBy = workspaceId,
        CreatedBy = "system:training",
    };

    // The JSON columns compare as JSON: a backend may store them in a normalised form.
    private static void AssertSame(ModelRecord expected, ModelRecord? actual)
    {
        Assert.NotNull(actual);
        Assert.Equal(
            expected with { CapabilitiesJson = "", ArtifactsJson = "", LineageJson = "", Aliases = NoAliases },
            actual with { CapabilitiesJson = "", ArtifactsJson = "", LineageJson = "", Aliases = NoAliases });
        Assert.Equal(expected.Aliases, actual.Aliases);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.CapabilitiesJson), JsonNode.Parse(actual.CapabilitiesJson)), actual.CapabilitiesJson);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.ArtifactsJson), JsonNode.Parse(actual.ArtifactsJson)), actual.ArtifactsJson);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.LineageJson), JsonNode.Parse(actual.LineageJson)), actual.LineageJson);
    }
}
