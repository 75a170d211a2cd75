using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Microsoft.Data.Sqlite;

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

/// <summary>
/// API keys and workspaces. A key is <c>atl_&lt;id&gt;_&lt;secret&gt;</c>: the id finds the row,
/// and only SHA-256 of the 256-bit random secret is stored, compared in constant time. A slow
/// password hash is not needed, since the secret is random, not chosen by a person.
/// </summary>
public sealed class ApiKeyStore(CatalogDatabase database, TimeProvider clock)
{
    private const string Prefix = "atl_";

    /// <summary>Returns the workspace named <paramref name="name"/>, creating it if needed.</summary>
    /// <exception cref="ArgumentException">The name breaks <see cref="WorkspaceNames"/>' rule.</exception>
    public Workspace EnsureWorkspace(string name)
    {
        if (WorkspaceNames.Problem(name) is { } problem)
        {
            throw new ArgumentException(problem, nameof(name));
        }

        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO workspaces(id, name, created_at) VALUES ($id, $name, $now) ON CONFLICT(name) DO NOTHING;
            SELECT id, name FROM workspaces WHERE name = $name;
            """;
        command.Parameters.AddWithValue("$id", "ws_" + RandomId(12));
        command.Parameters.AddWithValue("$name", name);
        command.Parameters.AddWithValue("$now", clock.GetUtcNow().ToUnixTimeSeconds());
        using var reader = command.ExecuteReader();
        reader.Read();
        return new Workspace(reader.GetString(0), reader.GetString(1));
    }

    /// <summary>The workspace with <paramref name="id"/>, or null.</summary>
    public Workspace? GetWorkspace(string id) => WorkspaceWhere("id", id);

    /// <summary>The workspace named <paramref name="name"/>, or null.</summary>
    public Workspace? FindWorkspace(string name) => WorkspaceWhere("name", name);

    // Both columns are unique; the column name is one of the two constants above, never input.
    private Workspace? WorkspaceWhere(string column, string value)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT id, name FROM workspaces WHERE {column} = $value";
        command.Parameters.AddWithValue("$value", value);
        using var reader = command.ExecuteReader();
        return reader.Read() ? new Workspace(reader.GetString(0), reader.GetString(1)) : null;
    }

    /// <summary>Every workspace, by name.</summary>
    public IReadOnlyList<Workspace> ListWorkspaces()
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT id, name FROM workspaces ORDER BY name";
        using var reader = command.ExecuteReader();
        var workspaces = new List<Workspace>();
        while (reader.Read())
        {
            workspaces.Add(new Workspace(reader.GetString(0), reader.GetString(1)));
        }

        return workspaces;
    }

    /// <summary>The key with <paramref name="id"/>, live or revoked, or null.</summary>
    public ApiKeyInfo? Get(string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT k.id, k.workspace_id, w.name, k.name, k.role, k.created_at, k.revoked_at
            FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.id = $id
            """;
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        return reader.Read() ? ReadKey(reader) : null;
    }

    /// <summary>Creates a key; returns its description and the token, which is never shown again.</summary>
    public (ApiKeyInfo Key, string Token) Create(Workspace workspace, string name, string role)
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
        var now = clock.GetUtcNow().ToUnixTimeSeconds();
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO api_keys(id, workspace_id, name, role, secret_hash, created_at) VALUES ($id, $ws, $name, $role, $hash, $now)";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$ws", workspace.Id);
        command.Parameters.AddWithValue("$name", name);
        command.Parameters.AddWithValue("$role", role);
        command.Parameters.AddWithValue("$hash", SHA256.HashData(Encoding.ASCII.GetBytes(secretText)));
        command.Parameters.AddWithValue("$now", now);
        command.ExecuteNonQuery();
        return (new ApiKeyInfo(id, workspace.Id, workspace.Name, name, role, now, null), $"{Prefix}{id}_{secretText}");
    }

    /// <summary>The live key that <paramref name="token"/> proves, or null.</summary>
    public ApiKeyInfo? Authenticate(string token)
    {
        // Token: atl_<16 id chars>_<43 secret chars>. Anything else is rejected before any lookup.
        if (token is null || !token.StartsWith(Prefix, StringComparison.Ordinal) || token.Length != Prefix.Length + 16 + 1 + 43 || token[Prefix.Length + 16] != '_')
        {
            return null;
        }

        var id = token.Substring(Prefix.Length, 16);
        var presented = SHA256.HashData(Encoding.ASCII.GetBytes(token.AsSpan(Prefix.Length + 17).ToString()));
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT k.id, k.workspace_id, w.name, k.name, k.role, k.created_at, k.revoked_at, k.secret_hash
            FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.id = $id
            """;
        command.Parameters.AddWithValue("$id", id);
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            return null;
        }

        var stored = (byte[])reader.GetValue(7);
        if (!CryptographicOperations.FixedTimeEquals(stored, presented) || !reader.IsDBNull(6))
        {
            return null;
        }

        return ReadKey(reader);
    }

    /// <summary>Keys of one workspace, or of all when <paramref name="workspaceId"/> is null.</summary>
    public IReadOnlyList<ApiKeyInfo> List(string? workspaceId)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT k.id, k.workspace_id, w.name, k.name, k.role, k.created_at, k.revoked_at
            FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
            WHERE $ws IS NULL OR k.workspace_id = $ws ORDER BY k.created_at, k.id
            """;
        command.Parameters.AddWithValue("$ws", (object?)workspaceId ?? DBNull.Value);
        using var reader = command.ExecuteReader();
        var keys = new List<ApiKeyInfo>();
        while (reader.Read())
        {
            keys.Add(ReadKey(reader));
        }

        return keys;
    }

    /// <summary>
    /// Removes a key that was never handed out (its creation could not be audited), so that no key
    /// exists without its <c>key_created</c> event. Revoke keys that were handed out instead.
    /// </summary>
    public void Forget(string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM api_keys WHERE id = $id";
        command.Parameters.AddWithValue("$id", id);
        command.ExecuteNonQuery();
    }

    /// <summary>Revokes a key; false when no such live key exists.</summary>
    public bool Revoke(string id)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE api_keys SET revoked_at = $now WHERE id = $id AND revoked_at IS NULL";
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$now", clock.GetUtcNow().ToUnixTimeSeconds());
        return command.ExecuteNonQuery() == 1;
    }

    private static ApiKeyInfo ReadKey(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetInt64(5), r.IsDBNull(6) ? null : r.GetInt64(6));

    private static string RandomId(int length)
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        return RandomNumberGenerator.GetString(alphabet, length);
    }
}
