using Npgsql;

namespace Atelier.Cluster.Tests;

/// <summary>Reads the cluster's membership table (the catalog's migration 9) as the tests check it.</summary>
internal static class ClusterTable
{
    /// <summary>Orleans' <c>SiloStatus.Active</c>.</summary>
    public const int Active = 3;

    /// <summary>Orleans' <c>SiloStatus.Dead</c>.</summary>
    public const int Dead = 6;

    /// <summary>The silo names of the members in <paramref name="status"/>, in order.</summary>
    public static async Task<List<string>> MembersAsync(string connectionString, int status)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var query = new NpgsqlCommand("SELECT silo_name FROM cluster_members WHERE status = @status ORDER BY silo_name", connection);
        query.Parameters.AddWithValue("status", status);
        var names = new List<string>();
        await using var reader = await query.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }
}
