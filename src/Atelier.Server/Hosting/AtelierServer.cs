using System.Net;
using Atelier.Catalog;
using Atelier.Catalog.PostgreSql;
using Atelier.Catalog.Sqlite;
using Atelier.Cluster;
using Atelier.Core;
using Atelier.Core.IO;
using Atelier.Core.Residency;
using Atelier.Core.Topology;
using Atelier.Features;
using Atelier.Inference;
using Atelier.Inference.Serving;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Collections;
using Atelier.Server.WebConsole;
using Atelier.Server.Datasets;
using Atelier.Server.Errors;
using Atelier.Server.Features;
using Atelier.Server.Files;
using Atelier.Server.Inference;
using Atelier.Server.Jobs;
using Atelier.Server.Lineage;
using Atelier.Server.Models;
using Atelier.Server.Platform;
using Atelier.Server.Registry;
using Atelier.Storage;
using Atelier.Storage.Audit;
using Atelier.Storage.S3;
using Atelier.Training;
using Atelier.Training.Checkpoints;
using Atelier.Training.Datasets;
using Atelier.Training.Execution;
using Atelier.Vectors.Collections;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Atelier.Server.Hosting;

/// <summary>Builds the Atelier web application: the Mistral-compatible <c>/v1</c>, the platform's <c>/api/v1</c>, health, metrics, OpenAPI.</summary>
public static class AtelierServer
{
    /// <summary>The name of the meter holding Atelier's own metrics.</summary>
    public const string MeterName = "Atelier";

    /// <summary>
    /// Opens the data directory, runs the start-up recovery of every store (what a crash left:
    /// partial writes, blobs without a catalog row), and builds the application, ready to run.
    /// </summary>
    public static async Task<WebApplication> BuildAsync(ServerOptions options, Action<ILoggingBuilder>? logging = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var config = DataDirectoryStartup.Open(options);
        var collectionStore = CollectionStoreSettings.Of(config.Collections); // refuses a bad section before anything opens
        var dataDirectory = options.DataDirectory;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        ConfigureLogging(builder.Logging, options.LogFormat ?? config.Logging.Format);
        logging?.Invoke(builder.Logging);

        var bind = options.Bind ?? config.Server.Bind;
        var port = options.Port ?? config.Server.Port;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Parse(bind), port);

            // The upload handler sets its own limit per request from the configuration.
            kestrel.Limits.MaxRequestBodySize = config.Files.MaxUploadBytes + RequestBodyLimit.UploadFramingBytes;
        });

        var services = builder.Services;

        // Larger receive blocks: fewer system calls per uploaded byte (see ReceiveBlockPool).
        services.AddSingleton<Microsoft.AspNetCore.Connections.IMemoryPoolFactory<byte>, ReceiveBlockPoolFactory>();
        services.AddSingleton(options);
        services.AddSingleton(config);
        services.AddSingleton(options.Clock);
        services.AddSingleton(new TopologyMap(config.Sites, config.Topology));
        // Cluster mode (--cluster, or a PostgreSQL catalog in atelier.json, its connection string there,
        // in a 0600 file or in the environment): the catalog's database is shared by every node and
        // holds Orleans' membership too.
        var catalogConfig = config.ResolveCatalog(dataDirectory, options.Cluster);
        var clustered = catalogConfig?.Provider == CatalogConfig.PostgreSql;
        var node = options.Node ?? config.Cluster?.Node ?? Environment.MachineName;
        services.AddSingleton(new TrainingNode(node, config.Defaults.TrainingSlots));
        services.AddSingleton(new PublicAddress(config.Server.PublicUrl, bind));
        // Behind one address every node must accept the URLs any node signed: a shared key file then.
        services.AddSingleton(_ => config.Server.UrlSigningKeyFile is { Length: > 0 } shared
            ? UrlSigner.FromSharedFile(Path.GetFullPath(Path.Combine(dataDirectory, shared)))
            : UrlSigner.LoadOrCreate(Path.Combine(dataDirectory, UrlSigner.FileName)));

        // The catalog: the embedded SQLite one unless atelier.json names PostgreSQL, each repository
        // under its interface, and the rules over them (keys, policies). The policies are read
        // once here, before anything uses them.
        var policyRepository = await AddCatalogAsync(services, catalogConfig, dataDirectory, options.Clock, cancellationToken).ConfigureAwait(false);
        var policies = await PolicyCatalog.LoadAsync(policyRepository, config.Policies, config.Defaults.FilePolicy, options.Clock, cancellationToken).ConfigureAwait(false);
        services.AddSingleton(policies);
        services.AddSingleton<ResidencyPolicyResolver>(policies.Resolve);
        services.AddSingleton(provider => new ApiKeyStore(provider.GetRequiredService<IApiKeyRepository>(), options.Clock));
        services.AddSingleton<ICollectionCatalog, CatalogCollectionRecords>();

        services.AddAtelierStorage(new StorageOptions { DataDirectory = dataDirectory, Locations = config.Locations, Node = clustered ? node : null });
        services.AddAtelierS3Storage();
        services.AddAtelierRegistry(new ModelRegistryOptions
        {
            CacheDirectory = Path.Combine(dataDirectory, "cache", "models"),
            ImportRoots = CreateImportRoots(dataDirectory, config),
        });
        services.AddAtelierTraining(new TrainingOptions
        {
            FineTuning = new FineTuningWorkOptions
            {
                StagingDirectory = Path.Combine(dataDirectory, "staging", "jobs"),
                MetricsDirectory = Path.Combine(dataDirectory, "metrics", "jobs"),
                MaxCurationDropFraction = config.Defaults.MaxCurationDropFraction,
                SharedLocation = clustered ? SharedLocation(config) : null,
            },
            // Each build is owned by the one node holding its lease in the catalog (decision 0021);
            // the embedded catalog has this node alone.
            DatasetBuilds = new DatasetBuildServiceOptions { StagingDirectory = Path.Combine(dataDirectory, "staging", "datasets"), Node = node, SoleNode = !clustered },
            Checkpoints = new CheckpointStoreOptions { Locations = config.Defaults.CheckpointLocations, Actor = "system:checkpoints" },
        });
        services.AddAtelierFeatures(new FeatureStoreOptions
        {
            Location = config.Defaults.FileLocation,
            DefaultPolicy = config.Defaults.FilePolicy,
        });
        services.AddAtelierVectorCollections(collectionStore);
        services.AddAtelierCluster();
        services.AddAtelierInference(ServingOptionsOf(config.Serving), Replicas(config, clustered ? node : null), policies.Resolve);
        // In a cluster every other live node is a replica too, reached through YARP's forwarder (decision 0025).
        services.AddHttpForwarder();
        services.AddSingleton<ReplicaForwarder>();
        services.AddSingleton<Atelier.Cluster.Jobs.INodeServingLoad, RouterServingLoad>();
        if (clustered)
        {
            services.AddSingleton<IRemoteReplicas, ClusterServingReplicas>();
        }

        services.AddSingleton<FreeingSpace>();
        services.AddSingleton<PlatformGauges>();
        services.AddSingleton<FileUpload>();
        services.AddSingleton<JobRequests>();
        services.AddSingleton<DataDirectoryStartup>();

        // One silo with localhost clustering: the embedded default. Its ports are picked free at
        // start unless configured, so several servers (and tests) can run on one machine.
        builder.UseOrleans(silo => silo.UseAtelierCluster(new ClusterSettings
        {
            Node = node,
            ClusterId = clustered ? config.Cluster?.Id ?? "atelier" : "atelier-" + Environment.MachineName,
            PostgreSqlConnectionString = clustered ? catalogConfig!.ConnectionString : null,
            AdvertisedAddress = AdvertisedAddress(options.AdvertisedAddress ?? config.Cluster?.AdvertisedAddress),
            ProbeTimeout = config.Cluster?.ProbeTimeoutSeconds is > 0 and var probe ? TimeSpan.FromSeconds(probe) : null,
            SiloPort = FreePort(config.Server.SiloPort),
            GatewayPort = FreePort(config.Server.GatewayPort),
        }));

        // After the silo (hosted services start in order): recovery needs grains.
        builder.Services.AddHostedService<JobRecoveryService>();
        builder.Services.AddHostedService<NodeLossWatcher>();
        builder.Services.AddHostedService<Atelier.Server.Platform.NodeBlobAddress>();
        builder.Services.AddAtelierOpenApi();
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("atelier"))
            .WithMetrics(metrics => metrics
            .AddMeter(MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
            .AddPrometheusExporter())
            .WithTracing(tracing =>
            {
                // Traces give the logs their trace ids; they leave the process only when an OTLP
                // collector is configured (telemetry.otlp_endpoint).
                tracing.AddSource(FineTuningWork.ActivitySourceName)
                    .AddAspNetCoreInstrumentation(aspnet => aspnet.Filter = context => !context.Request.Path.StartsWithSegments("/metrics", StringComparison.Ordinal))
                    .AddHttpClientInstrumentation();
                if (config.Telemetry.OtlpEndpoint is { Length: > 0 } endpoint)
                {
                    tracing.AddOtlpExporter(otlp => otlp.Endpoint = new Uri(endpoint));
                }
            });
        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            json.SerializerOptions.PropertyNamingPolicy = AtelierJson.Options.PropertyNamingPolicy;
        });

        // A body or parameter the framework cannot bind is thrown to ErrorMapping, which answers it
        // with the position or parameter, instead of a bare 400 with no body.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(routes => routes.ThrowOnBadRequest = true);


        var app = builder.Build();
        try
        {
            await StartUpAsync(app.Services, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        app.UseMiddleware<RequestLog>();
        app.UseMiddleware<ErrorMapping>();
        app.UseMiddleware<ApiKeyAuthentication>();
        app.UseMiddleware<RequestBodyLimit>();
        app.UseMiddleware<PlatformGaugesRefresh>();

        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapPrometheusScrapingEndpoint("/metrics");
        // Liveness only: it needs no key, so it says nothing about the data (no counts, no versions).
        app.MapGet("/health", () => Results.Json(new { status = "ok" }, AtelierJson.Options))
            .WithTags("Health").WithName("getHealth").WithSummary("Liveness: {\"status\": \"ok\"} while the server runs; needs no key.").Produces<HealthObject>();
        app.MapConsole();
        app.MapFiles();
        app.MapPlatform();
        app.MapDatasets();
        app.MapFeatures();
        app.MapCollections();
        app.MapModels();
        app.MapRegistry();
        app.MapFineTuningJobs();
        app.MapCheckpoints();
        app.MapNodes();
        app.MapNodeBlobs();
        app.MapJobMetrics();
        app.MapInference();
        app.MapGroup("/api/v1").MapLineage();
        return app;
    }

    /// <summary>
    /// Opens the catalog <paramref name="catalog"/> names (the embedded SQLite file when it names
    /// none) and registers its repositories; returns where the operator's policies are stored.
    /// </summary>
    private static async Task<IPolicyRepository> AddCatalogAsync(IServiceCollection services, CatalogConfig? catalog, string dataDirectory, TimeProvider clock, CancellationToken cancellationToken)
    {
        switch (catalog?.Provider ?? CatalogConfig.Sqlite)
        {
            case CatalogConfig.Sqlite:
                var sqlite = SqliteCatalog.Open(Path.Combine(dataDirectory, "catalog.db"), clock);
                services.AddAtelierSqliteCatalog(sqlite);
                services.AddAtelierSqliteOnlineFeatures(Path.Combine(dataDirectory, FeatureEndpoints.OnlineStoreFile));
                return sqlite.Policies;
            case CatalogConfig.PostgreSql when !string.IsNullOrWhiteSpace(catalog?.ConnectionString):
                var postgres = await PostgreSqlCatalog.OpenAsync(catalog.ConnectionString, clock, cancellationToken).ConfigureAwait(false);
                services.AddAtelierPostgreSqlCatalog(postgres);
                return postgres.Policies;
            case CatalogConfig.PostgreSql:
                throw new InvalidOperationException($"{AtelierConfig.FileName}: catalog.provider is \"postgresql\" but no connection string is given: set catalog.connection_string_file (a 0600 file), the environment variable {CatalogConfig.ConnectionStringVariable} or catalog.connection_string to an Npgsql connection string (Host=...;Database=atelier;Username=...;Password=...).");
            default:
                throw new InvalidOperationException($"{AtelierConfig.FileName}: catalog.provider \"{catalog?.Provider}\" is unknown; use \"sqlite\" (the default) or \"postgresql\".");
        }
    }

    /// <summary>
    /// Quiet by default (decision 0012): one line per event of a job's, a dataset's or a model's life,
    /// none per request (<see cref="RequestLog"/> is at Debug), ASP.NET Core and Orleans only from
    /// Warning (Orleans dumps its configuration at Information); text on one line, or JSON with
    /// the scopes that carry the trace and span ids.
    /// </summary>
    private static void ConfigureLogging(ILoggingBuilder logging, string format)
    {
        logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        logging.AddFilter("Microsoft.Extensions.Hosting", LogLevel.Warning);

        // "Now listening on", "Content root path": `atelier serve` prints its own banner instead.
        logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        logging.AddFilter("Orleans", LogLevel.Warning);
        logging.AddFilter("Microsoft.Orleans", LogLevel.Warning);

        // Orleans' placement runs through Polly, which logs every attempt at Information.
        logging.AddFilter("Polly", LogLevel.Warning);

        // Hosting's request log writes the full URL, query included, and a signed download URL's
        // query is a credential; RequestLog writes method, path and status instead (at Debug).
        logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);
        logging.Configure(o => o.ActivityTrackingOptions = ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);
        switch (format)
        {
            case LoggingConfig.Json:
                logging.AddJsonConsole(json =>
                {
                    json.IncludeScopes = true;
                    json.UseUtcTimestamp = true;
                    json.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                });
                break;
            case LoggingConfig.Text:
                logging.AddSimpleConsole(text =>
                {
                    text.SingleLine = true;
                    text.UseUtcTimestamp = true;
                    text.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                });
                break;
            default:
                throw new InvalidOperationException($"logging.format: '{format}' is not a log format; use '{LoggingConfig.Text}' or '{LoggingConfig.Json}'.");
        }
    }

    /// <summary>
    /// Opens what the data directory holds and repairs what a crash left, in order, before anything
    /// writes: the keys that sign URLs and audit heads (created now, private, rather than
    /// at first use), the locations and file blobs, the operator's key, the model registry's blobs, the
    /// vector collections, and the online feature store's catch-up with the committed segments.
    /// </summary>
    private static async Task StartUpAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        services.GetRequiredService<UrlSigner>();
        services.GetRequiredService<PlatformGauges>().Register();
        services.GetRequiredService<AuditHeadSigner>();
        await services.GetRequiredService<DataDirectoryStartup>().RunAsync(cancellationToken).ConfigureAwait(false);
        await services.GetRequiredService<ModelRegistry>().RemoveOrphanedBlobsAsync("system:recovery", cancellationToken).ConfigureAwait(false);
        await services.GetRequiredService<CollectionStore>().RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);
        await services.GetRequiredService<FeatureStore>().CatchUpOnlineAsync(cancellationToken).ConfigureAwait(false);
    }

    private static ServingOptions ServingOptionsOf(ServingConfig serving) => new()
    {
        Engine = new InferenceEngineOptions
        {
            KvCacheBytes = serving.KvCacheBytes,
            MaxBatchTokens = serving.MaxBatchTokens,
            MaxRunningSequences = serving.MaxRunningSequences,
            AdapterPoolCapacity = serving.AdapterPoolCapacity,
        },
        Weights = serving.Weights switch
        {
            ServingConfig.WeightsAsLoaded => ServingWeights.AsLoaded,
            ServingConfig.WeightsBFloat16 => ServingWeights.BFloat16,
            _ => throw new InvalidOperationException(
                $"serving.weights: '{serving.Weights}' is not a weight format; use '{ServingConfig.WeightsAsLoaded}' or '{ServingConfig.WeightsBFloat16}'."),
        },
    };

    /// <summary>
    /// The configured serving replicas with where each runs; by default one, at the default file
    /// location. In a cluster the default replica is the node itself, named after it, where its own
    /// drive is (<see cref="AtelierConfig.ServingLocationOf"/>): the other nodes judge it there too.
    /// </summary>
    private static List<(string Id, LocationDescriptor Location)> Replicas(AtelierConfig config, string? clusterNode)
    {
        if (config.Serving.Replicas.Count == 0 && clusterNode is not null && config.ServingLocationOf(clusterNode) is { } nodeLocation)
        {
            return [(clusterNode, nodeLocation)];
        }

        IReadOnlyList<ReplicaConfig> replicas = config.Serving.Replicas.Count > 0 ? config.Serving.Replicas : [new ReplicaConfig("local", config.Defaults.FileLocation)];
        return [.. replicas.Select(r => (r.Id, config.Locations.FirstOrDefault(l => l.Id == r.Location)
            ?? throw new InvalidOperationException($"serving.replicas: replica '{r.Id}' runs at location '{r.Location}', which {AtelierConfig.FileName} does not define; defined: {string.Join(", ", config.Locations.Select(l => l.Id))}.")))];
    }

    /// <summary>
    /// The configured import roots, absolute. Roots inside the data directory (the default, import/)
    /// are the server's own: created private to its user, like the rest of it. Roots elsewhere are the
    /// operator's to create.
    /// </summary>
    private static IReadOnlyList<string> CreateImportRoots(string dataDirectory, AtelierConfig config)
    {
        var fullDataDirectory = Path.GetFullPath(dataDirectory);
        var roots = config.Models.ImportRootPaths(fullDataDirectory);
        foreach (var root in roots)
        {
            if (root.StartsWith(Path.TrimEndingDirectorySeparator(fullDataDirectory) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                DataDirectoryPermissions.CreatePrivateDirectory(root);
            }
        }

        return roots;
    }

    private static string? SharedLocation(AtelierConfig config) =>
        config.Cluster?.SharedLocation is not { } shared ? null
        : config.Locations.Any(l => l.Id == shared) ? shared
        : throw new InvalidOperationException($"{AtelierConfig.FileName}: cluster.shared_location \"{shared}\" is not one of the locations; defined: {string.Join(", ", config.Locations.Select(l => l.Id))}.");

    /// <summary>The configured port, or a free loopback port when it is 0.</summary>
    private static IPAddress? AdvertisedAddress(string? text) =>
        text is null ? null
        : IPAddress.TryParse(text, out var address) ? address
        : throw new InvalidOperationException($"The advertised address \"{text}\" (--advertised-address or cluster.advertised_address in {AtelierConfig.FileName}) is not an IP address.");

    private static int FreePort(int configured)
    {
        if (configured != 0)
        {
            return configured;
        }

        using var probe = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>What the start of a built application did to its data directory.</summary>
    public static StartupReport StartupReport(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Services.GetRequiredService<DataDirectoryStartup>().Report
            ?? throw new InvalidOperationException("The application was not built by AtelierServer.BuildAsync.");
    }
}
