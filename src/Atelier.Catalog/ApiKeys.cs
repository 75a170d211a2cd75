using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>A workspace: the unit of isolation. Resources of one are invisible to keys of another.</summary>
/// <param name="Id">Stable id.</param>
/// <param name="Name">Unique name.</param>
public sealed record Workspace(string Id, string Name);

/// <summary>What is known about an API key; never its secret.</summary>
/// <param name="Id">The key id (the public part of the token).</param>
/// <param name="WorkspaceId">The workspace the key acts in.</param>
/// <param name="WorkspaceName">That workspace's name.</param>
/// <param name="Name">A label given at creation.</param>
/// <param name="Role"><c>operator</c>, <c>admin</c> or <c>member</c> (see <see cref="ApiKeyRoles"/>).</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="RevokedAt">Unix seconds, when revoked.</param>
public sealed record ApiKeyInfo(string Id, string WorkspaceId, string WorkspaceName, string Name, string Role, long CreatedAt, long? RevokedAt)
{
    /// <summary>True for the platform operator, who manages workspaces, base models and policies.</summary>
    public bool IsOperator => Role == ApiKeyRoles.Operator;

    /// <summary>True for keys that may manage their own workspace's keys and read its whole audit trail.</summary>
    public bool IsAdmin => Role is ApiKeyRoles.Admin or ApiKeyRoles.Operator;
}

/// <summary>
/// The roles a key can have. The platform operator manages what all workspaces share (workspaces,
/// base models, residency policies, the audit log as a whole); an admin manages the keys of one
/// workspace; a member uses one workspace. No role reads another workspace's data.
/// </summary>
public static class ApiKeyRoles
{
    /// <summary>The platform operator (the first key of an installation).</summary>
    public const string Operator = "operator";

    /// <summary>An admin of one workspace.</summary>
    public const string Admin = "admin";

    /// <summary>A member of one workspace.</summary>
    public const string Member = "member";

    /// <summary>True for a known role name.</summary>
    public static bool IsKnown(string? role) => role is Operator or Admin or Member;
}

/// <summary>The rule for workspace names: readable, never mistaken for an id or a reserved actor.</summary>
public static class WorkspaceNames
{
    /// <summary>The prefix of workspace ids; no name may start with it.</summary>
    public const string IdPrefix = "ws_";

    private static readonly string[] Reserved = ["system", "unknown", "operator", "platform", "all", "none"];

    /// <summary>What is wrong with <paramref name="name"/> as a workspace name, or null when it is fine.</summary>
    public static string? Problem(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            return "A workspace name is 1 to 64 letters, digits, '-' or '_'.";
        }

        if (name.StartsWith(IdPrefix, StringComparison.OrdinalIgnoreCase))
        {
            return $"A workspace name may not start with '{IdPrefix}', which workspace ids use.";
        }

        return Reserved.Contains(name, StringComparer.OrdinalIgnoreCase)
            ? $"'{name}' is reserved ({string.Join(", ", Reserved)}); choose another workspace name."
            : null;
    }
}

/// <summary>A key's row as stored: what is known about it and the SHA-256 of its secret.</summary>
/// <param name="Key">The key.</param>
/// <param name="SecretHash">SHA-256 of the secret's text.</param>
public sealed record StoredApiKey(ApiKeyInfo Key, byte[] SecretHash);

/// <summary>
/// The rows of workspaces and API keys. The repository stores and finds; the rules (names, roles,
/// secrets and their hashes) are <see cref="ApiKeyStore"/>'s.
/// </summary>
public interface IApiKeyRepository
{
    /// <summary>
    /// Adds workspace <paramref name="name"/> with id <paramref name="newId"/> unless one has that name,
    /// and returns the workspace of that name (the existing one when it was there first).
    /// </summary>
    Task<Workspace> EnsureWorkspaceAsync(string newId, string name, long createdAt, CancellationToken cancellationToken = default);

    /// <summary>The workspace with <paramref name="id"/>, or null.</summary>
    Task<Workspace?> GetWorkspaceAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>The workspace named <paramref name="name"/>, or null.</summary>
    Task<Workspace?> FindWorkspaceAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>Every workspace, by name.</summary>
    Task<IReadOnlyList<Workspace>> ListWorkspacesAsync(CancellationToken cancellationToken = default);

    /// <summary>Adds a key of an existing workspace.</summary>
    /// <exception cref="ConflictException">The workspace does not exist or the id is taken.</exception>
    Task InsertAsync(ApiKeyInfo key, byte[] secretHash, CancellationToken cancellationToken = default);

    /// <summary>The key with <paramref name="id"/>, live or revoked, or null.</summary>
    Task<ApiKeyInfo?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>The key with <paramref name="id"/> and the hash of its secret, live or revoked, or null.</summary>
    Task<StoredApiKey?> GetWithSecretAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Keys of one workspace, or of all when <paramref name="workspaceId"/> is null, oldest first.</summary>
    Task<IReadOnlyList<ApiKeyInfo>> ListAsync(string? workspaceId, CancellationToken cancellationToken = default);

    /// <summary>Removes a key's row.</summary>
    Task ForgetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Revokes a live key at <paramref name="revokedAt"/>; false when no such live key exists.</summary>
    Task<bool> RevokeAsync(string id, long revokedAt, CancellationToken cancellationToken = default);
}

/// <summary>
/// API keys and workspaces. A key is <c>atl_&lt;id&gt;_&lt;secret&gt;</c>: the id finds the row,
/// and only SHA-256 of the 256-bit random secret is stored, compared in constant time. A slow
/// password hash is not needed, since the secret is random, not chosen by a person.
/// </summary>
public sealed class ApiKeyStore(IApiKeyRepository keys, TimeProvider clock)
{
    private const string Prefix = "atl_";

    /// <summary>Returns the workspace named <paramref name="name"/>, creating it if needed.</summary>
    /// <exception cref="ArgumentException">The name breaks <see cref="WorkspaceNames"/>' rule.</exception>
    public Task<Workspace> EnsureWorkspaceAsync(string name, CancellationToken cancellationToken = default)
    {
        if (WorkspaceNames.Problem(name) is { } problem)
        {
            throw new ArgumentException(problem, nameof(name));
        }

        return keys.EnsureWorkspaceAsync(WorkspaceNames.IdPrefix + RandomId(12), name, clock.GetUtcNow().ToUnixTimeSeconds(), cancellationToken);
    }

    /// <summary>The workspace with <paramref name="id"/>, or null.</summary>
    public Task<Workspace?> GetWorkspaceAsync(string id, CancellationToken cancellationToken = default) => keys.GetWorkspaceAsync(id, cancellationToken);

    /// <summary>The workspace named <paramref name="name"/>, or null.</summary>
    public Task<Workspace?> FindWorkspaceAsync(string name, CancellationToken cancellationToken = default) => keys.FindWorkspaceAsync(name, cancellationToken);

    /// <summary>Every workspace, by name.</summary>
    public Task<IReadOnlyList<Workspace>> ListWorkspacesAsync(CancellationToken cancellationToken = default) => keys.ListWorkspacesAsync(cancellationToken);

    /// <summary>The key with <paramref name="id"/>, live or revoked, or null.</summary>
    public Task<ApiKeyInfo?> GetAsync(string id, CancellationToken cancellationToken = default) => keys.GetAsync(id, cancellationToken);

    /// <summary>Creates a key; returns its description and the token, which is never shown again.</summary>
    /// <exception cref="ArgumentException">Unknown role.</exception>
    public async Task<(ApiKeyInfo Key, string Token)> CreateAsync(Workspace workspace, string name, string role, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        if (!ApiKeyRoles.IsKnown(role))
        {
            throw new ArgumentException($"Unknown role '{role}'; use operator, admin or member.", nameof(role));
        }

        var id = RandomId(16);
        var secret = new byte[32];
        RandomNumberGenerator.Fill(secret);
        var secretText = Base64Url.EncodeToString(secret);
        var key = new ApiKeyInfo(id, workspace.Id, workspace.Name, name, role, clock.GetUtcNow().ToUnixTimeSeconds(), null);
        await keys.InsertAsync(key, SHA256.HashData(Encoding.ASCII.GetBytes(secretText)), cancellationToken).ConfigureAwait(false);
        return (key, $"{Prefix}{id}_{secretText}");
    }

    /// <summary>The live key that <paramref name="token"/> proves, or null.</summary>
    public async Task<ApiKeyInfo?> AuthenticateAsync(string token, CancellationToken cancellationToken = default)
    {
        // Token: atl_<16 id chars>_<43 secret chars>. Anything else is rejected before any lookup.
        if (token is null || !token.StartsWith(Prefix, StringComparison.Ordinal) || token.Length != Prefix.Length + 16 + 1 + 43 || token[Prefix.Length + 16] != '_')
        {
            return null;
        }

        var id = token.Substring(Prefix.Length, 16);
        var presented = SHA256.HashData(Encoding.ASCII.GetBytes(token.AsSpan(Prefix.Length + 17).ToString()));
        var stored = await keys.GetWithSecretAsync(id, cancellationToken).ConfigureAwait(false);
        if (stored is null || !CryptographicOperations.FixedTimeEquals(stored.SecretHash, presented) || stored.Key.RevokedAt is not null)
        {
            return null;
        }

        return stored.Key;
    }

    /// <summary>Keys of one workspace, or of all when <paramref name="workspaceId"/> is null.</summary>
    public Task<IReadOnlyList<ApiKeyInfo>> ListAsync(string? workspaceId, CancellationToken cancellationToken = default) => keys.ListAsync(workspaceId, cancellationToken);

    /// <summary>
    /// Removes a key that was never handed out (its creation could not be audited), so that no key
    /// exists without its <c>key_created</c> event. Revoke keys that were handed out instead.
    /// </summary>
    public Task ForgetAsync(string id, CancellationToken cancellationToken = default) => keys.ForgetAsync(id, cancellationToken);

    /// <summary>Revokes a key; false when no such live key exists.</summary>
    public Task<bool> RevokeAsync(string id, CancellationToken cancellationToken = default) =>
        keys.RevokeAsync(id, clock.GetUtcNow().ToUnixTimeSeconds(), cancellationToken);

    private static string RandomId(int length)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return RandomNumberGenerator.GetString(alphabet, length);
    }
}
