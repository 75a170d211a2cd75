namespace Atelier.Core.Errors;

/// <summary>
/// The base of every user-facing error. Each category is one subclass, mapped exactly once at the
/// API edge to its wire shape (Mistral's error JSON on <c>/v1</c>, RFC 9457 problem details on
/// <c>/api/v1</c>) and to an HTTP status.
/// </summary>
public abstract class AtelierException : Exception
{
    /// <summary>Creates an error with a message that says what is wrong and where.</summary>
    protected AtelierException(string message, Exception? inner = null) : base(message, inner)
    {
    }

    /// <summary>The HTTP status this category maps to.</summary>
    public abstract int StatusCode { get; }

    /// <summary>A stable machine-readable code, e.g. <c>invalid_request_file</c>.</summary>
    public abstract string Code { get; }

    /// <summary>Where the problems are, when there are several (file, line, field).</summary>
    public virtual IReadOnlyList<Problem> Problems => [];

    /// <summary>How many problems were found in all; <see cref="Problems"/> may hold only the first ones.</summary>
    public virtual int TotalProblems => Problems.Count;
}

/// <summary>One problem with an input, and where it is.</summary>
/// <param name="Message">What is wrong, in words.</param>
/// <param name="Line">1-based line number in the file, when the input is line-oriented.</param>
/// <param name="Field">A JSON-path-like field name (e.g. <c>messages[2].role</c>), when known.</param>
/// <param name="File">The file name, when the input is a file.</param>
public sealed record Problem(string Message, long? Line = null, string? Field = null, string? File = null)
{
    /// <inheritdoc />
    public override string ToString()
    {
        var where = File is null ? "" : File;
        if (Line is not null)
        {
            where += (where.Length > 0 ? ":" : "line ") + Line.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (Field is not null)
        {
            where += (where.Length > 0 ? " " : "") + Field;
        }

        return where.Length == 0 ? Message : $"{where}: {Message}";
    }
}

/// <summary>The request itself is malformed: a missing part, an unknown value, a bad parameter.</summary>
public sealed class BadRequestException(string message, string code = "invalid_request") : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 400;

    /// <inheritdoc />
    public override string Code { get; } = code;
}

/// <summary>The content was understood but fails validation; carries the problems found.</summary>
public sealed class ValidationFailedException : AtelierException
{
    private readonly IReadOnlyList<Problem> _problems;
    private readonly int _total;

    /// <summary>Creates the error from the first problems and the total count.</summary>
    public ValidationFailedException(string message, IReadOnlyList<Problem> problems, int totalProblems, string code = "invalid_request_file")
        : base(message)
    {
        _problems = problems;
        _total = Math.Max(totalProblems, problems.Count);
        Code = code;
    }

    /// <inheritdoc />
    public override int StatusCode => 422;

    /// <inheritdoc />
    public override string Code { get; }

    /// <inheritdoc />
    public override IReadOnlyList<Problem> Problems => _problems;

    /// <inheritdoc />
    public override int TotalProblems => _total;
}

/// <summary>No such resource in the caller's workspace. Also used for other workspaces' resources, so their existence does not leak.</summary>
public sealed class NotFoundException(string kind, string id)
    : AtelierException($"No {kind} with id '{id}' was found.")
{
    /// <inheritdoc />
    public override int StatusCode => 404;

    /// <inheritdoc />
    public override string Code => "not_found";
}

/// <summary>The resource is in a state that forbids the operation.</summary>
/// <param name="message">What is in the way, in words.</param>
/// <param name="derived">The artifacts that derive from the one the operation would remove, when that is what is in the way.</param>
public sealed class ConflictException(string message, IReadOnlyList<DerivedArtifact>? derived = null) : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 409;

    /// <inheritdoc />
    public override string Code => "conflict";

    /// <summary>The artifacts that derive from the one the operation would remove; empty when the conflict is another one.</summary>
    public IReadOnlyList<DerivedArtifact> Derived { get; } = derived ?? [];

    /// <summary>
    /// The refusal to delete an artifact that others derive from: it names them, and says that
    /// erasing an artifact together with what derives from it is a flow of its own.
    /// </summary>
    /// <param name="kind">The kind of the artifact, in words: <c>file</c>, <c>dataset</c>, <c>model</c>.</param>
    /// <param name="id">Its id.</param>
    /// <param name="derived">What derives from it; at least one.</param>
    public static ConflictException DerivedFrom(string kind, string id, IReadOnlyList<DerivedArtifact> derived)
    {
        ArgumentNullException.ThrowIfNull(derived);
        System.Diagnostics.Debug.Assert(derived.Count > 0, "A lineage conflict names what derives from the artifact.");
        const int Named = 10;
        var names = string.Join(", ", derived.Take(Named).Select(d => $"{d.Kind} '{d.Id}'"));
        var more = derived.Count > Named ? $" and {derived.Count - Named} more" : "";
        return new ConflictException(
            $"The {kind} '{id}' cannot be deleted: {derived.Count} artifact(s) derive from it ({names}{more}). "
            + "Delete those first, or erase it together with everything that derives from it through the erasure flow (POST /api/v1/erasure, atelier erasure plan).",
            derived);
    }
}

/// <summary>
/// The resource exists but may not be used for legal reasons (HTTP 451): a model trained on data that
/// was erased, which is not served unless an admin records an override.
/// </summary>
/// <param name="message">Why, naming the erasure.</param>
/// <param name="code">The machine-readable reason.</param>
public sealed class UnavailableForLegalReasonsException(string message, string code = "model_tainted") : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 451;

    /// <inheritdoc />
    public override string Code { get; } = code;
}

/// <summary>An artifact that derives from another (used it as an input), as a refusal to delete names it.</summary>
/// <param name="Kind"><c>fine_tuning_job</c>, <c>dataset</c> or <c>model</c>.</param>
/// <param name="Id">Its id.</param>
public sealed record DerivedArtifact(string Kind, string Id)
{
    /// <summary>A fine-tuning job.</summary>
    public const string FineTuningJob = "fine_tuning_job";

    /// <summary>A dataset version.</summary>
    public const string Dataset = "dataset";

    /// <summary>A model (a fine-tuned model of a base model).</summary>
    public const string Model = "model";
}

/// <summary>
/// The server cannot answer this now, though it may soon: e.g. the node a request was forwarded to died
/// before answering, and no other replica may serve it.
/// </summary>
/// <param name="message">What was unavailable, and what to do.</param>
/// <param name="code">The machine-readable reason.</param>
public sealed class ServiceUnavailableException(string message, string code = "service_unavailable") : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 503;

    /// <inheritdoc />
    public override string Code { get; } = code;
}

/// <summary>No valid API key was presented.</summary>
public sealed class UnauthorizedException(string message) : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 401;

    /// <inheritdoc />
    public override string Code => "unauthorized";
}

/// <summary>
/// The key is valid but may not do this: it lacks the role, the resource is outside its workspace,
/// or its workspace may not use what it asked for (a looser residency policy).
/// </summary>
public sealed class ForbiddenException(string message, string code = "forbidden") : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 403;

    /// <inheritdoc />
    public override string Code { get; } = code;
}

/// <summary>The body is larger than the configured limit.</summary>
/// <param name="limitBytes">The limit that was exceeded.</param>
/// <param name="what">What was too large, in words: <c>upload</c>, <c>request body</c>.</param>
/// <param name="setting">The configuration setting that holds the limit, when there is one.</param>
public sealed class PayloadTooLargeException(long limitBytes, string what = "upload", string? setting = null)
    : AtelierException($"The {what} is larger than the limit of {limitBytes} bytes" + (setting is null ? "." : $" ('{setting}' in atelier.json)."))
{
    /// <summary>The limit that was exceeded.</summary>
    public long LimitBytes { get; } = limitBytes;

    /// <inheritdoc />
    public override int StatusCode => 413;

    /// <inheritdoc />
    public override string Code => "payload_too_large";
}

/// <summary>
/// The placement guard refused to put bytes at a location because the artifact's residency policy
/// forbids it. Nothing was written; the refusal is in the audit log.
/// </summary>
public sealed class PlacementRefusedException(string policyName, string locationId, string reason)
    : AtelierException($"Residency policy '{policyName}' forbids placing bytes at location '{locationId}': {reason}")
{
    /// <summary>The policy that refused.</summary>
    public string PolicyName { get; } = policyName;

    /// <summary>The location that was refused.</summary>
    public string LocationId { get; } = locationId;

    /// <summary>Why the policy refused.</summary>
    public string Reason { get; } = reason;

    /// <inheritdoc />
    public override int StatusCode => 403;

    /// <inheritdoc />
    public override string Code => "placement_refused";
}

/// <summary>The request body is not JSON, or not the JSON this request takes; says where.</summary>
public sealed class MalformedJsonException(string message) : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 400;

    /// <inheritdoc />
    public override string Code => "invalid_json";
}

/// <summary>The server cannot complete the request because storage is exhausted or unavailable.</summary>
public sealed class StorageUnavailableException(string message, Exception? inner = null) : AtelierException(message, inner)
{
    /// <inheritdoc />
    public override int StatusCode => 507;

    /// <inheritdoc />
    public override string Code => "insufficient_storage";
}
