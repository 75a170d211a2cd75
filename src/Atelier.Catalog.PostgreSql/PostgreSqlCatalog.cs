using Microsoft.Extensions.DependencyInjection;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The shared catalog of cluster mode: one PostgreSQL database, migrated when opened, and every
/// repository over it, the model registry's, the feature store's and the online store's included.
/// </summary>
public sealed class PostgreSqlCatalog : IAsyncDisposable
{
    private PostgreSqlCatalog(PostgreSqlDatabase database, PostgreSqlOnlineFeatureRows onlineFeatures, TimeProvider clock)
    {
        Database = database;
        Files = new PostgreSqlFileRepository(database, clock);
        Datasets = new PostgreSqlDatasetRepository(database, clock);
        Jobs = new PostgreSqlJobRepository(database, clock);
        Keys = new PostgreSqlApiKeyRepository(database);
        VectorCollections = new PostgreSqlVectorCollectionRepository(database);
        Lineage = new PostgreSqlLineageRepository(database);
        Policies = new PostgreSqlPolicyRepository(database);
        Erasures = new PostgreSqlErasureRepository(database);
        Models = new PostgreSqlModelRepository(database);
        ModelVersions = new PostgreSqlModelVersionRepository(database);
        Features = new PostgreSqlFeatureRepository(database);
        OnlineFeatures = onlineFeatures;
    }

    /// <summary>
    /// Connects to the database of <paramref name="connectionString"/> (an Npgsql connection string:
    /// <c>Host=...;Database=atelier;Username=...;Password=...</c>), applies the migrations it lacks and
    /// opens every repository.
    /// </summary>
    /// <param name="connectionString">The database to use; it must exist, its tables are created here.</param>
    /// <param name="clock">The clock of expiries and transitions; the system's when null.</param>
    /// <param name="cancellationToken">Cancels the connection and the migrations.</param>
    public static async Task<PostgreSqlCatalog> OpenAsync(string connectionString, TimeProvider? clock = null, CancellationToken cancellationToken = default)
    {
        var database = await PostgreSqlDatabase.OpenAsync(connectionString, cancellationToken).ConfigureAwait(false);
        try
        {
            var online = await PostgreSqlOnlineFeatureRows.OpenAsync(database, cancellationToken).ConfigureAwait(false);
            return new PostgreSqlCatalog(database, online, clock ?? TimeProvider.System);
        }
        catch
        {
            await database.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The database: its migrations and its connection pool.</summary>
    public PostgreSqlDatabase Database { get; }

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

    /// <summary>The model registry's rows.</summary>
    public IModelRepository Models { get; }

    /// <summary>Registered model names, their versions, aliases and evaluations.</summary>
    public IModelVersionRepository ModelVersions { get; }

    /// <summary>The feature store's views, segments and training sets.</summary>
    public IFeatureRepository Features { get; }

    /// <summary>The online feature store's latest values.</summary>
    public IOnlineFeatureRows OnlineFeatures { get; }

    /// <summary>Closes the connection pool.</summary>
    public ValueTask DisposeAsync() => Database.DisposeAsync();
}

/// <summary>Registers the PostgreSQL catalog.</summary>
public static class PostgreSqlCatalogServiceCollectionExtensions
{
    /// <summary>
    /// Registers <paramref name="catalog"/> and each of its repositories under its interface (the
    /// online feature store's rows included: in cluster mode every node reads the same values).
    /// </summary>
    public static IServiceCollection AddAtelierPostgreSqlCatalog(this IServiceCollection services, PostgreSqlCatalog catalog)
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
        services.AddSingleton(catalog.Models);
        services.AddSingleton(catalog.ModelVersions);
        services.AddSingleton(catalog.Features);
        services.AddSingleton(catalog.OnlineFeatures);
        return services;
    }
}
