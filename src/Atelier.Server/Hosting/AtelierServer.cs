using System.Net;
using Atelier.Core;
using Atelier.Core.IO;
using Atelier.Server.Auth;
using Atelier.Server.Collections;
using Atelier.Server.Datasets;
using Atelier.Server.Features;
using Atelier.Server.Errors;
using Atelier.Server.Files;
using Atelier.Server.Jobs;
using Atelier.Catalog.Sqlite;
using Atelier.Cluster.Jobs;
using Atelier.Features.Semantic;
using Atelier.Training.Checkpoints;
using Atelier.Training.Datasets;
using Atelier.Training.Execution;
using Atelier.Server.Models;
using Atelier.Server.Platform;
using Atelier.Vectors.Collections;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

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
        var runtime = await AtelierRuntime.OpenAsync(options, cancellationToken).ConfigureAwait(false);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        logging?.Invoke(builder.Logging);

        var bind = options.Bind ?? runtime.Config.Server.Bind;
        var port = options.Port ?? runtime.Config.Server.Port;
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Parse(bind), port);

            // The upload handler sets its own limit per request from the configuration.
            kestrel.Limits.MaxRequestBodySize = runtime.Config.Files.MaxUploadBytes + (64 * 1024);
        });

        builder.Services.AddSingleton(runtime);
        builder.Services.AddSingleton(options.Clock);

        // The catalog: each repository under its interface, and the rules over them (keys, policies).
        builder.Services.AddAtelierSqliteCatalog(runtime.Catalog);
        builder.Services.AddSingleton(runtime.Keys);
        builder.Services.AddSingleton(runtime.Policies);
        builder.Services.AddSingleton<FileUpload>();
        builder.Services.AddHostedService(services => new FileExpirySweeper(runtime.Files, runtime.Guard, runtime.Clock, services.GetRequiredService<ILogger<FileExpirySweeper>>()));
        builder.Services.AddSingleton(services => new DatasetBuildService(
            new DatasetBuildServiceOptions { StagingDirectory = Path.Combine(options.DataDirectory, "staging", "datasets") },
            runtime.Datasets,
            runtime.Files,
            runtime.Policies,
            runtime.Guard,
            services.GetRequiredService<Atelier.Registry.ModelRegistry>(),
            new SemanticDedupBuild(runtime.Datasets, runtime.Files, runtime.Guard, services.GetRequiredService<Atelier.Registry.ModelRegistry>()),
            services.GetRequiredService<ILogger<DatasetBuildService>>()));
        builder.Services.AddHostedService(services => services.GetRequiredService<DatasetBuildService>());
        builder.Services.AddSingleton(runtime.Guard);
        builder.Services.AddSingleton<ResidencyPolicyResolver>(runtime.ResolvePolicy);
        builder.Services.AddSingleton<ICollectionCatalog, CatalogCollectionRecords>();
        builder.Services.AddAtelierVectorCollections();
        builder.Services.AddSingleton(await OpenModelRegistryAsync(runtime, cancellationToken).ConfigureAwait(false));
        builder.Services.AddSingleton(runtime.Topology);
        builder.Services.AddSingleton(services => new CheckpointStore(
            runtime.Guard,
            new CheckpointStoreOptions { Locations = runtime.Config.Defaults.CheckpointLocations, Actor = "system:checkpoints" },
            runtime.Clock));
        builder.Services.AddSingleton(services => new FineTuningWork(
            new FineTuningWorkOptions
            {
                StagingDirectory = Path.Combine(options.DataDirectory, "staging", "jobs"),
                MaxCurationDropFraction = runtime.Config.Defaults.MaxCurationDropFraction,
            },
            new FineTuningCatalog(runtime.Jobs, runtime.Files, runtime.Datasets, runtime.Keys, runtime.Policies),
            new FineTuningStorage(runtime.Locations, runtime.Guard, runtime.Topology),
            services.GetRequiredService<Atelier.Registry.ModelRegistry>(),
            services.GetRequiredService<CheckpointStore>(),
            new GrainFineTuningReports(services.GetRequiredService<IGrainFactory>()),
            services.GetRequiredService<IHostApplicationLifetime>(),
            runtime.Clock,
            services.GetRequiredService<ILogger<FineTuningWork>>()));
        builder.Services.AddSingleton<IFineTuningWork>(services => services.GetRequiredService<FineTuningWork>());

        // One silo with localhost clustering: the embedded default. Its ports are picked free at
        // start unless configured, so several servers (and tests) can run on one machine.
        builder.UseOrleans(silo => silo.UseLocalhostClustering(
            siloPort: FreePort(runtime.Config.Server.SiloPort),
            gatewayPort: FreePort(runtime.Config.Server.GatewayPort),
            serviceId: "atelier",
            clusterId: "atelier-" + runtime.NodeName));

        // After the silo (hosted services start in order): recovery needs grains.
        builder.Services.AddHostedService<JobRecoveryService>();
        builder.Services.AddOpenApi();
        builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("atelier"))
            .WithMetrics(metrics => metrics
            .AddMeter(MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
            .AddPrometheusExporter());
        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            json.SerializerOptions.PropertyNamingPolicy = AtelierJson.Options.PropertyNamingPolicy;
        });

        // A body or parameter the framework cannot bind is thrown to ErrorMapping, which answers it
        // with the position or parameter, instead of a bare 400 with no body.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(routes => routes.ThrowOnBadRequest = true);

        // Hosting's request log writes the full URL, query included, and a signed download URL's
        // query is a credential; RequestLog writes method, path and status instead.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.Warning);

        var app = builder.Build();

        // Before any request can create or delete a collection: sweep what a crash left of one.
        await app.Services.GetRequiredService<CollectionStore>().RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);
        var features = await FeatureEndpoints.OpenStoreAsync(app.Services, cancellationToken).ConfigureAwait(false);
        app.Lifetime.ApplicationStopped.Register(runtime.Dispose);
        app.UseMiddleware<RequestLog>();
        app.UseMiddleware<ErrorMapping>();
        app.UseMiddleware<ApiKeyAuthentication>();
        app.UseMiddleware<RequestBodyLimit>();

        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapPrometheusScrapingEndpoint("/metrics");
        // Liveness only: it needs no key, so it says nothing about the data (no counts, no versions).
        app.MapGet("/health", () => Results.Json(new { status = "ok" }, AtelierJson.Options))
            .WithTags("Health");
        app.MapGet("/", () => Results.Text(
            "Atelier is running. Mistral-compatible API under /v1, platform API under /api/v1, OpenAPI at /openapi/v1.json, metrics at /metrics.\n",
            "text/plain")).ExcludeFromDescription();
        app.MapFiles();
        app.MapPlatform();
        app.MapDatasets();
        app.MapFeatures(features);
        app.MapCollections();
        app.MapModels();
        app.MapFineTuningJobs();
        app.MapCheckpoints();
        return app;
    }

    /// <summary>
    /// The model registry over the runtime's catalog and guard, importing only from the configured
    /// import roots, after removing bytes a crashed import left.
    /// </summary>
    private static async Task<Registry.ModelRegistry> OpenModelRegistryAsync(AtelierRuntime runtime, CancellationToken cancellationToken)
    {
        var dataDirectory = Path.GetFullPath(runtime.Options.DataDirectory);
        var roots = runtime.Config.Models.ImportRootPaths(dataDirectory);
        foreach (var root in roots)
        {
            // Roots inside the data directory (the default, import/) are the server's own: created
            // private to its user, like the rest of it. Roots elsewhere are the operator's to create.
            if (root.StartsWith(Path.TrimEndingDirectorySeparator(dataDirectory) + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            {
                DataDirectoryPermissions.CreatePrivateDirectory(root);
            }
        }

        var registry = new Registry.ModelRegistry(
            new global::Atelier.Catalog.Sqlite.SqliteModelRepository(runtime.Catalog.Database),
            runtime.Guard,
            runtime.Clock,
            Path.Combine(runtime.Options.DataDirectory, "cache", "models"),
            new Registry.ModelImportRoots(roots));
        await registry.RemoveOrphanedBlobsAsync("system:recovery", cancellationToken).ConfigureAwait(false);
        return registry;
    }

    /// <summary>The configured port, or a free loopback port when it is 0.</summary>
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

    /// <summary>The runtime behind a built application.</summary>
    public static AtelierRuntime Runtime(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        return app.Services.GetRequiredService<AtelierRuntime>();
    }
}
