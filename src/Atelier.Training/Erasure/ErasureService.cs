using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Atelier.Training.Checkpoints;
using Atelier.Training.Datasets;
using Atelier.Training.Lineage;
using Microsoft.Extensions.Logging;

namespace Atelier.Training.Erasure;

/// <summary>The artifact an erasure starts from.</summary>
/// <param name="Kind">Its kind (<see cref="LineageKinds"/>); erasures start from files.</param>
/// <param name="Id">Its id.</param>
public sealed record ErasureArtifact(string Kind, string Id);

/// <summary>What an erasure does to one artifact.</summary>
public sealed record ErasureStep
{
    /// <summary>The artifact's kind (<see cref="LineageKinds"/>).</summary>
    public required string Kind { get; init; }

    /// <summary>Its id.</summary>
    public required string Id { get; init; }

    /// <summary><see cref="ErasureActions.Delete"/>, <see cref="ErasureActions.Rebuild"/> or <see cref="ErasureActions.Taint"/>.</summary>
    public required string Action { get; init; }

    /// <summary>What the action means for this artifact, in words.</summary>
    public required string Detail { get; init; }

    /// <summary>For a rebuilt dataset version: the id of the new version, fixed when the plan is made so a re-run builds the same one.</summary>
    public string? RebuiltAs { get; init; }

    /// <summary>For a job: its id, when the step is one of its checkpoints.</summary>
    public string? JobId { get; init; }

    /// <summary>For a checkpoint: its step.</summary>
    public long? Step { get; init; }
}

/// <summary>The actions of an erasure plan.</summary>
public static class ErasureActions
{
    /// <summary>The bytes are deleted from every location.</summary>
    public const string Delete = "delete";

    /// <summary>A new dataset version is built without the erased file, then the old version's bytes are deleted.</summary>
    public const string Rebuild = "rebuild";

    /// <summary>A model trained on the erased data is marked tainted: kept (for its owner to retrain or delete) but not served without an override.</summary>
    public const string Taint = "taint";
}

/// <summary>
/// An erasure's plan: every artifact downstream of the erased one and what happens to it. Recorded
/// before anything is deleted, so an erasure that dies midway is run again from the same plan.
/// </summary>
public sealed record ErasurePlan
{
    /// <summary>The erasure's id; null in a dry run.</summary>
    public string? ErasureId { get; init; }

    /// <summary>The erased artifact.</summary>
    public required ErasureArtifact Artifact { get; init; }

    /// <summary>SHA-256 of its content, lower-case hex.</summary>
    public required string ContentSha256 { get; init; }

    /// <summary>Its size in bytes.</summary>
    public required long Bytes { get; init; }

    /// <summary>Its blob key (the same at every location).</summary>
    public required string BlobKey { get; init; }

    /// <summary>Every artifact the erasure touches, the erased one first, then in the order they are handled.</summary>
    public required IReadOnlyList<ErasureStep> Steps { get; init; }
}

/// <summary>
/// Erases an uploaded file and what was made from it (GDPR article 17): dataset versions built from
/// it are rebuilt without it as new versions and their old bytes deleted, the data jobs prepared from
/// it and their checkpoints are deleted, models trained on it are marked tainted (and not served
/// without an override), and the file's bytes are deleted from every location. Every deletion goes
/// through the placement guard (so it is audited), and every location is asked afterwards whether
/// each deleted blob is still there. The result is a signed <see cref="ErasureReport"/>.
/// </summary>
/// <remarks>
/// Crash safety: the plan (with the ids of the versions to rebuild) is recorded before the first
/// step, every step is idempotent (a rebuild that exists is waited for, not started again; deleting
/// what is gone does nothing; a taint is kept once), and the erasure is marked done only after
/// verification. An erasure that dies midway is continued by asking for it again (the same artifact);
/// until then it stays <c>running</c>, and the file's row is the last thing removed before verification.
/// Erasures run one at a time.
/// </remarks>
public sealed partial class ErasureService(
    LineageGraphService lineage,
    IFileRepository files,
    IDatasetRepository datasets,
    IJobRepository jobs,
    IErasureRepository erasures,
    DatasetBuildService builds,
    CheckpointStore checkpoints,
    PlacementGuard guard,
    AuditHeadSigner signer,
    TimeProvider clock,
    ILogger<ErasureService> logger)
{
    private static readonly string[] FinalJobStatuses = ["SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"];

    // What a job prepares from its inputs under job/<id>/ (FineTuningWork's validation parts); the
    // adapter is the model's, which is tainted, not deleted.
    private static readonly string[] JobDataParts = ["train/", "valid/", "train-report/"];

    private readonly SemaphoreSlim _oneAtATime = new(1, 1);

    /// <summary>The plan of erasing <paramref name="artifact"/> of the workspace; changes nothing.</summary>
    /// <exception cref="ValidationFailedException">The kind is not one an erasure starts from (422).</exception>
    /// <exception cref="NotFoundException">The workspace has no such artifact.</exception>
    /// <exception cref="ConflictException">A dataset build or a job that uses it is still running.</exception>
    public async Task<ErasurePlan> PlanAsync(string workspaceId, ErasureArtifact artifact, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        CheckKind(artifact.Kind);
        var file = await files.GetAsync(workspaceId, artifact.Id, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("file", artifact.Id);
        var whole = await lineage.LoadAsync(workspaceId, [], cancellationToken).ConfigureAwait(false);
        var start = LineageGraphService.Find(whole, LineageKinds.File, file.Id) ?? throw new NotFoundException("file", file.Id);
        var (reached, _) = whole.Walk(start, LineageDirection.Downstream, LineageGraphService.MaxDepth);

        var steps = new List<ErasureStep>
        {
            new() { Kind = LineageKinds.File, Id = file.Id, Action = ErasureActions.Delete, Detail = "the file's bytes are deleted from every location and its row from the catalog" },
        };
        var ordered = reached.Skip(1).OrderBy(n => n.CreatedAt ?? 0).ThenBy(n => n.Id, StringComparer.Ordinal).ToList();

        // Dataset versions, oldest first, so a version derived from another (semantic dedup) sees
        // whether its source was rebuilt or deleted.
        var rebuilt = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var node in ordered.Where(n => n.Kind == LineageKinds.Dataset))
        {
            var dataset = await datasets.GetAsync(workspaceId, node.Id, cancellationToken).ConfigureAwait(false);
            if (dataset is null)
            {
                continue;
            }

            if (dataset.Status is "queued" or "running")
            {
                throw new ConflictException($"Dataset '{dataset.Id}' is built from the file and its build is {dataset.Status}; wait for it to finish (or delete it), then erase.");
            }

            var request = Rewrite(dataset.RequestJson, file.Id, rebuilt);
            var keep = dataset.Status == "succeeded" && request is not null;
            var newId = keep ? "ds-" + Guid.NewGuid().ToString() : null;
            rebuilt[dataset.Id] = newId;
            steps.Add(keep
                ? new() { Kind = LineageKinds.Dataset, Id = dataset.Id, Action = ErasureActions.Rebuild, RebuiltAs = newId, Detail = $"rebuilt without the file as a new version '{newId}', then this version's bytes are deleted" }
                : new() { Kind = LineageKinds.Dataset, Id = dataset.Id, Action = ErasureActions.Delete, Detail = dataset.Status == "succeeded" ? "nothing is left to build it from without the file: its bytes are deleted" : $"its build {dataset.Status}: whatever bytes it left are deleted" });
        }

        foreach (var node in ordered.Where(n => n.Kind == LineageKinds.Job))
        {
            if (!FinalJobStatuses.Contains(node.Status, StringComparer.Ordinal))
            {
                throw new ConflictException($"Fine-tuning job '{node.Id}' uses the file and is {node.Status}; cancel it (POST /v1/fine_tuning/jobs/{node.Id}/cancel) or let it finish, then erase.");
            }

            steps.Add(new() { Kind = LineageKinds.Job, Id = node.Id, Action = ErasureActions.Delete, Detail = "the training data it prepared from the file (job/<id>/train, valid, train-report) is deleted; the job's record stays" });
            foreach (var checkpoint in await jobs.CheckpointsAsync(node.Id, cancellationToken).ConfigureAwait(false))
            {
                if (checkpoint.Retained)
                {
                    steps.Add(new()
                    {
                        Kind = LineageKinds.Checkpoint,
                        Id = checkpoint.CheckpointId,
                        JobId = node.Id,
                        Step = checkpoint.StepNumber,
                        Action = ErasureActions.Delete,
                        Detail = "a training state learned from the file, which a restore would train on further: deleted",
                    });
                }
            }
        }

        foreach (var node in ordered.Where(n => n.Kind == LineageKinds.Model))
        {
            steps.Add(new()
            {
                Kind = LineageKinds.Model,
                Id = node.Id,
                Action = ErasureActions.Taint,
                Detail = "trained on the file (directly or through a dataset): marked tainted and not served without an override; retrain it on the rebuilt data, or delete it",
            });
        }

        return new ErasurePlan
        {
            Artifact = new ErasureArtifact(LineageKinds.File, file.Id),
            ContentSha256 = file.Signature,
            Bytes = file.Bytes,
            BlobKey = file.BlobKey,
            Steps = steps,
        };
    }

    /// <summary>
    /// Runs the erasure of <paramref name="artifact"/> to its end and returns its signed report: a new
    /// one, or the one left unfinished for the same artifact (continued from its recorded plan).
    /// </summary>
    public async Task<JsonObject> ExecuteAsync(string workspaceId, string workspaceName, ErasureArtifact artifact, string actor, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        CheckKind(artifact.Kind);
        await _oneAtATime.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var record = await erasures.FindUnfinishedAsync(workspaceId, artifact.Kind, artifact.Id, cancellationToken).ConfigureAwait(false);
            ErasurePlan plan;
            if (record is null)
            {
                plan = await PlanAsync(workspaceId, artifact, cancellationToken).ConfigureAwait(false) with { ErasureId = "er-" + Guid.NewGuid().ToString() };
                record = new ErasureRecord
                {
                    Id = plan.ErasureId!,
                    WorkspaceId = workspaceId,
                    ArtifactKind = artifact.Kind,
                    ArtifactId = artifact.Id,
                    ContentSha256 = plan.ContentSha256,
                    Status = "running",
                    PlanJson = JsonSerializer.Serialize(plan, AtelierJson.Options),
                    CreatedAt = clock.GetUtcNow().ToUnixTimeSeconds(),
                    CreatedBy = actor,
                };
                await erasures.InsertAsync(record, cancellationToken).ConfigureAwait(false);
                await AuditAsync("erasure_started", record, actor, $"plan: {Summary(plan)}").ConfigureAwait(false);
            }
            else
            {
                plan = JsonSerializer.Deserialize<ErasurePlan>(record.PlanJson, AtelierJson.Options)!;
                LogResumed(logger, record.Id);
            }

            // From here on the erasure runs to its end even if the caller goes away: a half-done
            // erasure is continued only when someone asks again.
            var outcomes = await RunAsync(record, plan, actor).ConfigureAwait(false);
            var verification = await VerifyAsync(plan).ConfigureAwait(false);
            var present = verification.Where(v => v.Status != "absent").ToList();
            if (present.Count > 0)
            {
                throw new StorageUnavailableException(
                    $"Erasure '{record.Id}' deleted everything it planned, but {present.Count} location check(s) still find bytes ({string.Join(", ", present.Take(5).Select(p => $"{p.Kind} '{p.Id}' at {p.Location}"))}); it stays running: ask again to retry.");
            }

            var finished = clock.GetUtcNow();
            var body = new JsonObject
            {
                ["object"] = "erasure_report",
                ["erasure_id"] = record.Id,
                ["workspace"] = workspaceName,
                ["artifact"] = new JsonObject { ["kind"] = plan.Artifact.Kind, ["id"] = plan.Artifact.Id },
                ["content_sha256"] = plan.ContentSha256,
                ["bytes"] = plan.Bytes,
                ["actor"] = record.CreatedBy,
                ["started_at"] = DateTimeOffset.FromUnixTimeSeconds(record.CreatedAt).ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                ["finished_at"] = finished.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                ["plan"] = JsonSerializer.SerializeToNode(plan.Steps, AtelierJson.Options),
                ["outcomes"] = JsonSerializer.SerializeToNode(outcomes, AtelierJson.Options),
                ["verification"] = JsonSerializer.SerializeToNode(verification, AtelierJson.Options),
            };
            var report = ErasureReport.Sign(body, signer);
            await erasures.FinishAsync(record.Id, report.ToJsonString(), finished.ToUnixTimeSeconds(), CancellationToken.None).ConfigureAwait(false);
            await AuditAsync("erasure", record, actor, $"done: {Summary(plan)}; {verification.Count} location checks absent; report signed by key {signer.KeyId}").ConfigureAwait(false);
            return report;
        }
        finally
        {
            _oneAtATime.Release();
        }
    }

    /// <summary>The erasure of the workspace: its signed report once done, else its recorded plan and status.</summary>
    public async Task<JsonObject> GetAsync(string workspaceId, string erasureId, CancellationToken cancellationToken)
    {
        var record = await erasures.GetAsync(workspaceId, erasureId, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("erasure", erasureId);
        if (record.ReportJson is not null)
        {
            return JsonNode.Parse(record.ReportJson)!.AsObject();
        }

        return new JsonObject
        {
            ["object"] = "erasure",
            ["erasure_id"] = record.Id,
            ["status"] = record.Status,
            ["artifact"] = new JsonObject { ["kind"] = record.ArtifactKind, ["id"] = record.ArtifactId },
            ["content_sha256"] = record.ContentSha256,
            ["plan"] = JsonNode.Parse(record.PlanJson)?["steps"]?.DeepClone(),
        };
    }

    private static void CheckKind(string kind)
    {
        if (kind == LineageKinds.File)
        {
            return;
        }

        var message = LineageKinds.Queryable.Contains(kind, StringComparer.Ordinal)
            ? $"An erasure starts from the uploaded file that holds the data ('file'), not from a {kind}: erasing the file handles every {kind} derived from it."
            : $"Unknown artifact kind '{kind}'; an erasure starts from a 'file'.";
        throw new ValidationFailedException(message, [new Problem(message, Field: "artifact.kind")], 1, "invalid_request");
    }

    // The dataset's request without the file, and with its source datasets replaced by their
    // rebuilt versions; null when nothing is left to build from.
    private static string? Rewrite(string requestJson, string fileId, Dictionary<string, string?> rebuilt)
    {
        var request = JsonNode.Parse(requestJson)!.AsObject();
        foreach (var field in (string[])["training_files", "validation_files", "eval_files"])
        {
            if (request[field] is JsonArray list)
            {
                var kept = list.Where(v => v is null || v.GetValueKind() != JsonValueKind.String || (string?)v != fileId).Select(v => v?.DeepClone()).ToArray();
                request[field] = new JsonArray(kept);
            }
        }

        foreach (var field in (string[])["source_dataset", "eval_dataset"])
        {
            if (request[field]?.GetValueKind() == JsonValueKind.String && rebuilt.TryGetValue((string)request[field]!, out var replacement))
            {
                if (replacement is null)
                {
                    return null;
                }

                request[field] = replacement;
            }
        }

        var hasSource = request["source_dataset"]?.GetValueKind() == JsonValueKind.String;
        return !hasSource && request["training_files"] is JsonArray { Count: 0 } ? null : request.ToJsonString();
    }

    private async Task<List<ErasureOutcome>> RunAsync(ErasureRecord record, ErasurePlan plan, string actor)
    {
        var cancel = CancellationToken.None;
        var outcomes = new List<ErasureOutcome>();
        var erasureActor = $"{actor} (erasure {record.Id})";

        // 1. New dataset versions first: they need the other inputs, not the erased file.
        foreach (var step in plan.Steps.Where(s => s is { Kind: LineageKinds.Dataset, Action: ErasureActions.Rebuild }))
        {
            outcomes.Add(await RebuildAsync(record, step, plan).ConfigureAwait(false));
        }

        // 2. Models trained on it are tainted before their training data goes.
        foreach (var step in plan.Steps.Where(s => s.Kind == LineageKinds.Model))
        {
            await erasures.TaintAsync(new ModelTaint(step.Id, record.Id, clock.GetUtcNow().ToUnixTimeSeconds()), cancel).ConfigureAwait(false);
            outcomes.Add(new ErasureOutcome(step.Kind, step.Id, step.Action, "tainted"));
        }

        // 3. What jobs prepared from it, and their checkpoints.
        foreach (var step in plan.Steps.Where(s => s.Kind == LineageKinds.Job))
        {
            var deleted = 0;
            foreach (var part in JobDataParts)
            {
                deleted += await DeletePrefixAsync(new ArtifactRef("job", step.Id, record.WorkspaceId), $"job/{step.Id}/{part}", erasureActor).ConfigureAwait(false);
            }

            outcomes.Add(new ErasureOutcome(step.Kind, step.Id, step.Action, $"deleted {deleted} blob(s) of prepared data"));
        }

        foreach (var step in plan.Steps.Where(s => s.Kind == LineageKinds.Checkpoint))
        {
            var existed = await checkpoints.DeleteAsync(step.JobId!, step.Step!.Value, cancel).ConfigureAwait(false);
            await jobs.MarkCheckpointsDeletedAsync(step.JobId!, [step.Step.Value], cancel).ConfigureAwait(false);
            outcomes.Add(new ErasureOutcome(step.Kind, step.Id, step.Action, existed ? "deleted" : "already gone"));
        }

        // 4. The old dataset versions' bytes.
        foreach (var step in plan.Steps.Where(s => s.Kind == LineageKinds.Dataset))
        {
            var deleted = await DeletePrefixAsync(new ArtifactRef("dataset", step.Id, record.WorkspaceId), $"dataset/{step.Id}/", erasureActor).ConfigureAwait(false);
            var note = step.RebuiltAs is null ? $"erased by {record.Id}" : $"erased by {record.Id}; rebuilt without the erased file as '{step.RebuiltAs}'";
            await datasets.FinishAsync(step.Id, "failed", null, note, cancel).ConfigureAwait(false);
            if (step.Action == ErasureActions.Delete)
            {
                outcomes.Add(new ErasureOutcome(step.Kind, step.Id, step.Action, $"deleted {deleted} blob(s)"));
            }
            else
            {
                var index = outcomes.FindIndex(o => o.Kind == step.Kind && o.Id == step.Id);
                outcomes[index] = outcomes[index] with { Outcome = outcomes[index].Outcome + $"; the old version's {deleted} blob(s) deleted" };
            }
        }

        // 5. The file itself, at every location (a copy anywhere would survive the erasure), then its row.
        var fileArtifact = new ArtifactRef("file", plan.Artifact.Id, record.WorkspaceId);
        var removed = 0;
        foreach (var location in guard.Locations.All)
        {
            if (await guard.GetLengthAsync(location.Id, plan.BlobKey, cancel).ConfigureAwait(false) is not null)
            {
                await guard.DeleteAsync(fileArtifact, location.Id, erasureActor, plan.BlobKey, cancel).ConfigureAwait(false);
                removed++;
            }
        }

        await erasures.DeleteErasedFileAsync(record.WorkspaceId, plan.Artifact.Id, cancel).ConfigureAwait(false);
        outcomes.Insert(0, new ErasureOutcome(LineageKinds.File, plan.Artifact.Id, ErasureActions.Delete, $"deleted at {removed} location(s); catalog row removed"));
        return outcomes;
    }

    private async Task<ErasureOutcome> RebuildAsync(ErasureRecord record, ErasureStep step, ErasurePlan plan)
    {
        var cancel = CancellationToken.None;
        var newId = step.RebuiltAs!;
        var existing = await datasets.GetForBuilderAsync(newId, cancel).ConfigureAwait(false);
        if (existing is null)
        {
            var old = await datasets.GetForBuilderAsync(step.Id, cancel).ConfigureAwait(false)
                ?? throw new InvalidOperationException($"Dataset '{step.Id}' of erasure '{record.Id}' is gone from the catalog.");
            var rebuiltIds = plan.Steps.Where(s => s.RebuiltAs is not null).ToDictionary(s => s.Id, s => s.RebuiltAs, StringComparer.Ordinal);
            var request = Rewrite(old.RequestJson, plan.Artifact.Id, rebuiltIds)
                ?? throw new InvalidOperationException($"Dataset '{step.Id}' has nothing left to rebuild from.");

            // The old version's policy and location: at least as strict as what is left of its inputs.
            await datasets.InsertAsync(
                new DatasetRecord
                {
                    Id = newId,
                    WorkspaceId = old.WorkspaceId,
                    Name = old.Name,
                    Status = "queued",
                    RequestJson = request,
                    Policy = old.Policy,
                    LocationId = old.LocationId,
                    CreatedAt = clock.GetUtcNow().ToUnixTimeSeconds(),
                    CreatedBy = record.CreatedBy,
                },
                cancel).ConfigureAwait(false);
            builds.Enqueue(newId);
        }
        else if (existing.Status is "queued" or "running")
        {
            // Queued again in case this process never queued it (a restart queues unfinished builds too; a second queue entry finds it done).
            builds.Enqueue(newId);
        }

        DatasetRecord? built;
        while ((built = await datasets.GetForBuilderAsync(newId, cancel).ConfigureAwait(false)) is { Status: "queued" or "running" })
        {
            await Task.Delay(TimeSpan.FromMilliseconds(100), clock, cancel).ConfigureAwait(false);
        }

        return built?.Status == "succeeded"
            ? new ErasureOutcome(step.Kind, step.Id, step.Action, $"rebuilt as '{newId}'")
            : new ErasureOutcome(step.Kind, step.Id, step.Action, $"the rebuild '{newId}' {built?.Status ?? "vanished"}: {built?.Error}");
    }

    // Lists first, then deletes: the listing does not run over keys being removed.
    private async Task<int> DeletePrefixAsync(ArtifactRef artifact, string prefix, string actor)
    {
        var deleted = 0;
        foreach (var location in guard.Locations.All)
        {
            var keys = new List<string>();
            await foreach (var key in guard.Locations.ListKeysAsync(location.Id, prefix, CancellationToken.None).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            foreach (var key in keys)
            {
                await guard.DeleteAsync(artifact, location.Id, actor, key, CancellationToken.None).ConfigureAwait(false);
                deleted++;
            }
        }

        return deleted;
    }

    // Every location is asked for every blob the erasure deleted: the file's key, each old dataset
    // version's and each job's prefixes, each job's checkpoint manifests.
    private async Task<List<ErasureCheck>> VerifyAsync(ErasurePlan plan)
    {
        var checks = new List<ErasureCheck>();
        foreach (var location in guard.Locations.All)
        {
            var length = await guard.GetLengthAsync(location.Id, plan.BlobKey, CancellationToken.None).ConfigureAwait(false);
            checks.Add(new ErasureCheck(LineageKinds.File, plan.Artifact.Id, location.Id, plan.BlobKey, length is null ? "absent" : "present"));
            foreach (var step in plan.Steps)
            {
                IEnumerable<string> prefixes = step.Kind switch
                {
                    LineageKinds.Dataset => [$"dataset/{step.Id}/"],
                    LineageKinds.Job => JobDataParts.Select(p => $"job/{step.Id}/{p}"),
                    LineageKinds.Checkpoint => [CheckpointManifest.KeyOf(step.JobId!, step.Step!.Value)],
                    _ => [],
                };
                foreach (var prefix in prefixes)
                {
                    var any = false;
                    await foreach (var _ in guard.Locations.ListKeysAsync(location.Id, prefix, CancellationToken.None).ConfigureAwait(false))
                    {
                        any = true;
                        break;
                    }

                    checks.Add(new ErasureCheck(step.Kind, step.Id, location.Id, prefix, any ? "present" : "absent"));
                }
            }
        }

        return checks;
    }

    private async Task AuditAsync(string type, ErasureRecord record, string actor, string detail) =>
        await guard.Audit.AppendAsync(
            new AuditEvent
            {
                Type = type,
                Workspace = record.WorkspaceId,
                Actor = actor,
                ArtifactKind = record.ArtifactKind,
                ArtifactId = record.ArtifactId,
                Sha256 = record.ContentSha256,
                Detail = $"erasure {record.Id}; {detail}",
            },
            CancellationToken.None).ConfigureAwait(false);

    private static string Summary(ErasurePlan plan) =>
        string.Join(", ", plan.Steps.GroupBy(s => s.Action).Select(g => $"{g.Count()} {g.Key}"));

    [LoggerMessage(Level = LogLevel.Information, Message = "Erasure {ErasureId} is continued from its recorded plan")]
    private static partial void LogResumed(ILogger logger, string erasureId);
}

/// <summary>What became of one artifact of an erasure.</summary>
/// <param name="Kind">Its kind.</param>
/// <param name="Id">Its id.</param>
/// <param name="Action">The planned action.</param>
/// <param name="Outcome">What was done, in words.</param>
public sealed record ErasureOutcome(string Kind, string Id, string Action, string Outcome);

/// <summary>One location's answer about one deleted blob (or prefix of blobs).</summary>
/// <param name="Kind">The artifact's kind.</param>
/// <param name="Id">Its id.</param>
/// <param name="Location">The location asked.</param>
/// <param name="Key">The blob key or prefix asked for.</param>
/// <param name="Status"><c>absent</c>, or <c>present</c> when bytes are still there.</param>
public sealed record ErasureCheck(string Kind, string Id, string Location, string Key, string Status);
