using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Core.Residency;

namespace Atelier.Testing.Catalog;

/// <summary>What every <see cref="IPolicyRepository"/> must do, under the policy catalog's rules.</summary>
public abstract class PolicyRepositoryContract : CatalogContract
{
    private static readonly ResidencyPolicy Default = new() { Name = "default", AllowedJurisdictions = ["EU"] };

    private static ResidencyPolicy Strict(string name, string jurisdiction = "FR") => new() { Name = name, AllowedJurisdictions = [jurisdiction], MinReplicas = 2, RequireOnPrem = true, AllowedOperators = ["ops"] };

    [Fact]
    public async Task ADefinedPolicy_IsStored_AndNeverRedefined()
    {
        var catalog = await OpenCatalogAsync();
        Assert.True(await catalog.Policies.TryDefineAsync(Strict("fr-strict"), "key:op", 1_000));
        Assert.False(await catalog.Policies.TryDefineAsync(Strict("fr-strict", "US"), "key:op", 1_001));
        Assert.True(await catalog.Policies.TryDefineAsync(Strict("de-strict", "DE"), "key:op", 1_002));

        var stored = await catalog.Policies.ListDefinedAsync();
        Assert.Equal(["de-strict", "fr-strict"], stored.Select(p => p.Name).Order(StringComparer.Ordinal));
        var fr = stored.Single(p => p.Name == "fr-strict");
        Assert.Equal(("FR", "ops", 2, true), (string.Join(",", fr.AllowedJurisdictions), string.Join(",", fr.AllowedOperators), fr.MinReplicas, fr.RequireOnPrem));
    }

    [Fact]
    public async Task ThePolicyCatalog_LoadsStoredPolicies_AndRefusesToRedefineOne()
    {
        var catalog = await OpenCatalogAsync();
        var policies = await PolicyCatalog.LoadAsync(catalog.Policies, [Default], "default", Clock);
        await policies.DefineAsync(Strict("fr-strict"), "key:op");
        await Assert.ThrowsAsync<ConflictException>(() => policies.DefineAsync(Strict("fr-strict", "US"), "key:op"));
        await Assert.ThrowsAsync<ConflictException>(() => policies.DefineAsync(Strict("default"), "key:op"));

        // Another process loading the same catalog sees it, and cannot define it again either.
        var reloaded = await PolicyCatalog.LoadAsync(catalog.Policies, [Default], "default", Clock);
        Assert.Equal(["default", "fr-strict"], reloaded.All.Select(p => p.Name));
        Assert.Equal(["FR"], reloaded.Find("fr-strict")?.AllowedJurisdictions);
        Assert.True(reloaded.IsOperatorDefined("fr-strict"));
        await Assert.ThrowsAsync<ConflictException>(() => reloaded.DefineAsync(Strict("fr-strict", "US"), "key:op"));
        Assert.Single(await catalog.Policies.ListDefinedAsync());
    }

    [Fact]
    public async Task WorkspaceGovernance_IsPerWorkspace_AndReplacedWhole()
    {
        var catalog = await OpenCatalogAsync();
        var a = await WorkspaceAsync(catalog, "a");
        var b = await WorkspaceAsync(catalog, "b");
        Assert.Null(await catalog.Policies.GetWorkspacePoliciesAsync(a));

        Assert.True(await catalog.Policies.SetWorkspacePoliciesAsync(a, "fr", ["fr", "de"]));
        Assert.Equal(("fr", "fr,de", true), Flat(await catalog.Policies.GetWorkspacePoliciesAsync(a)));
        Assert.Null(await catalog.Policies.GetWorkspacePoliciesAsync(b));

        Assert.True(await catalog.Policies.SetWorkspacePoliciesAsync(a, "de", ["de"]));
        Assert.Equal(("de", "de", true), Flat(await catalog.Policies.GetWorkspacePoliciesAsync(a)));
        Assert.False(await catalog.Policies.SetWorkspacePoliciesAsync("ws_missing", "de", ["de"]));
        Assert.Null(await catalog.Policies.GetWorkspacePoliciesAsync("ws_missing"));

        static (string, string, bool) Flat(WorkspacePolicies? p) => (p!.DefaultPolicy, string.Join(",", p.AllowedPolicies), p.Explicit);
    }

    [Fact]
    public async Task ThePolicyCatalog_GovernsThroughTheRepository()
    {
        var catalog = await OpenCatalogAsync();
        var ws = await WorkspaceAsync(catalog, "a");
        var policies = await PolicyCatalog.LoadAsync(catalog.Policies, [Default, new() { Name = "anywhere", AllowedJurisdictions = ["*"] }], "default", Clock);
        await policies.DefineAsync(Strict("fr-strict"), "key:op");

        Assert.Equal(("default", false), Governed(await policies.ForWorkspaceAsync(ws)));
        Assert.Equal("default", await policies.ChooseAsync(ws, null));
        await Assert.ThrowsAsync<ForbiddenException>(() => policies.ChooseAsync(ws, "anywhere"));

        await policies.GovernAsync(ws, "fr-strict", ["anywhere"]);
        Assert.Equal(("fr-strict", true), Governed(await policies.ForWorkspaceAsync(ws)));
        Assert.Equal("fr-strict", await policies.ChooseAsync(ws, null));
        Assert.Equal("anywhere", await policies.ChooseAsync(ws, "anywhere"));
        Assert.Null(await policies.RefusalAsync(ws, "default"));
        await Assert.ThrowsAsync<NotFoundException>(() => policies.GovernAsync("ws_missing", "default", []));
        await Assert.ThrowsAsync<BadRequestException>(() => policies.GovernAsync(ws, "undefined", []));

        static (string, bool) Governed(WorkspacePolicies p) => (p.DefaultPolicy, p.Explicit);
    }
}
