using System.Text;
using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IApiKeyRepository"/> must do, under the key store's rules.</summary>
public abstract class ApiKeyRepositoryContract : CatalogContract
{
    [Fact]
    public async Task EnsureWorkspace_CreatesOnce_AndFindsByIdOrName()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var team = await keys.EnsureWorkspaceAsync("team");
        Assert.StartsWith(WorkspaceNames.IdPrefix, team.Id, StringComparison.Ordinal);
        Assert.Equal(team, await keys.EnsureWorkspaceAsync("team"));
        var other = await keys.EnsureWorkspaceAsync("another");
        Assert.NotEqual(team.Id, other.Id);

        Assert.Equal(team, await keys.GetWorkspaceAsync(team.Id));
        Assert.Equal(team, await keys.FindWorkspaceAsync("team"));
        Assert.Null(await keys.GetWorkspaceAsync("team"));
        Assert.Null(await keys.FindWorkspaceAsync(team.Id));
        Assert.Null(await keys.FindWorkspaceAsync("missing"));
        Assert.Equal([other, team], await keys.ListWorkspacesAsync());
    }

    [Fact]
    public async Task EnsureWorkspace_RacingOnOneName_GivesEveryoneTheSameWorkspace()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var all = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => keys.EnsureWorkspaceAsync("team"))));
        Assert.Single(all.Distinct());
        Assert.Single(await keys.ListWorkspacesAsync());
    }

    [Fact]
    public async Task Authenticate_AcceptsOnlyTheExactLiveToken()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var workspace = await keys.EnsureWorkspaceAsync("team");
        var (key, token) = await keys.CreateAsync(workspace, "ci", ApiKeyRoles.Member);
        var (_, otherToken) = await keys.CreateAsync(workspace, "other", ApiKeyRoles.Admin);

        Assert.Equal(new ApiKeyInfo(key.Id, workspace.Id, "team", "ci", ApiKeyRoles.Member, 1_000, null), await keys.AuthenticateAsync(token));
        Assert.Null(await keys.AuthenticateAsync(token[..^1] + (token[^1] == 'A' ? 'B' : 'A')));
        Assert.Null(await keys.AuthenticateAsync(token[..21] + otherToken[21..]));
        Assert.Null(await keys.AuthenticateAsync("atl_" + key.Id));
        Assert.Null(await keys.AuthenticateAsync(""));

        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_100);
        Assert.True(await keys.RevokeAsync(key.Id));
        Assert.Null(await keys.AuthenticateAsync(token));
        Assert.False(await keys.RevokeAsync(key.Id));
        Assert.False(await keys.RevokeAsync("no-such-key"));
        Assert.Equal(1_100, (await keys.GetAsync(key.Id))?.RevokedAt);
        Assert.NotNull(await keys.AuthenticateAsync(otherToken));
    }

    [Fact]
    public async Task TheStoredSecret_IsItsHash()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var (key, token) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("team"), "ci", ApiKeyRoles.Member);
        var stored = await catalog.Keys.GetWithSecretAsync(key.Id);
        var secret = token[("atl_".Length + key.Id.Length + 1)..];
        Assert.Equal(key, stored?.Key);
        Assert.Equal(System.Security.Cryptography.SHA256.HashData(Encoding.ASCII.GetBytes(secret)), stored?.SecretHash);
        Assert.Null(await catalog.Keys.GetWithSecretAsync("no-such-key"));
    }

    [Fact]
    public async Task Keys_ListPerWorkspaceOrAll_OldestFirst_AndAForgottenKeyIsGone()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var a = await keys.EnsureWorkspaceAsync("a");
        var b = await keys.EnsureWorkspaceAsync("b");
        var (first, _) = await keys.CreateAsync(a, "first", ApiKeyRoles.Operator);
        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_001);
        var (second, _) = await keys.CreateAsync(b, "second", ApiKeyRoles.Admin);
        Clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_002);
        var (third, token) = await keys.CreateAsync(a, "third", ApiKeyRoles.Member);

        Assert.Equal([first, third], await keys.ListAsync(a.Id));
        Assert.Equal([second], await keys.ListAsync(b.Id));
        Assert.Equal([first, second, third], await keys.ListAsync(null));
        Assert.Empty(await keys.ListAsync("ws_missing"));
        Assert.True((await keys.GetAsync(first.Id))!.IsOperator);

        await keys.ForgetAsync(third.Id);
        Assert.Null(await keys.GetAsync(third.Id));
        Assert.Null(await keys.AuthenticateAsync(token));
        Assert.Equal([first], await keys.ListAsync(a.Id));
    }

    [Fact]
    public async Task Create_RefusesUnknownRolesAndWorkspaces()
    {
        var catalog = await OpenCatalogAsync();
        var keys = new ApiKeyStore(catalog.Keys, Clock);
        var team = await keys.EnsureWorkspaceAsync("team");
        await Assert.ThrowsAsync<ArgumentException>(() => keys.CreateAsync(team, "x", "root"));
        await Assert.ThrowsAsync<Atelier.Core.Errors.ConflictException>(() => keys.CreateAsync(new Workspace("ws_missing", "missing"), "x", ApiKeyRoles.Member));
        Assert.Empty(await keys.ListAsync(null));
    }
}
