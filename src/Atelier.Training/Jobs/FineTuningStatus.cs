namespace Atelier.Training.Jobs;

/// <summary>Mistral's job statuses and which transitions Atelier makes between them.</summary>
public static class FineTuningStatus
{
    /// <summary>Created and waiting for validation, or started and waiting for a slot.</summary>
    public const string Queued = "QUEUED";

    /// <summary>Its files are being tokenised and checked.</summary>
    public const string Validating = "VALIDATING";

    /// <summary>Validated; waits for <c>/start</c> when not auto-started.</summary>
    public const string Validated = "VALIDATED";

    /// <summary>Training on a slot.</summary>
    public const string Running = "RUNNING";

    /// <summary>Trained; its model is registered.</summary>
    public const string Success = "SUCCESS";

    /// <summary>Training failed.</summary>
    public const string Failed = "FAILED";

    /// <summary>Its data did not pass validation.</summary>
    public const string FailedValidation = "FAILED_VALIDATION";

    /// <summary>A cancel was asked for while it was running.</summary>
    public const string CancellationRequested = "CANCELLATION_REQUESTED";

    /// <summary>Cancelled.</summary>
    public const string Cancelled = "CANCELLED";

    /// <summary>Statuses a job never leaves.</summary>
    public static IReadOnlyList<string> Final { get; } = [Success, Failed, FailedValidation, Cancelled];

    /// <summary>Statuses a cancel ends at once (no trainer is running).</summary>
    public static IReadOnlyList<string> CancellableAtOnce { get; } = [Queued, Validating, Validated];

    /// <summary>Whether <paramref name="status"/> is final.</summary>
    public static bool IsFinal(string status) => Final.Contains(status);

    /// <summary>Whether <paramref name="status"/> is one of Mistral's.</summary>
    public static bool IsKnown(string status) =>
        status is Queued or Validating or Validated or Running or Success or Failed or FailedValidation or CancellationRequested or Cancelled or "STARTED";
}
