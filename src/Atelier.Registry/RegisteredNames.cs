using System.Globalization;
using Atelier.Core.Errors;

namespace Atelier.Registry;

/// <summary>
/// The rules of registered names and aliases. A name may hold <c>:</c> (a fine-tune's default name is
/// <c>&lt;base&gt;:&lt;suffix&gt;</c>) but never <c>@</c>, which separates the alias or version where a
/// model is named (<c>name@production</c>, <c>name@3</c>), nor <c>/</c>, which would break its URL.
/// </summary>
public static class RegisteredNames
{
    /// <summary>The longest registered name.</summary>
    public const int MaxNameLength = 128;

    /// <summary>The longest alias.</summary>
    public const int MaxAliasLength = 64;

    /// <summary>True when <paramref name="name"/> is 1 to 128 of <c>[A-Za-z0-9._:-]</c>, starting with a letter or digit.</summary>
    public static bool IsValidName(string? name) =>
        !string.IsNullOrEmpty(name) && name.Length <= MaxNameLength && char.IsAsciiLetterOrDigit(name[0])
        && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':');

    /// <summary>Throws a 422 naming <paramref name="field"/> when <paramref name="name"/> is not a valid registered name.</summary>
    public static void ValidateName(string? name, string field)
    {
        if (!IsValidName(name))
        {
            var message = $"'{name}' is not a valid registered model name: use 1 to {MaxNameLength} of A-Z, a-z, 0-9, '.', '_', '-' or ':', starting with a letter or digit ('@' separates an alias).";
            throw new ValidationFailedException(message, [new Problem(message, Field: field)], 1, "invalid_request");
        }
    }

    /// <summary>
    /// True when <paramref name="alias"/> is 1 to 64 of <c>[a-z0-9_-]</c> starting with a letter, so it
    /// can never be read as a version number (<c>name@3</c>).
    /// </summary>
    public static bool IsValidAlias(string? alias) =>
        !string.IsNullOrEmpty(alias) && alias.Length <= MaxAliasLength && char.IsAsciiLetterLower(alias[0])
        && alias.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '_' or '-');

    /// <summary>Throws a 422 with field <c>alias</c> when <paramref name="alias"/> is not valid.</summary>
    public static void ValidateAlias(string? alias)
    {
        if (!IsValidAlias(alias))
        {
            var message = $"'{alias}' is not a valid alias: use 1 to {MaxAliasLength} of a-z, 0-9, '_' or '-', starting with a letter (a number names a version).";
            throw new ValidationFailedException(message, [new Problem(message, Field: "alias")], 1, "invalid_request");
        }
    }

    /// <summary>The version number <paramref name="selector"/> names (<c>3</c> of <c>name@3</c>), or null when it is not a positive number.</summary>
    public static int? TryParseVersion(string selector) =>
        selector.Length is > 0 and <= 9 && selector.All(char.IsAsciiDigit) && int.Parse(selector, CultureInfo.InvariantCulture) is > 0 and var n ? n : null;
}
