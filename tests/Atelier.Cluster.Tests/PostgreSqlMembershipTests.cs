using Atelier.Testing;
using Atelier.Catalog.PostgreSql;
using Atelier.Cluster.Placement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime;

namespace Atelier.Cluster.Tests;

/// <summary>A grain keyed by a node name, placed as a node's worker is.</summary>
public interface INodeProbeGrain : IGrainWithStringKey
{
    /// <summary>The name of the silo it runs on.</summary>
    Task<string> SiloNameAsync();
}

/// <inheritdoc cref="INodeProbeGrain" />
[NodePlacement]
public sealed class NodeProbeGrain(ILocalSiloDetails silo) : Grain, INodeProbeGrain
{
    /// <inheritdoc />
    public Task<string> SiloNameAsync() => Task.FromResult(silo.Name);
}

/// <summary>
/// Orleans membership on a real PostgreSQL through Atelier's own schema and queries: silos of one
/// cluster find each other, a node-keyed grain runs on its node's silo only, and a silo that leaves is
/// marked dead in the table, its node's grains refused rather than placed elsewhere.
/// </summary>
[Trait("Category", "Slow")]
public sealed class PostgreSqlMembershipTests
{
    [Fact]
    public async Task TwoNodesJoinThroughPostgreSql_NodeGrainsRunOnTheirOwnNode_AndALeavingNodeIsMarkedDead()
    {
        var server = await PostgreSqlServer.SharedAsync();
        var connectionString = await server.CreateDatabaseAsync("membership");
        // The membership tables are the catalog's own: opening the catalog migrates them in.
        await (await PostgreSqlCatalog.OpenAsync(connectionString)).DisposeAsync();

        using var a = await StartSiloAsync("node-a", connectionString);
        using var b = await StartSiloAsync("node-b", connectionString);
        var grains = a.Services.GetRequiredService<IGrainFactory>();

        // Both are active members, as each sees it through the table.
        await Waits.UntilAsync(async () => (await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)).Count == 2, () => "two active silos");
        Assert.Equal(["node-a", "node-b"], await ClusterTable.MembersAsync(connectionString, ClusterTable.Active));

        // Called from node a, node b's grain runs on node b, and a's on a.
        Assert.Equal("node-b", await grains.GetGrain<INodeProbeGrain>("node-b").SiloNameAsync());
        Assert.Equal("node-a", await grains.GetGrain<INodeProbeGrain>("node-a").SiloNameAsync());
        var unknown = await Assert.ThrowsAnyAsync<Exception>(() => grains.GetGrain<INodeProbeGrain>("node-z").SiloNameAsync());
        Assert.Contains("Node 'node-z' has no live silo", unknown.ToString(), StringComparison.Ordinal);

        // Node b leaves: the table says it is dead, and its grains are not placed on a.
        await b.StopAsync();
        await Waits.UntilAsync(async () => (await ClusterTable.MembersAsync(connectionString, ClusterTable.Dead)).Contains("node-b"), () => "node b marked dead");
        await Waits.UntilAsync(async () => (await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true)).Count == 1, () => "one active silo");
        var gone = await Assert.ThrowsAnyAsync<Exception>(() => grains.GetGrain<INodeProbeGrain>("node-b-again").SiloNameAsync());
        Assert.Contains("has no live silo", gone.ToString(), StringComparison.Ordinal);

        await a.StopAsync();
        await server.DropDatabaseAsync(connectionString);
    }

    private static async Task<IHost> StartSiloAsync(string node, string connectionString)
    {
        var host = Host.CreateDefaultBuilder()
            .ConfigureLogging(logging => logging.SetMinimumLevel(LogLevel.Warning))
            .UseOrleans(silo => silo.UseAtelierCluster(new ClusterSettings
            {
                Node = node,
                ClusterId = "test-cluster",
                PostgreSqlConnectionString = connectionString,
                SiloPort = Waits.FreePort(),
                GatewayPort = Waits.FreePort(),
                ProbeTimeout = TimeSpan.FromSeconds(2),
            }))
            .Build();
        await host.StartAsync();
        return host;
    }
}
