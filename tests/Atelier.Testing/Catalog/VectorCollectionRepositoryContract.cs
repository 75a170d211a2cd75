using Atelier.Catalog;
using Atelier.Core.Errors;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IVectorCollectionRepository"/> must do.</summary>
public abstract class VectorCollectionRepositoryContract : CatalogContract
{
    private static VectorCollectionRow Row(string workspace, string id, string name) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Name = name,
        ConfigJson = """{"dimension":8,"metric":"l2"}""",
        Policy = "default",
        CreatedAt = 1_700_000_000,
        CreatedBy = "key:test",
    };

    [Fact]
    public async Task Rows_RoundTripAndListByName_InTheirWorkspaceOnly_AndDeleteRemovesThem()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        var rows = catalog.VectorCollections;
        await rows.InsertAsync(Row(a, "col-2", "zeta"));
        await rows.InsertAsync(Row(a, "col-1", "alpha"));
        await rows.InsertAsync(Row(b, "col-3", "other"));

        Assert.Equal(Row(a, "col-2", "zeta"), await rows.FindAsync(a, "zeta"));
        Assert.Equal(["alpha", "zeta"], (await rows.ListAsync(a)).Select(r => r.Name));
        Assert.Equal(["col-1", "col-2", "col-3"], (await rows.AllIdsAsync()).Order(StringComparer.Ordinal));
        Assert.Null(await rows.FindAsync(b, "zeta"));
        Assert.Equal(["other"], (await rows.ListAsync(b)).Select(r => r.Name));

        await rows.DeleteAsync("col-2");
        await rows.DeleteAsync("col-missing");

        Assert.Null(await rows.FindAsync(a, "zeta"));
        Assert.Equal(["col-1", "col-3"], (await rows.AllIdsAsync()).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Insert_WithANameTakenInTheWorkspace_IsAConflict_ButAnotherWorkspaceMayUseIt()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        await catalog.VectorCollections.InsertAsync(Row(a, "col-1", "docs"));

        await Assert.ThrowsAsync<ConflictException>(() => catalog.VectorCollections.InsertAsync(Row(a, "col-2", "docs")));
        Assert.Single(await catalog.VectorCollections.ListAsync(a));
        await catalog.VectorCollections.InsertAsync(Row(b, "col-2", "docs"));
        Assert.Equal("col-2", (await catalog.VectorCollections.FindAsync(b, "docs"))?.Id);
    }
}
