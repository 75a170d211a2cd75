using System.Text.Json;
using Atelier.Core;

namespace Atelier.Cli.Tests;

/// <summary>
/// <c>atelier serve</c> takes the PostgreSQL connection string from the environment or from a 0600
/// file, never needing it in <c>atelier.json</c> or on the command line; no database is needed to
/// see which catalog a start chose, since the PostgreSQL one fails on a closed port.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ServeCatalogSecretCliTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");

    [Fact]
    public async Task TheCatalogVariable_SelectsPostgreSql_InsteadOfTheEmbeddedCatalog_AndItsPasswordIsNeverPrinted()
    {
        var work = TempDirectory.Create("atelier-serve-env");
        var data = Path.Combine(work, "data");

        // Nothing listens on the port: a start that chose PostgreSQL fails there; one on SQLite would listen.
        var connection = $"Host=127.0.0.1;Port={Waits.FreePort()};Database=atelier;Username=atelier;Password=s3cret-pw;Timeout=5";
        var (exit, output) = await Repo.RunAsync(
            "dotnet",
            [Cli, "serve", "--data", data, "--port", "0"],
            work,
            new Dictionary<string, string> { [CatalogConfig.ConnectionStringVariable] = connection, ["NO_COLOR"] = "1" },
            TimeSpan.FromMinutes(3));

        Assert.True(exit != 0, $"serve started without its PostgreSQL catalog:\n{output}");
        Assert.DoesNotContain("Atelier is listening", output, StringComparison.Ordinal);
        Assert.Contains("127.0.0.1", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(data, "catalog.db")), "the embedded catalog was opened");
        Assert.DoesNotContain("s3cret-pw", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AConnectionStringFileOthersCanRead_StopsTheStart_NamingTheFileAndTheFix()
    {
        var work = TempDirectory.Create("atelier-serve-secret");
        var data = Path.Combine(work, "data");
        Directory.CreateDirectory(data);

        // Outside the data directory, as /etc/atelier or a mounted secret is (the start tightens files inside it).
        var file = Path.Combine(work, "catalog-connection");
        File.WriteAllText(file, "Host=127.0.0.1;Database=atelier;Username=atelier;Password=s3cret-pw\n");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var config = AtelierConfig.CreateDefault() with { Catalog = new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = file } };
        File.WriteAllText(Path.Combine(data, AtelierConfig.FileName), JsonSerializer.Serialize(config, AtelierConfig.SerializerOptions));

        var (exit, output) = await Repo.RunAsync("dotnet", [Cli, "serve", "--data", data, "--port", "0"], work, new Dictionary<string, string> { ["NO_COLOR"] = "1" }, TimeSpan.FromMinutes(3));

        Assert.True(exit != 0, $"serve started with a connection string file others can read:\n{output}");
        Assert.Contains(file, output, StringComparison.Ordinal);
        Assert.Contains("644", output, StringComparison.Ordinal);
        Assert.Contains("chmod 600", output, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret-pw", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(data, "catalog.db")), "the embedded catalog was opened");
    }
}
