using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;

namespace Atelier.Server.Tests;

/// <summary>What an operator sees of a running server: its log, a job's per-step metrics, the Prometheus gauges.</summary>
[Trait("Category", "Slow")]
[Collection(nameof(AloneInTheProcess))]
public sealed class OperatorSurfaceTests
{
    [Fact]
    public async Task ScriptedSession_LogsOneLinePerLifecycleEventAndNonePerRequest_AndStreamsEveryStepLive()
    {
        var log = new LevelledLogProvider();
        await using var server = await TestServer.StartAsync(logging: builder => builder.SetMinimumLevel(LogLevel.Information).AddProvider(log));
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines(4));

        using (var built = await client.PostAsJsonAsync("/api/v1/datasets", new { training_files = new[] { train }, seq_len = 64 }))
        {
            var created = JsonNode.Parse(await built.Content.ReadAsStringAsync())!;
            Assert.True(built.StatusCode == HttpStatusCode.Accepted, created.ToJsonString());
            var dataset = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
            Assert.Equal("succeeded", dataset["status"]!.GetValue<string>());
        }

        // Created without starting, so the stream below opens before any step exists: every step
        // it delivers was trained after it opened.
        var (status, job) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            validation_files = new[] { valid },
            hyperparameters = new { training_steps = 6, learning_rate = 3e-3, seq_len = 64 },
            auto_start = false,
        });
        Assert.True(status == HttpStatusCode.OK, job.ToJsonString());
        var jobId = job["id"]!.GetValue<string>();
        await JobsApiTests.WaitAsync(client, jobId, "VALIDATED");
        var before = JsonNode.Parse(await client.GetStringAsync($"/api/v1/jobs/{jobId}/metrics"))!;
        Assert.Empty(before["data"]!.AsArray());

        using var streaming = new HttpClient { BaseAddress = new Uri(server.BaseUrl), Timeout = TimeSpan.FromMinutes(4) };
        streaming.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", server.AdminKey);
        using var stream = await streaming.GetAsync($"/api/v1/jobs/{jobId}/metrics/stream", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", stream.Content.Headers.ContentType?.MediaType);
        (status, _) = await JobsApiTests.PostAsync(client, $"/v1/fine_tuning/jobs/{jobId}/start", null);
        Assert.Equal(HttpStatusCode.OK, status);

        var events = new List<(string Event, JsonNode Data)>();
        using (var reader = new StreamReader(await stream.Content.ReadAsStreamAsync()))
        {
            string? name = null;
            while (await reader.ReadLineAsync() is { } line)
            {
                if (line.StartsWith("event: ", StringComparison.Ordinal))
                {
                    name = line["event: ".Length..];
                }
                else if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    events.Add((name!, JsonNode.Parse(line["data: ".Length..])!));
                }
            }
        }

        // One event per step, in order, then the end with the job's final status.
        Assert.Equal([1L, 2, 3, 4, 5, 6], events.Where(e => e.Event == "step").Select(e => e.Data["step"]!.GetValue<long>()));
        Assert.Equal("end", events[^1].Event);
        Assert.Equal("SUCCESS", events[^1].Data["status"]!.GetValue<string>());

        // The whole list: one row per step, each with its figures; validation where it ran.
        var metrics = JsonNode.Parse(await client.GetStringAsync($"/api/v1/jobs/{jobId}/metrics"))!;
        var rows = metrics["data"]!.AsArray();
        Assert.Equal(6, rows.Count);
        foreach (var row in rows)
        {
            Assert.True(row!["train_loss"]!.GetValue<double>() > 0, row.ToJsonString());
            Assert.True(row["learning_rate"]!.GetValue<double>() > 0, row.ToJsonString());
            Assert.True(row["tokens_per_second"]!.GetValue<double>() > 0, row.ToJsonString());
            Assert.Equal(row["step"]!.GetValue<long>() * 64, row["trained_tokens"]!.GetValue<long>());
        }

        Assert.True(rows[^1]!["valid_loss"]!.GetValue<double>() > 0, rows[^1]!.ToJsonString());
        Assert.True(rows[^1]!["elapsed_seconds"]!.GetValue<double>() >= rows[0]!["elapsed_seconds"]!.GetValue<double>());

        var finished = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!;
        var model = finished["fine_tuned_model"]!.GetValue<string>();
        var datasetId = JsonNode.Parse(await client.GetStringAsync("/api/v1/datasets"))!["data"]![0]!["id"]!.GetValue<string>();

        // The model is registered just before the job's SUCCESS is written; the log line of the
        // move can follow the client's read by a moment.
        await WaitForAsync(() => log.Lines().Any(l => l.Message.Contains($"Job {jobId} is SUCCESS", StringComparison.Ordinal)));
        var lines = log.Lines();
        var info = lines.Where(l => l.Level >= LogLevel.Information).ToList();
        string Show() => string.Join('\n', info.Select(l => $"{l.Level} {l.Category}: {l.Message}"));

        // Quiet: none per request (about 40 were made), none of the frameworks' below Warning.
        Assert.DoesNotContain(lines, l => l.Category.StartsWith("Atelier.Server.Hosting.RequestLog", StringComparison.Ordinal));
        Assert.DoesNotContain(info, l => l.Level < LogLevel.Warning && (l.Category.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) || l.Category.StartsWith("Orleans", StringComparison.Ordinal)));
        Assert.True(info.Count <= 30, $"{info.Count} lines:\n{Show()}");

        // Every event of the session's life, once, with its id.
        Assert.Single(info, l => l.Message.Contains($"Stored file {train}", StringComparison.Ordinal));
        Assert.Single(info, l => l.Message.Contains($"Dataset {datasetId} built", StringComparison.Ordinal));
        foreach (var state in new[] { "VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "SUCCESS" })
        {
            Assert.True(info.Count(l => l.Message == $"Job {jobId} is {state}") == 1, $"'{state}' once:\n{Show()}");
        }

        Assert.Equal(6, info.Count(l => l.Message.StartsWith($"Job {jobId} checkpointed at step ", StringComparison.Ordinal)));
        Assert.Single(info, l => l.Message.StartsWith($"Model {model} registered, fine-tuned by job {jobId}", StringComparison.Ordinal));

        // The platform's gauges, read at the scrape: nothing queued or running now, one slot, bytes stored.
        using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        var scrape = (await anonymous.GetStringAsync("/metrics")).Split('\n');
        double Gauge(string name, string? label = null)
        {
            var line = Assert.Single(scrape, l => (l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal)) && (label is null || l.Contains(label, StringComparison.Ordinal)));
            return double.Parse(line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture);
        }

        var shown = string.Join('\n', scrape.Where(l => l.StartsWith("atelier_", StringComparison.Ordinal)));
        Assert.True(Gauge("atelier_job_queue_length") == 0, shown);
        Assert.True(Gauge("atelier_training_slots", "state=\"total\"") == 1, shown);
        Assert.True(Gauge("atelier_training_slots", "state=\"busy\"") == 0, shown);
        Assert.True(Gauge("atelier_jobs", "status=\"RUNNING\"") == 0, shown);
        Assert.True(Gauge("atelier_dataset_builds", "status=\"running\"") == 0, shown);
        Assert.True(Gauge("atelier_location_bytes", "location=\"local\"") > 0, shown);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the condition did not hold within 60 s");
            await Task.Delay(20);
        }
    }

    /// <summary>Keeps every log entry with its level and category.</summary>
    private sealed class LevelledLogProvider : ILoggerProvider
    {
        private readonly System.Collections.Concurrent.ConcurrentQueue<(LogLevel Level, string Category, string Message)> _lines = new();

        public List<(LogLevel Level, string Category, string Message)> Lines() => [.. _lines];

        public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

        public void Dispose()
        {
        }

        private sealed class Logger(string category, System.Collections.Concurrent.ConcurrentQueue<(LogLevel, string, string)> lines) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
                lines.Enqueue((logLevel, category, formatter(state, exception)));
        }
    }
}

/// <summary>
/// Tests that read process-wide state, such as the Prometheus scrape, which shows the meters of every
/// server alive in the test process (each test's server has its own gauges of the same name): they run
/// alone, after the parallel tests, so the scrape holds only their own server's series.
/// </summary>
[CollectionDefinition(nameof(AloneInTheProcess), DisableParallelization = true)]
public sealed class AloneInTheProcess;
