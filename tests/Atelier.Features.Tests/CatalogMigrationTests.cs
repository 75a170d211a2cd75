using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

/// <summary>The feature tables belong to the catalog's numbered migration 3, including for catalogs that predate it.</summary>
public sealed class CatalogMigrationTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public void NewCatalog_HasTheFeatureTables_FromMigration3()
    {
        using var connection = _f.Catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM schema_migrations WHERE version = 3";
        Assert.Equal("feature store, vector collections", command.ExecuteScalar());
        command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('feature_views', 'feature_segments', 'feature_training_sets', 'vector_collections')";
        Assert.Equal(4L, command.ExecuteScalar());
    }

    [Fact]
    public async Task CatalogWhoseFeatureTablesPredateMigration3_MigratesCleanlyAndKeepsItsRows()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0, quality: 0.5), Row("b", T0, quality: 0.7));
        var views = await _f.Store.ListViewsAsync(Ws);
        var segments = await _f.Store.SegmentsAsync(views[0]);
        Assert.NotEmpty(segments);

        // What a catalog looked like when the feature store created its own tables: the tables and their
        // rows exist, but no migration 3 is recorded (and the collections table does not exist yet).
        using (var connection = _f.Catalog.Open())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "DELETE FROM schema_migrations WHERE version = 3; DROP TABLE vector_collections;";
            command.ExecuteNonQuery();
        }

        var reopened = new CatalogDatabase(_f.Catalog.Path);
        using (var connection = reopened.Open())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT COUNT(*) FROM schema_migrations WHERE version = 3";
            Assert.Equal(1L, command.ExecuteScalar());
            command.CommandText = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'vector_collections'";
            Assert.Equal(1L, command.ExecuteScalar());
        }

        Assert.Equal(CatalogDatabase.LatestSchemaVersion, reopened.SchemaVersion);
        var (store, _) = await _f.ReopenAsync("features-online.db");
        var after = await store.ListViewsAsync(Ws);
        Assert.Equal(views.Select(v => v.Id), after.Select(v => v.Id));
        Assert.Equal(segments.Select(s => s.BlobKey), (await store.SegmentsAsync(after[0])).Select(s => s.BlobKey));
        var online = await store.GetOnlineAsync(after[0], ["a", "b"]);
        Assert.All(online, v => Assert.True(v.Found));
    }
}
