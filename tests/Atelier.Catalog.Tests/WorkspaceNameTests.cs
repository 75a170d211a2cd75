namespace Atelier.Catalog.Tests;

/// <summary>The catalog's rules that are not storage; the repositories' behaviour is in the contract suites.</summary>
public sealed class WorkspaceNameTests
{
    [Theory]
    [InlineData("system")]
    [InlineData("Unknown")]
    [InlineData("ws_abc")]
    [InlineData("WS_abc")]
    [InlineData("a b")]
    [InlineData("")]
    public async Task WorkspaceNames_ThatCouldBeMistakenForIdsOrActors_AreRefused(string name)
    {
        Assert.NotNull(WorkspaceNames.Problem(name));
        var keys = new ApiKeyStore(new UnusedKeyRepository(), TimeProvider.System);

        // Refused before the repository is asked.
        await Assert.ThrowsAsync<ArgumentException>(() => keys.EnsureWorkspaceAsync(name));
    }

    [Theory]
    [InlineData("default")]
    [InlineData("team-a_2")]
    public void ReadableNames_AreAccepted(string name) => Assert.Null(WorkspaceNames.Problem(name));

    [Theory]
    [InlineData("")]
    [InlineData("atl_abc")]
    [InlineData("atl_0123456789abcdef_tooshort")]
    public async Task MalformedTokens_AreRejectedWithoutALookup(string token) =>
        Assert.Null(await new ApiKeyStore(new UnusedKeyRepository(), TimeProvider.System).AuthenticateAsync(token));

    /// <summary>A repository that fails the test if it is asked anything.</summary>
    private sealed class UnusedKeyRepository : IApiKeyRepository
    {
        public Task<Workspace> EnsureWorkspaceAsync(string newId, string name, long createdAt, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<Workspace?> GetWorkspaceAsync(string id, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<Workspace?> FindWorkspaceAsync(string name, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<IReadOnlyList<Workspace>> ListWorkspacesAsync(CancellationToken cancellationToken = default) => throw Unexpected();

        public Task InsertAsync(ApiKeyInfo key, byte[] secretHash, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<ApiKeyInfo?> GetAsync(string id, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<StoredApiKey?> GetWithSecretAsync(string id, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<IReadOnlyList<ApiKeyInfo>> ListAsync(string? workspaceId, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task ForgetAsync(string id, CancellationToken cancellationToken = default) => throw Unexpected();

        public Task<bool> RevokeAsync(string id, long revokedAt, CancellationToken cancellationToken = default) => throw Unexpected();

        private static InvalidOperationException Unexpected() => new("The rule should have refused before asking the repository.");
    }
}
