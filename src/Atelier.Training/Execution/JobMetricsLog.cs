using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using Atelier.Core;

namespace Atelier.Training.Execution;

/// <summary>One optimiser step of a job, as <c>GET /api/v1/jobs/{id}/metrics</c> shows it.</summary>
/// <param name="Step">Steps done, this one included.</param>
/// <param name="TrainLoss">The step's training loss.</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="GradNorm">The gradient norm before clipping.</param>
/// <param name="TrainedTokens">Tokens trained up to and including this step.</param>
/// <param name="TokensPerSecond">Training throughput of this step (its tokens over its wall time, data loading included).</param>
/// <param name="ElapsedSeconds">Training time since the job's first step, over every attempt.</param>
/// <param name="ValidLoss">Validation loss, at the steps where validation ran (a checkpoint's).</param>
/// <param name="ValidMeanTokenAccuracy">Validation next-token accuracy, where validation ran.</param>
/// <param name="CreatedAt">When the step ended, Unix seconds.</param>
public sealed record JobStepMetrics(
    long Step,
    double TrainLoss,
    double LearningRate,
    double GradNorm,
    long TrainedTokens,
    double TokensPerSecond,
    double ElapsedSeconds,
    double? ValidLoss,
    double? ValidMeanTokenAccuracy,
    long CreatedAt);

/// <summary>
/// Every step's metrics of every job, one append-only JSON-lines file per job on the node that
/// trains it (decision 0012). Metrics are figures about a job, not its data: they are not placed
/// through the guard (which would write an audit event per step) and are not made durable per
/// step: a crash may lose the last lines, and the steps after the checkpoint a job resumes from are
/// trained, and appended, again; a reader keeps the last row of each step.
/// </summary>
/// <param name="options">Where the files live (<see cref="FineTuningWorkOptions.MetricsDirectory"/>).</param>
public sealed class JobMetricsLog(FineTuningWorkOptions options)
{
    // Woken at each append to a job's log; a reader registers before it reads, so no append between
    // its read and its wait goes unnoticed.
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _appended = new(StringComparer.Ordinal);

    /// <summary>Appends one step's row to the job's log and wakes its readers.</summary>
    /// <param name="jobId">A job id from the catalog (never a caller's text: it names a file).</param>
    /// <param name="row">The step.</param>
    public void Append(string jobId, JobStepMetrics row)
    {
        ArgumentNullException.ThrowIfNull(row);
        Directory.CreateDirectory(options.MetricsDirectory);
        var line = JsonSerializer.SerializeToUtf8Bytes(row, AtelierJson.Options);
        using (var file = new FileStream(PathOf(jobId), FileMode.Append, FileAccess.Write, FileShare.Read))
        {
            // One write of the whole line: a concurrent reader sees it whole or not at all (it
            // ignores a last line without its newline).
            var buffer = new byte[line.Length + 1];
            line.CopyTo(buffer, 0);
            buffer[^1] = (byte)'\n';
            file.Write(buffer);
        }

        if (_appended.TryRemove(jobId, out var waiters))
        {
            waiters.TrySetResult();
        }
    }

    /// <summary>A task that completes at the next append to the job's log; take it before reading.</summary>
    public Task NextAppendAsync(string jobId) =>
        _appended.GetOrAdd(jobId, static _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    /// <summary>The job's steps after <paramref name="afterStep"/>, in order, the last row of each step (a resumed attempt trains some again).</summary>
    public async Task<IReadOnlyList<JobStepMetrics>> ReadAsync(string jobId, long afterStep, CancellationToken cancellationToken)
    {
        string text;
        try
        {
            await using var file = new FileStream(PathOf(jobId), FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 16 * 1024, useAsync: true);
            using var reader = new StreamReader(file, Encoding.UTF8);
            text = await reader.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (FileNotFoundException)
        {
            return [];
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }

        var rows = new SortedDictionary<long, JobStepMetrics>();
        var start = 0;
        for (var end = text.IndexOf('\n', start); end >= 0; start = end + 1, end = text.IndexOf('\n', start))
        {
            JobStepMetrics? row;
            try
            {
                row = JsonSerializer.Deserialize<JobStepMetrics>(text.AsSpan(start, end - start), AtelierJson.Options);
            }
            catch (JsonException)
            {
                // A line torn by a crash of the writer: the step is trained again on resume.
                continue;
            }

            if (row is not null && row.Step > afterStep)
            {
                rows[row.Step] = row;
            }
        }

        return [.. rows.Values];
    }

    private string PathOf(string jobId) => Path.Combine(options.MetricsDirectory, jobId + ".jsonl");
}
