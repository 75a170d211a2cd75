using System.Text.Json;
using Atelier.Core;
using Atelier.Core.Residency;

namespace Atelier.Catalog.PostgreSql;

/// <summary>The residency governance of the PostgreSQL catalog (tables <c>residency_policies</c> and <c>workspace_policies</c>).</summary>
public sealed class PostgreSqlPolicyRepository(PostgreSqlDatabase database) : IPolicyRepository
{
    /// <inheritdoc />
    public async Task<IReadOnlyList<ResidencyPolicy>> ListDefinedAsync(CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT definition_json FROM residency_policies ORDER BY name",
            static r => JsonSerializer.Deserialize<ResidencyPolicy>(r.GetString(0), AtelierConfig.SerializerOptions)!,
            cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<bool> TryDefineAsync(ResidencyPolicy policy, string actor, long createdAt, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(policy);

        // Of two nodes defining one name at once, the second waits for the first and then inserts nothing.
        return await database.ExecuteAsync(
            "INSERT INTO residency_policies(name, definition_json, created_at, created_by) VALUES (@name, @json, @now, @actor) ON CONFLICT (name) DO NOTHING",
            cancellationToken,
            ("name", policy.Name),
            ("json", JsonSerializer.Serialize(policy, AtelierConfig.SerializerOptions)),
            ("now", createdAt),
            ("actor", actor)).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<WorkspacePolicies?> GetWorkspacePoliciesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            "SELECT default_policy, allowed_policies_json FROM workspace_policies WHERE workspace_id = @id",
            static r => new WorkspacePolicies(r.GetString(0), JsonSerializer.Deserialize<string[]>(r.GetString(1)) ?? [], Explicit: true),
            cancellationToken,
            ("id", workspaceId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<bool> SetWorkspacePoliciesAsync(string workspaceId, string defaultPolicy, IReadOnlyList<string> allowedPolicies, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync(
            """
            INSERT INTO workspace_policies(workspace_id, default_policy, allowed_policies_json)
            SELECT id, @default, @allowed FROM workspaces WHERE id = @id
            ON CONFLICT (workspace_id) DO UPDATE SET default_policy = excluded.default_policy, allowed_policies_json = excluded.allowed_policies_json
            """,
            cancellationToken,
            ("id", workspaceId),
            ("default", defaultPolicy),
            ("allowed", JsonSerializer.Serialize(allowedPolicies))).ConfigureAwait(false) == 1;
}
