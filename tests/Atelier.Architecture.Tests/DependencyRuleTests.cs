using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Atelier.Architecture.Tests;

/// <summary>
/// The dependency rule of <c>docs/architecture.md</c>, checked against the code: each assembly's
/// project references and compiled references stay within what the page's table allows.
/// </summary>
public sealed partial class DependencyRuleTests
{
    private static readonly string Root = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Atelier.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Atelier.slnx not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The table of docs/architecture.md: assembly → the assemblies it may reference (transitively closed).</summary>
    private static Dictionary<string, HashSet<string>> AllowedReferences()
    {
        var rows = new List<(string Assembly, string Refs)>();
        foreach (var line in File.ReadLines(Path.Combine(Root, "docs", "architecture.md")))
        {
            var match = TableRow().Match(line);
            if (match.Success)
            {
                rows.Add((match.Groups["name"].Value, match.Groups["refs"].Value.Trim()));
            }
        }

        Assert.True(rows.Count >= 10, "docs/architecture.md lost its table of assemblies");
        var allowed = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var (assembly, refs) in rows)
        {
            var set = new HashSet<string>(StringComparer.Ordinal);
            if (refs == "all of the above")
            {
                set.UnionWith(allowed.Keys);
            }
            else if (refs != "nothing of ours")
            {
                foreach (var name in refs.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    var full = "Atelier." + name;
                    Assert.True(allowed.ContainsKey(full), $"docs/architecture.md: {assembly} may reference {full}, which is not above it in the table");
                    set.Add(full);
                    set.UnionWith(allowed[full]);
                }
            }

            allowed[assembly] = set;
        }

        return allowed;
    }

    [GeneratedRegex(@"^\| `(?<name>Atelier\.[A-Za-z0-9.]+)` \|.*\| (?<refs>[^|]+) \|$")]
    private static partial Regex TableRow();

    public static TheoryData<string> SourceAssemblies()
    {
        var data = new TheoryData<string>();
        foreach (var dir in Directory.GetDirectories(Path.Combine(Root, "src")).Order(StringComparer.Ordinal))
        {
            data.Add(Path.GetFileName(dir));
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void EverySourceProject_HasItsOwnTestProject_InTheSolution(string assembly)
    {
        var tests = Path.Combine("tests", assembly + ".Tests", assembly + ".Tests.csproj");
        Assert.True(File.Exists(Path.Combine(Root, tests)), $"{assembly} has no test project {tests}");
        var solution = XDocument.Load(Path.Combine(Root, "Atelier.slnx"));
        Assert.Contains(solution.Descendants("Project"), p => p.Attribute("Path")!.Value == tests.Replace('\\', '/'));
        var project = XDocument.Load(Path.Combine(Root, tests));
        Assert.Contains(project.Descendants("ProjectReference"), r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value) == assembly);
    }

    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void ProjectReferences_StayWithinTheTable(string assembly)
    {
        var allowed = AllowedReferences();
        Assert.True(allowed.ContainsKey(assembly), $"{assembly} is not in the table of docs/architecture.md: add it, with what it owns and may reference");
        var project = XDocument.Load(Path.Combine(Root, "src", assembly, assembly + ".csproj"));
        var references = project.Descendants("ProjectReference").Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value)).ToArray();
        Assert.All(references, r => Assert.True(allowed[assembly].Contains(r), $"{assembly} references {r}, which docs/architecture.md does not allow"));
    }

    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void CompiledReferences_StayWithinTheTable(string assembly)
    {
        var allowed = AllowedReferences();
        var references = Load(assembly).GetReferencedAssemblies().Select(a => a.Name!).Where(n => n.StartsWith("Atelier.", StringComparison.Ordinal));
        Assert.All(references, r => Assert.True(allowed[assembly].Contains(r), $"{assembly} uses {r}, which docs/architecture.md does not allow"));
    }

    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void Sqlite_IsUsedOnlyByTheSqliteCatalog_AndTheAssembliesStillMovingTheirSqlThere(string assembly)
    {
        var usesSqlite = Load(assembly).GetReferencedAssemblies().Any(a => a.Name == SqliteAssembly);
        if (assembly == "Atelier.Catalog.Sqlite")
        {
            Assert.True(usesSqlite);
        }
        else
        {
            Assert.False(usesSqlite, $"{assembly} uses Microsoft.Data.Sqlite: SQL belongs in Atelier.Catalog.Sqlite, behind the catalog's repository interfaces");
        }
    }

    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void Npgsql_IsUsedOnlyByThePostgreSqlCatalog(string assembly)
    {
        var usesNpgsql = Load(assembly).GetReferencedAssemblies().Any(a => a.Name == "Npgsql");
        if (assembly == "Atelier.Catalog.PostgreSql")
        {
            Assert.True(usesNpgsql);
        }
        else
        {
            Assert.False(usesNpgsql, $"{assembly} uses Npgsql: PostgreSQL's SQL belongs in Atelier.Catalog.PostgreSql, behind the catalog's repository interfaces");
        }
    }

    /// <summary>
    /// No public or protected member outside the SQLite catalog takes, returns or exposes a
    /// Microsoft.Data.Sqlite type, so a second provider (PostgreSQL) can replace it without any
    /// other assembly's surface changing.
    /// </summary>
    [Theory]
    [MemberData(nameof(SourceAssemblies))]
    public void NoPublicSurface_OutsideTheSqliteCatalog_ExposesASqliteType(string assembly)
    {
        var exposed = new List<string>();
        foreach (var type in Load(assembly).GetExportedTypes())
        {
            if (type.BaseType is { } baseType && IsSqlite(baseType))
            {
                exposed.Add($"{type.FullName} derives from {baseType.FullName}");
            }

            exposed.AddRange(type.GetInterfaces().Where(IsSqlite).Select(i => $"{type.FullName} implements {i.FullName}"));
            const BindingFlags Visible = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var member in type.GetMembers(Visible))
            {
                var (isVisible, types) = member switch
                {
                    FieldInfo f => (f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly, new[] { f.FieldType }),
                    PropertyInfo p => (p.GetAccessors(nonPublic: true).Any(a => a.IsPublic || a.IsFamily || a.IsFamilyOrAssembly), [p.PropertyType, .. p.GetIndexParameters().Select(i => i.ParameterType)]),
                    EventInfo e => (e.AddMethod is { } add && (add.IsPublic || add.IsFamily || add.IsFamilyOrAssembly), [e.EventHandlerType!]),
                    MethodBase m => (m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly, [.. m.GetParameters().Select(p => p.ParameterType), .. m is MethodInfo mi ? [mi.ReturnType] : Array.Empty<Type>()]),
                    _ => (false, Array.Empty<Type>()),
                };
                if (isVisible && types.FirstOrDefault(IsSqlite) is { } sqlite)
                {
                    exposed.Add($"{type.FullName}.{member.Name} exposes {sqlite}");
                }
            }
        }

        if (assembly == "Atelier.Catalog.Sqlite")
        {
            // The provider's own surface (CatalogDatabase.Open) does expose them: proof the check sees them.
            Assert.NotEmpty(exposed);
            return;
        }

        Assert.True(exposed.Count == 0, $"{assembly} exposes Microsoft.Data.Sqlite types in its public surface:\n{string.Join("\n", exposed)}");
    }

    private const string SqliteAssembly = "Microsoft.Data.Sqlite";

    /// <summary>True when <paramref name="type"/> is, or is built from (array, by-ref, generic argument), a Microsoft.Data.Sqlite type.</summary>
    private static bool IsSqlite(Type type)
    {
        if (type.HasElementType)
        {
            return IsSqlite(type.GetElementType()!);
        }

        if (type.IsGenericType && !type.IsGenericTypeDefinition && type.GetGenericArguments().Any(IsSqlite))
        {
            return true;
        }

        return !type.IsGenericParameter && type.Assembly.GetName().Name == SqliteAssembly;
    }

    private static Assembly Load(string assembly) =>
        Assembly.Load(assembly == "Atelier.Cli" ? "atelier" : assembly);
}
