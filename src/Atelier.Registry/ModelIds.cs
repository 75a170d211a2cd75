using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Atelier.Core.Errors;

namespace Atelier.Registry;

/// <summary>
/// Model ids. A base model's id is chosen by the admin who imports it and becomes a blob key
/// segment, so it is restricted to <c>[a-z0-9._-]</c> starting with a letter or digit. A
/// fine-tuned model's id follows Mistral's <c>ft:&lt;base&gt;:&lt;8 hex&gt;:&lt;suffix or date&gt;:&lt;8 hex&gt;</c>
/// and never reaches a path.
/// </summary>
public static class ModelIds
{
    /// <summary>The longest base model id.</summary>
    public const int MaxBaseIdLength = 64;

    /// <summary>The longest suffix, as Mistral allows.</summary>
    public const int MaxSuffixLength = 18;

    /// <summary>True when <paramref name="id"/> is a valid base model id.</summary>
    public static bool IsValidBaseId(string? id)
    {
        if (string.IsNullOrEmpty(id) || id.Length > MaxBaseIdLength || !(char.IsAsciiLetterLower(id[0]) || char.IsAsciiDigit(id[0])))
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!(char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '.' or '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Throws a 400 naming the rule when <paramref name="id"/> is not a valid base model id.</summary>
    public static void ValidateBaseId(string? id, string field = "name")
    {
        if (!IsValidBaseId(id))
        {
            throw new BadRequestException(
                $"'{id}' is not a valid model id ({field}): use 1 to {MaxBaseIdLength} of a-z, 0-9, '.', '_' or '-', starting with a letter or digit.",
                "invalid_model_id");
        }
    }

    /// <summary>Throws a 400 when <paramref name="suffix"/> is given and not 1 to 18 of <c>[A-Za-z0-9._-]</c>. Call it when a job is created.</summary>
    public static void ValidateSuffix(string? suffix)
    {
        if (suffix is null)
        {
            return;
        }

        if (suffix.Length is 0 or > MaxSuffixLength || !suffix.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
        {
            throw new BadRequestException(
                $"Suffix '{suffix}' is not valid: use 1 to {MaxSuffixLength} of A-Z, a-z, 0-9, '.', '_' or '-'.",
                "invalid_suffix");
        }
    }

    /// <summary>
    /// The id of the model a job produces: <c>ft:&lt;base&gt;:&lt;workspace hash&gt;:&lt;suffix, else yyyyMMdd&gt;:&lt;job hash&gt;</c>,
    /// each hash the first 8 hex digits of SHA-256 of the id (not the id's own first digits: job ids are
    /// UUIDv7, whose leading digits are a timestamp shared by jobs created in the same minute).
    /// </summary>
    public static string FineTuned(string workspaceId, string baseModelId, string jobId, string? suffix, DateTimeOffset createdAt)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(jobId);
        var middle = suffix ?? createdAt.UtcDateTime.ToString("yyyyMMdd", CultureInfo.InvariantCulture);
        return $"ft:{baseModelId}:{Hash8(workspaceId)}:{middle}:{Hash8(jobId)}";
    }

    private static string Hash8(string value) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(value)).AsSpan(0, 4));
}
