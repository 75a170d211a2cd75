using System.Reflection;
using System.Runtime.CompilerServices;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Microsoft.Extensions.DependencyInjection;

namespace Atelier.Architecture.Tests;

/// <summary>
/// Composition without a service locator (docs/architecture.md): each assembly registers its services
/// with <c>services.AddAtelierX(...)</c>, the host composes them in one place
/// (<see cref="AtelierServer"/>), and every service, middleware and endpoint handler takes the narrow
/// services it needs. Two checks keep it so: nothing outside a registration or the composition root
/// asks the container for a service, and no host signature takes or holds an object that bundles
/// several services (the shape the old <c>AtelierRuntime</c> had).
/// </summary>
public sealed class CompositionTests
{
    /// <summary>More services than this behind one object's public surface make it a bag of services, not a dependency.</summary>
    private const int MaxServicesPerObject = 3;

    /// <summary>The container's resolving members; calling one is asking a locator.</summary>
    private static readonly HashSet<string> Resolvers =
    [
        "System.IServiceProvider",
        "Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions",
        "Microsoft.Extensions.DependencyInjection.ServiceProviderKeyedServiceExtensions",
        "Microsoft.Extensions.DependencyInjection.IKeyedServiceProvider",
        "Microsoft.Extensions.DependencyInjection.ISupportRequiredService",
        "Microsoft.Extensions.DependencyInjection.ActivatorUtilities",
    ];

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

    /// <summary>Every source assembly (one per directory of <c>src/</c>).</summary>
    private static IEnumerable<Assembly> SourceAssemblies() =>
        Directory.GetDirectories(Path.Combine(Root, "src")).Order(StringComparer.Ordinal).Select(d => Load(Path.GetFileName(d)));

    /// <summary>The host's assemblies: the server and the command that hosts it.</summary>
    private static Assembly[] HostAssemblies() => [typeof(AtelierServer).Assembly, Load("Atelier.Cli")];

    // The command's assembly is named after the command it builds.
    private static Assembly Load(string project) => Assembly.Load(project == "Atelier.Cli" ? "atelier" : project);

    [Fact]
    public void NothingResolvesServices_OutsideTheRegistrationsAndTheCompositionRoot()
    {
        var assemblies = SourceAssemblies().ToArray();
        Assert.True(assemblies.Length >= 10, "src/ lost its assemblies");
        var offenders = assemblies.SelectMany(LocatorCalls).Where(c => !MayResolve(c.Type)).Select(c => $"{c.Type.FullName} calls {c.Member}").Distinct().Order(StringComparer.Ordinal).ToArray();
        Assert.True(
            offenders.Length == 0,
            "A service is resolved from the container outside an AddAtelierX registration and the composition root (AtelierServer); take it as a constructor or handler parameter instead:\n" + string.Join('\n', offenders));
    }

    [Fact]
    public void NoHostSignature_TakesOrHoldsABagOfServices()
    {
        var seen = 0;
        var offenders = new List<string>();
        foreach (var assembly in HostAssemblies())
        {
            var (services, bags) = Signatures(assembly);
            seen += services;
            offenders.AddRange(bags.Where(b => b.Type != typeof(AtelierServer)).Select(b => b.Description));
        }

        Assert.True(
            offenders.Count == 0,
            $"A host type takes or holds an object with more than {MaxServicesPerObject} services behind it; take the narrow services themselves:\n" + string.Join('\n', offenders.Distinct().Order(StringComparer.Ordinal)));

        // The handlers and middleware do take services (guard, catalog, audit log, ...): a check that
        // saw none would pass for a host that takes nothing at all.
        Assert.True(seen >= 40, $"Only {seen} host parameters, fields or properties are services; the check no longer sees the endpoint handlers");
    }

    [Fact]
    public void TheChecks_SeeALocatorCall_AndABagOfServices()
    {
        // A check that cannot fail is no check: this assembly's probes must be caught by both.
        var calls = LocatorCalls(typeof(CompositionTests).Assembly).Where(c => c.Type == typeof(LocatorProbes)).ToArray();
        Assert.Contains(calls, c => c.Member.EndsWith(".GetRequiredService", StringComparison.Ordinal));
        Assert.Contains(calls, c => c.Member.EndsWith(".GetService", StringComparison.Ordinal));

        Assert.True(IsBag(typeof(ServiceBagProbe)));
        Assert.False(IsBag(typeof(PlacementGuard)));
        var (services, bags) = Signatures(typeof(CompositionTests).Assembly);
        var probes = bags.Where(b => b.Type == typeof(LocatorProbes)).Select(b => b.Description).ToArray();
        Assert.Contains(probes, d => d.Contains(" takes 'bag'", StringComparison.Ordinal));
        Assert.Contains(probes, d => d.Contains(" holds a field '_bag'", StringComparison.Ordinal));
        Assert.True(services > 0);
    }

    /// <summary>Registrations (<c>*ServiceCollectionExtensions</c>) and the host's composition root build services from the container.</summary>
    private static bool MayResolve(Type type) =>
        type == typeof(AtelierServer) || type.Name.EndsWith("ServiceCollectionExtensions", StringComparison.Ordinal);

    /// <summary>Calls to the container's resolving members (and to <c>HttpContext.RequestServices</c>), by declaring user type.</summary>
    private static IEnumerable<(Type Type, string Member)> LocatorCalls(Assembly assembly) =>
        ThinHostTests.Calls(assembly)
            .Where(c => c.Callee.DeclaringType is { } declaring
                && (Resolvers.Contains(declaring.FullName ?? "") || (declaring.FullName == "Microsoft.AspNetCore.Http.HttpContext" && c.Callee.Name == "get_RequestServices")))
            .Select(c => (ThinHostTests.UserType(c.Caller), $"{c.Callee.DeclaringType!.FullName}.{c.Callee.Name}"));

    /// <summary>
    /// Counts the parameters, fields and properties of <paramref name="assembly"/>'s types (lambdas and
    /// state machines included) whose type is a service, and lists those whose type is a bag of services.
    /// </summary>
    private static (int Services, List<(Type Type, string Description)> Bags) Signatures(Assembly assembly)
    {
        const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var services = 0;
        var bags = new List<(Type, string)>();
        foreach (var type in assembly.GetTypes())
        {
            var user = ThinHostTests.UserType(type);
            if (IsBag(type) && !IsCompilerGenerated(type))
            {
                bags.Add((user, $"{type.FullName} is a bag of services"));
            }

            var members = new List<(Type Type, string Description)>();
            foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
            {
                members.AddRange(method.GetParameters().Select(p => (p.ParameterType, $"{type.FullName}.{method.Name} takes '{p.Name}' of type {p.ParameterType.FullName}")));
            }

            members.AddRange(type.GetFields(all).Select(f => (f.FieldType, $"{type.FullName} holds a field '{f.Name}' of type {f.FieldType.FullName}")));
            members.AddRange(type.GetProperties(all).Select(p => (p.PropertyType, $"{type.FullName} exposes a property '{p.Name}' of type {p.PropertyType.FullName}")));
            foreach (var (memberType, description) in members)
            {
                if (IsService(memberType))
                {
                    services++;
                }

                if (IsBag(memberType))
                {
                    bags.Add((user, description));
                }
            }
        }

        return (services, bags);
    }

    /// <summary>A type whose public surface hands out more than <see cref="MaxServicesPerObject"/> services.</summary>
    private static bool IsBag(Type type)
    {
        if (type.IsPrimitive || type.IsEnum || !IsOurs(type))
        {
            return false;
        }

        var exposed = type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Select(p => p.PropertyType)
            .Concat(type.GetFields(BindingFlags.Public | BindingFlags.Instance).Select(f => f.FieldType))
            .Count(IsService);
        return exposed > MaxServicesPerObject;
    }

    /// <summary>
    /// A service: the container itself, or a class or interface of ours that does work rather than
    /// carry data (records, enums, delegates, exceptions and attributes are data or plumbing).
    /// </summary>
    private static bool IsService(Type type) =>
        type == typeof(IServiceProvider)
        || (IsOurs(type) && (type.IsInterface || type.IsClass)
            && !IsRecord(type)
            && !typeof(Delegate).IsAssignableFrom(type)
            && !typeof(Exception).IsAssignableFrom(type)
            && !typeof(Attribute).IsAssignableFrom(type)
            && !(type.IsAbstract && type.IsSealed)
            && !IsCompilerGenerated(type));

    private static bool IsOurs(Type type) => (type.Assembly.GetName().Name ?? "").StartsWith("Atelier.", StringComparison.Ordinal);

    // The compiler gives every record a clone method under this unspeakable name.
    private static bool IsRecord(Type type) => type.GetMethod("<Clone>$", BindingFlags.Public | BindingFlags.Instance) is not null;

    // Closures and state machines (named <...>) hold what their method took; they are checked through their fields.
    private static bool IsCompilerGenerated(Type type) => type.Name.Contains('<', StringComparison.Ordinal) || type.IsDefined(typeof(CompilerGeneratedAttribute), inherit: false);
}

/// <summary>Deliberately what the composition checks forbid, for <see cref="CompositionTests.TheChecks_SeeALocatorCall_AndABagOfServices"/> to find.</summary>
internal sealed class LocatorProbes(ServiceBagProbe bag)
{
    private readonly ServiceBagProbe _bag = bag;

    public ServiceBagProbe Bag => _bag;

    public static Func<IServiceProvider, PlacementGuard> Lambda() => services => services.GetRequiredService<PlacementGuard>();

    public static object? Direct(IServiceProvider services) => services.GetService(typeof(AuditLog));
}

/// <summary>Four services behind one object: a service locator in all but name.</summary>
internal sealed class ServiceBagProbe
{
    public required PlacementGuard Guard { get; init; }

    public required StorageLocations Locations { get; init; }

    public required AuditLog Audit { get; init; }

    public required DataDirectoryStartup Startup { get; init; }
}
