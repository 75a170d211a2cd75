using System.Text.Json;

namespace Atelier.Cli.Tests;

/// <summary><c>atelier policies</c> and <c>atelier workspaces</c> against a real server, as the operator and a member run them.</summary>
[Trait("Category", "Slow")]
public sealed class GovernanceCliTests
{
    [Fact]
    public async Task TheOperatorDefinesAPolicyAndAllowsIt_ShowSaysWhereItMayLiveAndWhoMayUseIt_AndAMemberCannotDefineOne()
    {
        await using var server = await TestServer.StartAsync();
        var memberKey = await server.CreateKeyAsync("research");

        var (exit, output) = await CliRun.Atelier(server, "policies", "create", "fr-onprem", "--jurisdiction", "FR", "--min-replicas", "2", "--require-on-prem", "--operator", "Atelier-DC");
        Assert.True(exit == 0, output);
        Assert.Contains("Defined policy fr-onprem.", output, StringComparison.Ordinal);

        // A name never changes meaning: defining it again is refused, and says why.
        (exit, output) = await CliRun.Atelier(server, "policies", "create", "fr-onprem", "--jurisdiction", "*");
        Assert.Equal(2, exit);
        Assert.Contains("409", output, StringComparison.Ordinal);

        (exit, output) = await CliRun.Atelier(server, "workspaces", "set-policies", "research", "--allow", "default", "--allow", "fr-onprem", "--default-policy", "fr-onprem");
        Assert.True(exit == 0, output);
        Assert.Contains("default policy fr-onprem", output, StringComparison.Ordinal);

        (exit, output) = await CliRun.Atelier(server, "policies", "show", "fr-onprem");
        Assert.True(exit == 0, output);
        Assert.Contains("jurisdictions:   FR", output, StringComparison.Ordinal);
        Assert.Contains("operators:       Atelier-DC", output, StringComparison.Ordinal);
        Assert.Contains("min replicas:    2", output, StringComparison.Ordinal);
        Assert.Contains("require on-prem: yes", output, StringComparison.Ordinal);
        Assert.Contains("allowed in:      research (default)", output, StringComparison.Ordinal);

        (exit, output) = await CliRun.Atelier(server, "policies", "show", "fr-onprem", "--json");
        Assert.True(exit == 0, output);
        var shown = JsonDocument.Parse(output).RootElement;
        Assert.Equal("fr-onprem", shown.GetProperty("name").GetString());
        Assert.Equal(2, shown.GetProperty("min_replicas").GetInt32());

        (exit, output) = await CliRun.Atelier(server, "policies", "show", "nowhere");
        Assert.Equal(2, exit);
        Assert.Contains("No residency policy is named 'nowhere'. Defined: ", output, StringComparison.Ordinal);
        Assert.Contains("fr-onprem", output, StringComparison.Ordinal);

        // The member sees the policies its workspace may use, and cannot define one.
        (exit, output) = await CliRun.AtelierAs(server, memberKey, "policies", "list", "--json");
        Assert.True(exit == 0, output);
        var listed = JsonDocument.Parse(output).RootElement;
        Assert.Equal("fr-onprem", listed.GetProperty("workspace").GetProperty("default_policy").GetString());
        Assert.True(listed.GetProperty("data").EnumerateArray().Single(p => p.GetProperty("name").GetString() == "fr-onprem").GetProperty("usable_here").GetBoolean());

        (exit, output) = await CliRun.AtelierAs(server, memberKey, "policies", "create", "anywhere", "--jurisdiction", "*");
        Assert.Equal(2, exit);
        Assert.Contains("403", output, StringComparison.Ordinal);

        // A member sees its own workspace only, never the operator's ("default").
        (exit, output) = await CliRun.AtelierAs(server, memberKey, "workspaces", "list", "--json");
        Assert.True(exit == 0, output);
        Assert.Equal(["research"], JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray().Select(w => w.GetProperty("name").GetString()));
    }
}
