using Microsoft.Extensions.DependencyInjection;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// The embedded catalog: one SQLite file, migrated when opened, and every repository over it. A
/// data directory written by an earlier version opens unchanged: the numbered migrations only add.
/// </summary>
public sealed class SqliteCatalog
{
    private SqliteCatalog(CatalogDatabase database, TimeProvider clock)
    {
        Database = database;
        Files = new SqliteFileRepository(database, clock);
        Datasets = new SqliteDatasetRepository(database, clock);
        Jobs = new SqliteJobRepository(database, clock);
        Keys = new SqliteApiKeyRepository(database);
        VectorCollections = new SqliteVectorCollectionRepository(database);
        Lineage = new SqliteLineageRepository(database);
        Policies = new SqlitePolicyRepository(database);
        Erasures = new SqliteErasureRepository(database);
    }

    /// <summary>Opens (creating if needed) the catalog at <paramref name="path"/> and applies the migrations it lacks.</summary>
    /// <param name="path">The database file.</param>
    /// <param name="clock">The clock of expiries and transitions; the system's when null.</param>
    public static SqliteCatalog Open(string path, TimeProvider? clock = null) => new(new CatalogDatabase(path), clock ?? TimeProvider.System);

    /// <summary>The database, for the stores whose SQL has not moved behind a repository yet (feature store, model registry).</summary>
    public CatalogDatabase Database { get; }

    /// <summary>Uploaded files.</summary>
    public IFileRepository Files { get; }

    /// <summary>Dataset versions.</summary>
    public IDatasetRepository Datasets { get; }

    /// <summary>Fine-tuning jobs, their events and checkpoints.</summary>
    public IJobRepository Jobs { get; }

    /// <summary>Workspaces and API keys.</summary>
    public IApiKeyRepository Keys { get; }

    /// <summary>Vector collections' rows.</summary>
    public IVectorCollectionRepository VectorCollections { get; }

    /// <summary>Who derives from a file or a dataset.</summary>
    public ILineageRepository Lineage { get; }

    /// <summary>Operator-defined residency policies and the workspaces' governance.</summary>
    public IPolicyRepository Policies { get; }

    /// <summary>Erasures, model taints and serving overrides.</summary>
    public IErasureRepository Erasures { get; }
}

/// <summary>Registers the SQLite catalog.</summary>
public static class SqliteCatalogServiceCollectionExtensions
{
    /// <summary>
    /// Registers <paramref name="catalog"/> and each of its repositories under its interface (the model
    /// and feature repositories over its database too), so a service asks for the one repository it needs.
    /// </summary>
    public static IServiceCollection AddAtelierSqliteCatalog(this IServiceCollection services, SqliteCatalog catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        services.AddSingleton(catalog);
        services.AddSingleton(catalog.Database);
        services.AddSingleton(catalog.Files);
        services.AddSingleton(catalog.Datasets);
        services.AddSingleton(catalog.Jobs);
        services.AddSingleton(catalog.Keys);
        services.AddSingleton(catalog.VectorCollections);
        services.AddSingleton(catalog.Lineage);
        services.AddSingleton(catalog.Policies);
        services.AddSingleton(catalog.Erasures);
        services.AddSingleton<IModelRepository>(new SqliteModelRepository(catalog.Database));
        services.AddSingleton<IModelVersionRepository>(new SqliteModelVersionRepository(catalog.Database));
        services.AddSingleton<IFeatureRepository>(new SqliteFeatureRepository(catalog.Database));
        return services;
    }

    /// <summary>
    /// Registers the online feature store's rows (<see cref="IOnlineFeatureRows"/>) in their own SQLite
    /// file at <paramref name="path"/>, apart from the catalog; the file is opened when first resolved.
    /// </summary>
    public static IServiceCollection AddAtelierSqliteOnlineFeatures(this IServiceCollection services, string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        services.AddSingleton<IOnlineFeatureRows>(_ => new SqliteOnlineFeatureRows(path));
        return services;
    }

    /// <summary>Opens the catalog at <paramref name="path"/> (see <see cref="SqliteCatalog.Open"/>) and registers it.</summary>
    public static IServiceCollection AddAtelierSqliteCatalog(this IServiceCollection services, string path, TimeProvider? clock = null) =>
        services.AddAtelierSqliteCatalog(SqliteCatalog.Open(path, clock));
}
