using System.Net;
using Atelier.Features.Api;
using Atelier.Features.Bench;

// Usage:
//   cache <report.md> [keys] [requests]                 ConcurrentLfu vs LRU hit ratio on Zipf traces
//   inproc <report.md> [keys] [batches]                 online lookups of 100 keys in process
//   http-inproc <report.md> [keys] [batches]            the same over HTTP to an in-process Kestrel host of the online endpoint
//   http-url <report.md> <url> <api-key> [keys] [batches]  the same against a running Atelier server (creates the view, pushes rows)
var mode = args.Length > 0 ? args[0] : "all";
var output = args.Length > 1 ? args[1] : "features-bench.md";
int Arg(int index, int fallback) => args.Length > index ? int.Parse(args[index], System.Globalization.CultureInfo.InvariantCulture) : fallback;
const int BatchSize = 100;

await using var report = new StreamWriter(output, append: true) { AutoFlush = true };
switch (mode)
{
    case "cache":
        CacheHitRatio.Run(report, Arg(2, 1_000_000), Arg(3, 4_000_000));
        break;
    case "inproc":
        await OnlineBench.RunInProcessAsync(report, Arg(2, 100_000), Arg(3, 20_000), BatchSize);
        break;
    case "http-inproc":
        {
            var keys = Arg(2, 100_000);
            var batches = Arg(3, 20_000);
            using var env = new OnlineBench.Environment(keys + 10);
            await env.PopulateAsync(keys);
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();

            // The same handler body as the server's POST /api/v1/features/views/{name}/online, minus API-key authentication.
            app.MapPost("/api/v1/features/views/{name}/online", async (HttpContext context, string name) =>
            {
                var body = await FeatureApi.ReadBodyAsync<OnlineBody>(context.Request.Body, context.RequestAborted);
                var view = await env.Store.GetViewAsync("bench", name, body.Version, context.RequestAborted);
                return Results.Json(FeatureApi.ToResponse(view, await env.Store.GetOnlineAsync(view, body.Keys!, context.RequestAborted)), FeatureApi.Json);
            });
            await app.StartAsync();
            var url = app.Urls.First();
            var (latencies, seconds, bytes) = await OnlineBench.RunHttpAsync(url, null, keys, batches, BatchSize, populate: false);
            report.WriteLine($"| in-process Kestrel, online endpoint only (no auth middleware) | {keys:N0} | {latencies.Percentile(50):F0} us | {latencies.Percentile(90):F0} us | {latencies.Percentile(99):F0} us | {latencies.Percentile(99.9):F0} us | {latencies.Count / seconds:N0} | {bytes / latencies.Count / 1024.0:F1} KiB |");
            Console.Error.WriteLine($"http-inproc: {latencies.Summary()}");
            await app.StopAsync();
            break;
        }

    case "http-url":
        {
            var keys = Arg(4, 100_000);
            var batches = Arg(5, 20_000);
            var (latencies, seconds, bytes) = await OnlineBench.RunHttpAsync(args[2], args[3], keys, batches, BatchSize, populate: true);
            report.WriteLine($"| Atelier server, `AtelierServer.Build` with `MapFeatures()` (API-key auth, error mapping, metrics) | {keys:N0} | {latencies.Percentile(50):F0} us | {latencies.Percentile(90):F0} us | {latencies.Percentile(99):F0} us | {latencies.Percentile(99.9):F0} us | {latencies.Count / seconds:N0} | {bytes / latencies.Count / 1024.0:F1} KiB |");
            Console.Error.WriteLine($"http-url: {latencies.Summary()}");
            break;
        }

    default:
        Console.Error.WriteLine("modes: cache | inproc | http-inproc | http-url");
        return 2;
}

return 0;
