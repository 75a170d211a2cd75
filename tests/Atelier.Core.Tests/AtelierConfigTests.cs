namespace Atelier.Core.Tests;

public sealed class AtelierConfigTests
{
    [Fact]
    public void FirstStart_WritesAnEuOnPremDefaultThatReadsBackEqual()
    {
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-config");
        var written = AtelierConfig.LoadOrCreate(dir);
        Assert.True(File.Exists(Path.Combine(dir, AtelierConfig.FileName)));
        var location = Assert.Single(written.Locations);
        Assert.True(location.OnPrem);
        Assert.Contains("EU", location.Blocs);
        Assert.True(written.Policy("checkpoints").RequireOnPrem);

        var read = AtelierConfig.LoadOrCreate(dir);
        Assert.Equal(written.Locations[0].Id, read.Locations[0].Id);
        Assert.Equal(written.Policy("default").AllowedJurisdictions, read.Policy("default").AllowedJurisdictions);
    }

    [Fact]
    public void TheDefaultFile_NamesNoCatalog_AndACatalogSectionReadsBack()
    {
        // The embedded default stays as it was: no catalog section, which means SQLite.
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-config");
        Assert.Null(AtelierConfig.LoadOrCreate(dir).Catalog);
        Assert.DoesNotContain("catalog", File.ReadAllText(Path.Combine(dir, AtelierConfig.FileName)), StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(dir, AtelierConfig.FileName), """{ "catalog": { "provider": "postgresql", "connection_string": "Host=db;Database=atelier" } }""");
        var read = AtelierConfig.LoadOrCreate(dir).Catalog;
        Assert.Equal((CatalogConfig.PostgreSql, "Host=db;Database=atelier"), (read?.Provider, read?.ConnectionString));
        Assert.Equal(CatalogConfig.Sqlite, new CatalogConfig().Provider);
    }

    [Fact]
    public void TheDefaultFile_HasNoCollectionsSection_AndOneReadsBackAndIsChecked()
    {
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-config");
        Assert.Null(AtelierConfig.LoadOrCreate(dir).Collections);
        Assert.DoesNotContain("collections", File.ReadAllText(Path.Combine(dir, AtelierConfig.FileName)), StringComparison.Ordinal);

        var drive = Path.Combine(dir, "nvme0");
        Directory.CreateDirectory(drive);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(drive, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        File.WriteAllText(Path.Combine(dir, AtelierConfig.FileName), $$"""{ "collections": { "memory_budget_bytes": 4294967296, "segment_directories": ["{{drive}}"], "rerank_multiplier": 8 } }""");
        var read = AtelierConfig.LoadOrCreate(dir).Collections!;
        Assert.Equal((4294967296L, 8, 256L << 20), (read.MemoryBudgetBytes, read.RerankMultiplier, read.VectorCacheBytes));
        Assert.Equal([drive], read.Validate());

        Assert.Contains("collections.memory_budget_bytes", Assert.Throws<InvalidOperationException>(() => (read with { MemoryBudgetBytes = -1 }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("collections.rerank_multiplier", Assert.Throws<InvalidOperationException>(() => (read with { RerankMultiplier = 0 }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("named twice", Assert.Throws<InvalidOperationException>(() => (read with { SegmentDirectories = [drive, drive + "/"] }).Validate()).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MalformedConfig_FailsWithThePathInTheMessage()
    {
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-config");
        File.WriteAllText(Path.Combine(dir, AtelierConfig.FileName), "{ not json");
        var error = Assert.Throws<InvalidOperationException>(() => AtelierConfig.LoadOrCreate(dir));
        Assert.Contains(AtelierConfig.FileName, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownPolicy_NamesTheDefinedOnes()
    {
        var error = Assert.Throws<InvalidOperationException>(() => AtelierConfig.CreateDefault().Policy("nope"));
        Assert.Contains("default", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NonEuCountry_GetsItsOwnJurisdictionAndNoEuBloc()
    {
        var config = AtelierConfig.CreateDefault("CH");
        Assert.Empty(config.Locations[0].Blocs);
        Assert.Equal(["CH"], config.Policy("default").AllowedJurisdictions);
    }

    [Theory]
    [InlineData("fr")]
    [InlineData("FRA")]
    [InlineData("")]
    public void BadCountryCode_IsRefused(string country)
    {
        Assert.Throws<ArgumentException>(() => AtelierConfig.CreateDefault(country));
    }
}
