using Atelier.Core.Residency;

namespace Atelier.Core.Tests;

public sealed class ResidencyPolicyTests
{
    private static readonly LocationDescriptor ParisOnPrem = new() { Id = "paris", Uri = "p", Country = "FR", Blocs = ["EU", "EEA"], OnPrem = true, Operator = "self" };
    private static readonly LocationDescriptor FrankfurtCloud = new() { Id = "fra-cloud", Uri = "f", Country = "DE", Blocs = ["EU"], OnPrem = false, Operator = "sovereign-cloud" };
    private static readonly LocationDescriptor Virginia = new() { Id = "us-east", Uri = "u", Country = "US", OnPrem = false, Operator = "hyperscaler" };

    private static readonly ResidencyPolicy EuOnly = new() { Name = "eu", AllowedJurisdictions = ["EU"] };

    [Fact]
    public void Evaluate_LocationInAnAllowedBloc_IsAllowed()
    {
        Assert.True(EuOnly.Evaluate(ParisOnPrem).Allowed);
        Assert.True(EuOnly.Evaluate(FrankfurtCloud).Allowed);
    }

    [Fact]
    public void Evaluate_LocationOutsideTheJurisdictions_IsRefusedWithTheReason()
    {
        var decision = EuOnly.Evaluate(Virginia);
        Assert.False(decision.Allowed);
        Assert.Contains("US", decision.Reason, StringComparison.Ordinal);
        Assert.Contains("EU", decision.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_CountryCode_MatchesOnlyThatCountry()
    {
        var franceOnly = new ResidencyPolicy { Name = "fr", AllowedJurisdictions = ["FR"] };
        Assert.True(franceOnly.Evaluate(ParisOnPrem).Allowed);
        Assert.False(franceOnly.Evaluate(FrankfurtCloud).Allowed);
    }

    [Fact]
    public void Evaluate_OperatorNotAllowed_IsRefused()
    {
        var selfOnly = EuOnly with { AllowedOperators = ["self"] };
        Assert.True(selfOnly.Evaluate(ParisOnPrem).Allowed);
        var decision = selfOnly.Evaluate(FrankfurtCloud);
        Assert.False(decision.Allowed);
        Assert.Contains("sovereign-cloud", decision.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Evaluate_RequireOnPrem_RefusesACloudFirstCopyButAllowsACloudReplica()
    {
        var checkpoints = EuOnly with { RequireOnPrem = true };
        Assert.False(checkpoints.Evaluate(FrankfurtCloud).Allowed);
        Assert.False(checkpoints.Evaluate(FrankfurtCloud, [FrankfurtCloud]).Allowed);
        Assert.True(checkpoints.Evaluate(FrankfurtCloud, [ParisOnPrem]).Allowed);
        Assert.True(checkpoints.Evaluate(ParisOnPrem).Allowed);
    }

    [Fact]
    public void Intersect_IsAtLeastAsStrictAsEachInput()
    {
        var anywhere = new ResidencyPolicy { Name = "any", AllowedJurisdictions = ["*"], MinReplicas = 3 };
        var derived = anywhere.Intersect(EuOnly with { RequireOnPrem = true });
        Assert.Equal(["EU"], derived.AllowedJurisdictions);
        Assert.Equal(3, derived.MinReplicas);
        Assert.True(derived.RequireOnPrem);
        Assert.False(derived.Evaluate(Virginia).Allowed);
    }

    [Fact]
    public void Intersect_DisjointOperators_AllowsNoOperator()
    {
        var a = EuOnly with { AllowedOperators = ["self"] };
        var b = EuOnly with { AllowedOperators = ["sovereign-cloud"] };
        var both = a.Intersect(b);
        Assert.False(both.Evaluate(ParisOnPrem).Allowed);
        Assert.False(both.Evaluate(FrankfurtCloud).Allowed);
    }

    [Fact]
    public void Intersect_DisjointJurisdictions_AllowsNowhere()
    {
        var fr = new ResidencyPolicy { Name = "fr", AllowedJurisdictions = ["FR"] };
        var us = new ResidencyPolicy { Name = "us", AllowedJurisdictions = ["US"] };
        var both = fr.Intersect(us);
        Assert.Empty(both.AllowedJurisdictions);
        Assert.False(both.Evaluate(ParisOnPrem).Allowed);
        Assert.False(both.Evaluate(Virginia).Allowed);
    }

    [Fact]
    public void DeriveName_IsTheSortedSetOfInputPolicies_WhateverTheOrderOrNesting()
    {
        Assert.Equal("checkpoints&default&eu", ResidencyPolicy.DeriveName(["eu", "default", null, "eu", "checkpoints"]));
        Assert.Equal("checkpoints&default&eu", ResidencyPolicy.DeriveName(["default&eu", "checkpoints", ""]));
        Assert.Equal("eu", ResidencyPolicy.DeriveName(["eu", "eu"]));
        Assert.Throws<ArgumentException>(() => ResidencyPolicy.DeriveName([null, ""]));
    }

    [Fact]
    public void Resolve_OfADerivedName_IsTheIntersectionOfItsParts_AndNamesItTheSameWay()
    {
        var fr = new ResidencyPolicy { Name = "fr", AllowedJurisdictions = ["FR", "EU"], MinReplicas = 2 };
        var policies = new Dictionary<string, ResidencyPolicy> { ["eu"] = EuOnly, ["fr"] = fr };

        var derived = ResidencyPolicy.Resolve(ResidencyPolicy.DeriveName(["fr", "eu"]), name => policies[name]);

        Assert.Equal("eu&fr", derived.Name);
        Assert.Equal(["EU"], derived.AllowedJurisdictions);
        Assert.Equal(2, derived.MinReplicas);
        Assert.Equal(derived.Name, fr.Intersect(EuOnly).Name);
        Assert.Same(EuOnly, ResidencyPolicy.Resolve("eu", name => policies[name]));
        Assert.Throws<KeyNotFoundException>(() => ResidencyPolicy.Resolve("eu&us", name => policies[name]));
    }

    [Theory]
    [InlineData(new[] { "FR" }, new[] { "EU" }, true)]
    [InlineData(new[] { "EU" }, new[] { "EEA" }, true)]
    [InlineData(new[] { "NO" }, new[] { "EEA" }, true)]
    [InlineData(new[] { "NO" }, new[] { "EU" }, false)]
    [InlineData(new[] { "EU" }, new[] { "FR" }, false)]
    [InlineData(new[] { "*" }, new[] { "EU" }, false)]
    [InlineData(new[] { "US" }, new[] { "*" }, true)]
    [InlineData(new[] { "FR", "US" }, new[] { "EU" }, false)]
    public void IsNoLooserThan_ComparesJurisdictionsThroughTheirBlocs(string[] mine, string[] theirs, bool expected)
    {
        var a = new ResidencyPolicy { Name = "a", AllowedJurisdictions = mine };
        var b = new ResidencyPolicy { Name = "b", AllowedJurisdictions = theirs };
        Assert.Equal(expected, a.IsNoLooserThan(b));
    }

    [Fact]
    public void IsNoLooserThan_NeedsAsManyReplicasTheOnPremCopyAndOnlyAllowedOperators()
    {
        var governed = new ResidencyPolicy { Name = "g", AllowedJurisdictions = ["EU"], AllowedOperators = ["self"], MinReplicas = 2, RequireOnPrem = true };
        var same = governed with { Name = "same" };
        Assert.True(same.IsNoLooserThan(governed));
        Assert.False((same with { MinReplicas = 1 }).IsNoLooserThan(governed));
        Assert.False((same with { RequireOnPrem = false }).IsNoLooserThan(governed));
        Assert.False((same with { AllowedOperators = [] }).IsNoLooserThan(governed));
        Assert.False((same with { AllowedOperators = ["self", "hyperscaler"] }).IsNoLooserThan(governed));
        Assert.True((same with { MinReplicas = 3, AllowedJurisdictions = ["FR"] }).IsNoLooserThan(governed));

        // A derived policy is the intersection of its parts, so never looser than any of them.
        var anywhere = new ResidencyPolicy { Name = "any", AllowedJurisdictions = ["*"] };
        Assert.True(anywhere.Intersect(governed).IsNoLooserThan(governed));
    }
}
