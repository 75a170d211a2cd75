using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Server.Hosting;
using Atelier.Training.Execution;
using Atelier.Training.Jobs;

namespace Atelier.Server.Jobs;

/// <summary>A job's per-step metrics.</summary>
/// <param name="Data">The steps, in order.</param>
/// <param name="Object">Always <c>list</c>.</param>
/// <param name="JobId">The job.</param>
/// <param name="Status">The job's status when they were read.</param>
public sealed record JobMetricsList(IReadOnlyList<JobStepMetrics> Data, string Object, string JobId, string Status);

/// <summary><c>GET /api/v1/jobs/{id}/metrics</c>: every step's loss, learning rate, throughput and validation figures, whole or streamed.</summary>
public static class JobMetricsEndpoints
{
    // A job's status is read again at least this often while streaming: its end writes no metrics row.
    private static readonly TimeSpan StatusPoll = TimeSpan.FromSeconds(1);

    /// <summary>Maps the metrics endpoints.</summary>
    public static void MapJobMetrics(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1/jobs").WithTags("Fine-tuning");
        api.MapGet("/{jobId}/metrics", async (HttpContext context, string jobId, IJobRepository jobs, JobMetricsLog metrics) =>
        {
            var job = await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false);
            if (bool.TryParse(context.Request.Query["stream"], out var stream) && stream)
            {
                await StreamAsync(context, job, jobs, metrics).ConfigureAwait(false);
                return Results.Empty;
            }

            var rows = await metrics.ReadAsync(job.Id, 0, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JobMetricsList(rows, "list", job.Id, job.Status), AtelierJson.Options);
        })
            .WithSummary("Every trained step of a job: train loss, learning rate, gradient norm, tokens, tokens/s, elapsed time, and validation loss and accuracy at the steps validation ran; ?stream=true streams them (as /metrics/stream).")
            .Produces<JobMetricsList>(StatusCodes.Status200OK, "application/json", "text/event-stream").WithName("getJobMetrics")
            .Query("stream", typeof(bool), "Stream them as server-sent events (as /metrics/stream).");
        api.MapGet("/{jobId}/metrics/stream", async (HttpContext context, string jobId, IJobRepository jobs, JobMetricsLog metrics) =>
        {
            var job = await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false);
            await StreamAsync(context, job, jobs, metrics).ConfigureAwait(false);
        })
            .WithSummary("Server-sent events: each step already trained, then each new one as it is trained (event 'step'), and one 'end' event with the job's final status.")
            .ProducesEvents().WithName("streamJobMetrics");
    }

    /// <summary>
    /// Sends the steps trained so far, then each new one as it comes, until the job is in a final
    /// status and every step it wrote has been sent; then an <c>end</c> event with that status.
    /// </summary>
    private static async Task StreamAsync(HttpContext context, JobRecord job, IJobRepository jobs, JobMetricsLog metrics)
    {
        var cancel = context.RequestAborted;
        var response = context.Response;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        await response.Body.FlushAsync(cancel).ConfigureAwait(false);

        var sent = 0L;
        var status = job.Status;
        while (!cancel.IsCancellationRequested)
        {
            // Taken before reading: a row appended after the read wakes the wait below.
            var appended = metrics.NextAppendAsync(job.Id);

            // The status before the rows: a job seen final has written all its rows by then.
            status = (await jobs.GetByIdAsync(job.Id, cancel).ConfigureAwait(false))?.Status ?? FineTuningStatus.Cancelled;
            foreach (var row in await metrics.ReadAsync(job.Id, sent, cancel).ConfigureAwait(false))
            {
                await response.WriteAsync("event: step\ndata: " + JsonSerializer.Serialize(row, AtelierJson.Options) + "\n\n", cancel).ConfigureAwait(false);
                sent = row.Step;
            }

            await response.Body.FlushAsync(cancel).ConfigureAwait(false);
            if (FineTuningStatus.IsFinal(status))
            {
                break;
            }

            try
            {
                await appended.WaitAsync(StatusPoll, cancel).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // No step for a while: read the status again.
            }
        }

        if (!cancel.IsCancellationRequested)
        {
            await response.WriteAsync("event: end\ndata: " + JsonSerializer.Serialize(new { status }, AtelierJson.Options) + "\n\n", cancel).ConfigureAwait(false);
            await response.Body.FlushAsync(cancel).ConfigureAwait(false);
        }
    }
}
