using System.Reflection;
using System.Reflection.Emit;

namespace Atelier.Architecture.Tests;

/// <summary>
/// The host is thin: no type of <c>Atelier.Server</c> does file or database I/O itself. It parses,
/// authorises, calls a domain service and maps the answer; files and the catalog are the domain
/// assemblies' business. Checked on the compiled IL, so a call hidden in a lambda, an async state
/// machine or an iterator is seen too. Streams of requests and responses are not file I/O and pass.
/// </summary>
public sealed class ThinHostTests
{
    /// <summary>
    /// Host types that still do file I/O themselves, each a step of the architecture issue (#10)
    /// to move into the domain assembly that owns it. The list may only shrink: the test fails when
    /// one of them no longer does I/O, so that it is taken off.
    /// </summary>
    private static readonly string[] FileIoInTheHostStill = [];

    private static readonly Dictionary<short, OpCode> OneByte = [];
    private static readonly Dictionary<short, OpCode> TwoByte = [];

    static ThinHostTests()
    {
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var code = (OpCode)field.GetValue(null)!;
            if (code.Size == 1)
            {
                OneByte[code.Value] = code;
            }
            else
            {
                TwoByte[(short)(code.Value & 0xFF)] = code;
            }
        }
    }

    [Fact]
    public void TheHost_DoesNoFileOrDatabaseIo()
    {
        var found = IoCalls(typeof(Atelier.Server.Hosting.AtelierServer).Assembly);
        var offenders = found.Where(f => !FileIoInTheHostStill.Contains(f.Type)).Select(f => $"{f.Type} calls {f.Member}").Distinct().Order(StringComparer.Ordinal).ToArray();
        Assert.True(offenders.Length == 0, "Atelier.Server does file or database I/O itself; move it into the domain assembly that owns it:\n" + string.Join('\n', offenders));
        var moved = FileIoInTheHostStill.Where(t => !found.Any(f => f.Type == t)).ToArray();
        Assert.True(moved.Length == 0, $"No longer doing I/O in the host, take them off {nameof(FileIoInTheHostStill)}: {string.Join(", ", moved)}");
    }

    [Fact]
    public void TheCheck_SeesIo_InMethodsLambdasAndStateMachines()
    {
        // A check that cannot fail is no check: this assembly's own probes must all be caught.
        var found = IoCalls(typeof(ThinHostTests).Assembly).Where(f => f.Type.StartsWith(typeof(IoProbes).FullName!, StringComparison.Ordinal)).ToArray();
        Assert.Contains(found, f => f.Member == "System.IO.File.ReadAllText");
        Assert.Contains(found, f => f.Member == "System.IO.Directory.CreateDirectory");
        Assert.Contains(found, f => f.Member == "System.IO.FileStream..ctor");
        Assert.Contains(found, f => f.Member == "System.IO.File.WriteAllTextAsync");
        Assert.Contains(found, f => f.Member == "System.IO.File.Exists");
        Assert.DoesNotContain(found, f => f.Member.StartsWith("System.IO.MemoryStream", StringComparison.Ordinal));
    }

    /// <summary>Calls, constructions and method references to I/O members, by declaring user type.</summary>
    private static List<(string Type, string Member)> IoCalls(Assembly assembly) =>
        [.. Calls(assembly)
            .Where(c => c.Callee.DeclaringType is { } declaring && IsIo(declaring))
            .Select(c => (UserType(c.Caller).FullName!, $"{c.Callee.DeclaringType!.FullName}.{c.Callee.Name}"))];

    /// <summary>
    /// Every method that a method or constructor of <paramref name="assembly"/> calls, constructs with or
    /// takes a reference to (<c>call</c>, <c>callvirt</c>, <c>newobj</c>, <c>ldftn</c>, <c>ldvirtftn</c>),
    /// with the type whose IL names it (compiler-generated types included: lambdas, state machines).
    /// </summary>
    internal static IEnumerable<(Type Caller, MethodBase Callee)> Calls(Assembly assembly)
    {
        foreach (var type in assembly.GetTypes())
        {
            const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var method in type.GetMethods(all).Cast<MethodBase>().Concat(type.GetConstructors(all)))
            {
                byte[]? il;
                try
                {
                    il = method.GetMethodBody()?.GetILAsByteArray();
                }
                catch (Exception e) when (e is InvalidOperationException or BadImageFormatException)
                {
                    continue;
                }

                if (il is null)
                {
                    continue;
                }

                foreach (var token in MethodTokens(il))
                {
                    MethodBase? callee;
                    try
                    {
                        callee = type.Module.ResolveMethod(
                            token,
                            type.IsGenericType ? type.GetGenericArguments() : null,
                            method.IsGenericMethod ? method.GetGenericArguments() : null);
                    }
                    catch (Exception e) when (e is ArgumentException or BadImageFormatException or TypeLoadException or FileNotFoundException)
                    {
                        continue;
                    }

                    if (callee is not null)
                    {
                        yield return (type, callee);
                    }
                }
            }
        }
    }

    private static bool IsIo(Type type) =>
        type == typeof(File) || type == typeof(Directory) || type == typeof(FileInfo) || type == typeof(DirectoryInfo)
        || type == typeof(FileSystemInfo) || type == typeof(RandomAccess) || typeof(FileStream).IsAssignableFrom(type)
        || typeof(System.Data.Common.DbConnection).IsAssignableFrom(type) || typeof(System.Data.Common.DbCommand).IsAssignableFrom(type)
        || typeof(System.Data.Common.DbDataReader).IsAssignableFrom(type)
        || (type.Namespace ?? "").StartsWith("Microsoft.Data.Sqlite", StringComparison.Ordinal);

    /// <summary>The type a compiler-generated one (lambda closure, state machine) was written in.</summary>
    internal static Type UserType(Type type)
    {
        while (type.DeclaringType is { } outer && type.Name.Contains('<', StringComparison.Ordinal))
        {
            type = outer;
        }

        return type;
    }

    /// <summary>The metadata tokens of the methods that <c>call</c>, <c>callvirt</c>, <c>newobj</c>, <c>ldftn</c> and <c>ldvirtftn</c> name.</summary>
    private static IEnumerable<int> MethodTokens(byte[] il)
    {
        var i = 0;
        while (i < il.Length)
        {
            var code = il[i] == 0xFE ? TwoByte[il[i + 1]] : OneByte[il[i]];
            i += code.Size;
            if (code.OperandType == OperandType.InlineMethod)
            {
                yield return BitConverter.ToInt32(il, i);
            }

            i += code.OperandType switch
            {
                OperandType.InlineNone => 0,
                OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
                OperandType.InlineVar => 2,
                OperandType.InlineI8 or OperandType.InlineR => 8,
                OperandType.InlineSwitch => 4 + (4 * BitConverter.ToInt32(il, i)),
                _ => 4,
            };
        }
    }
}

/// <summary>Deliberate file I/O, for <see cref="ThinHostTests.TheCheck_SeesIo_InMethodsLambdasAndStateMachines"/> to find.</summary>
internal static class IoProbes
{
    public static string Read(string path) => File.ReadAllText(path);

    public static Func<string, DirectoryInfo> Lambda() => path => Directory.CreateDirectory(path);

    public static Stream Open(string path) => new FileStream(path, FileMode.Open);

    public static async Task WriteAsync(string path)
    {
        await Task.Yield();
        await File.WriteAllTextAsync(path, "x");
    }

    public static IEnumerable<bool> Iterate(string path)
    {
        yield return File.Exists(path);
    }

    public static Stream Memory() => new MemoryStream();
}
