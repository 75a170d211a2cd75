using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Tests;

public sealed class VectorCollectionCatalogTests
{
    private static (VectorCollectionCatalog Catalog, string Workspace) NewCatalog()
    {
        var path = Path.Combine(Atelier.Testing.TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db");
        var database = new CatalogDatabase(path);
        var workspace = new ApiKeyStore(database, TimeProvider.System).EnsureWorkspace("default").Id;
        return (new VectorCollectionCatalog(database), workspace);
    }

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
    public void Rows_RoundTripAndListByName_AndDeleteRemovesThem()
    {
        var (catalog, workspace) = NewCatalog();
        catalog.Insert(Row(workspace, "col-2", "zeta"));
        catalog.Insert(Row(workspace, "col-1", "alpha"));

        Assert.Equal(Row(workspace, "col-2", "zeta"), catalog.Find(workspace, "zeta"));
        Assert.Equal(["alpha", "zeta"], catalog.List(workspace).Select(r => r.Name));
        Assert.Equal(["col-1", "col-2"], catalog.AllIds().Order());
        Assert.Null(catalog.Find("other-workspace", "zeta"));

        catalog.Delete("col-2");

        Assert.Null(catalog.Find(workspace, "zeta"));
        Assert.Equal(["col-1"], catalog.AllIds());
    }

    [Fact]
    public void Insert_WithANameTakenInTheWorkspace_ViolatesTheUniqueKey()
    {
        var (catalog, workspace) = NewCatalog();
        catalog.Insert(Row(workspace, "col-1", "docs"));

        Assert.Throws<SqliteException>(() => catalog.Insert(Row(workspace, "col-2", "docs")));
        Assert.Single(catalog.List(workspace));
    }
}
