using Atelier.Core.IO;
using Atelier.Testing;

namespace Atelier.Core.Tests;

/// <summary>
/// Where the PostgreSQL connection string (with its password) comes from: <c>--cluster</c>,
/// <c>catalog.connection_string</c>, a 0600 file (<c>catalog.connection_string_file</c>) or the
/// environment, so that it need not sit in plain text in <c>atelier.json</c>.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class CatalogConnectionStringTests : IDisposable
{
    private const string Secret = "Host=db;Database=atelier;Username=atelier;Password=s3cret";
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly string _data = TestCleanup.CreateDirectory("atelier-catalog-secret");

    public void Dispose() => TestCleanup.Delete(_data);

    [Fact]
    public void AConnectionStringFileOfItsOwnerOnly_GivesTheConnectionString_RelativeToTheDataDirectory()
    {
        WriteSecret(Path.Combine(_data, "catalog.secret"), Secret + "\n", OwnerOnly);
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = "catalog.secret" });

        var catalog = config.ResolveCatalog(_data, clusterConnectionString: null, NoEnvironment);

        Assert.Equal((CatalogConfig.PostgreSql, Secret), (catalog?.Provider, catalog?.ConnectionString));
    }

    [Fact]
    public void AConnectionStringFileInJson_ReadsBack_AndTheFileNameIsAllItHolds()
    {
        File.WriteAllText(Path.Combine(_data, AtelierConfig.FileName), """{ "catalog": { "provider": "postgresql", "connection_string_file": "/run/secrets/atelier/connection-string" } }""");
        var read = AtelierConfig.LoadOrCreate(_data).Catalog;
        Assert.Equal(("/run/secrets/atelier/connection-string", null), (read?.ConnectionStringFile, read?.ConnectionString));
    }

    [Theory]
    [InlineData(OwnerOnly | UnixFileMode.GroupRead | UnixFileMode.OtherRead)] // 0644, what a plain `echo >` leaves
    [InlineData(OwnerOnly | UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.OtherWrite)]
    public void AConnectionStringFileOthersCanReach_IsRefused_NamingTheFileItsModeAndTheFix(UnixFileMode mode)
    {
        var path = Path.Combine(_data, "loose.secret");
        WriteSecret(path, Secret, mode);
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = path });

        var e = Assert.Throws<UnauthorizedAccessException>(() => config.ResolveCatalog(_data, null, NoEnvironment));

        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("connection_string_file", e.Message, StringComparison.Ordinal);
        Assert.Contains(Convert.ToString((int)mode, 8), e.Message, StringComparison.Ordinal);
        Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ALinkToASecretFile_IsJudgedByItsTarget_AsKubernetesMountsSecrets()
    {
        // A Secret volume's files are links into a hidden directory; the link itself is 0777.
        var target = Path.Combine(_data, "..data-connection-string");
        WriteSecret(target, Secret, OwnerOnly);
        var link = Path.Combine(_data, "connection-string");
        File.CreateSymbolicLink(link, target);
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = link });
        Assert.Equal(Secret, config.ResolveCatalog(_data, null, NoEnvironment)?.ConnectionString);

        File.SetUnixFileMode(target, OwnerOnly | UnixFileMode.GroupRead);
        Assert.Throws<UnauthorizedAccessException>(() => config.ResolveCatalog(_data, null, NoEnvironment));
    }

    [Fact]
    public void BothAConnectionStringAndAFile_AreRefused()
    {
        WriteSecret(Path.Combine(_data, "catalog.secret"), Secret, OwnerOnly);
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionString = "Host=other", ConnectionStringFile = "catalog.secret" });
        var e = Assert.Throws<InvalidOperationException>(() => config.ResolveCatalog(_data, null, NoEnvironment));
        Assert.Contains("both", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnEmptyConnectionStringFile_IsRefused()
    {
        WriteSecret(Path.Combine(_data, "catalog.secret"), "\n", OwnerOnly);
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = "catalog.secret" });
        Assert.Contains("empty", Assert.Throws<InvalidOperationException>(() => config.ResolveCatalog(_data, null, NoEnvironment)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheEnvironmentVariable_GivesTheConnectionString_WhenTheConfigNamesPostgreSqlWithoutOne()
    {
        var config = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql });
        var catalog = config.ResolveCatalog(_data, null, Environment(Secret));
        Assert.Equal((CatalogConfig.PostgreSql, Secret), (catalog?.Provider, catalog?.ConnectionString));
    }

    [Fact]
    public void TheEnvironmentVariable_WithNoCatalogSection_MeansPostgreSql_AsTheClusterFlagDoes()
    {
        var catalog = AtelierConfig.CreateDefault().ResolveCatalog(_data, null, Environment(Secret));
        Assert.Equal((CatalogConfig.PostgreSql, Secret), (catalog?.Provider, catalog?.ConnectionString));
    }

    [Fact]
    public void TheFlagAndTheConfig_WinOverTheEnvironment_AndAnExplicitSqliteIgnoresIt()
    {
        var fromFlag = AtelierConfig.CreateDefault().ResolveCatalog(_data, "Host=flag", Environment(Secret));
        Assert.Equal((CatalogConfig.PostgreSql, "Host=flag"), (fromFlag?.Provider, fromFlag?.ConnectionString));

        var fromConfig = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionString = "Host=config" }).ResolveCatalog(_data, null, Environment(Secret));
        Assert.Equal("Host=config", fromConfig?.ConnectionString);

        WriteSecret(Path.Combine(_data, "catalog.secret"), "Host=file", OwnerOnly);
        var fromFile = Postgres(new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = "catalog.secret" }).ResolveCatalog(_data, null, Environment(Secret));
        Assert.Equal("Host=file", fromFile?.ConnectionString);

        var sqlite = Postgres(new CatalogConfig { Provider = CatalogConfig.Sqlite }).ResolveCatalog(_data, null, Environment(Secret));
        Assert.Equal((CatalogConfig.Sqlite, null), (sqlite?.Provider, sqlite?.ConnectionString));
    }

    [Fact]
    public void WithNothingGiven_TheCatalogIsTheEmbeddedOne()
    {
        Assert.Null(AtelierConfig.CreateDefault().ResolveCatalog(_data, null, NoEnvironment));
        Assert.Null(AtelierConfig.CreateDefault().ResolveCatalog(_data, null, Environment("")));
    }

    [Fact]
    public void SecretFile_TheOneCheckOfSecretModes_RefusesAnyBitBeyondTheOwners()
    {
        var path = Path.Combine(_data, "key");
        WriteSecret(path, "x", OwnerOnly);
        SecretFile.ThrowIfReachableByOthers(path, "test key");
        File.SetUnixFileMode(path, UnixFileMode.UserRead);
        SecretFile.ThrowIfReachableByOthers(path, "test key");
        File.SetUnixFileMode(path, OwnerOnly | UnixFileMode.OtherExecute);
        Assert.Contains("The test key ", Assert.Throws<UnauthorizedAccessException>(() => SecretFile.ThrowIfReachableByOthers(path, "test key")).Message, StringComparison.Ordinal);
    }

    private static string? NoEnvironment(string name) => null;

    private static Func<string, string?> Environment(string value) =>
        name => name == CatalogConfig.ConnectionStringVariable ? value : null;

    private static AtelierConfig Postgres(CatalogConfig catalog) => AtelierConfig.CreateDefault() with { Catalog = catalog };

    private static void WriteSecret(string path, string text, UnixFileMode mode)
    {
        File.WriteAllText(path, text);
        File.SetUnixFileMode(path, mode);
    }
}
