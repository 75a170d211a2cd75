using Atelier.Core.Errors;

namespace Atelier.Registry;

/// <summary>
/// The directories base models may be imported from (<c>models.import_roots</c>). An import names a
/// path on the server's machine; it is resolved the way the kernel would open it (every symbolic link
/// of every component followed, as <c>realpath</c> does) and refused unless the result lies under a
/// root. The refusal is one message whatever the path is, so an import cannot probe which
/// directories exist outside the roots.
/// </summary>
public sealed class ModelImportRoots
{
    // Linux's MAXSYMLINKS: more links than this in one resolution is a loop (ELOOP).
    private const int MaxLinkHops = 40;

    private static readonly char[] Separators = [Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar];

    private readonly string[] _resolved;

    /// <summary>Creates the roots.</summary>
    /// <param name="roots">Absolute directories; each is itself resolved, so a root reached through a link still matches.</param>
    /// <exception cref="ArgumentException">A root is not an absolute path.</exception>
    public ModelImportRoots(IEnumerable<string> roots)
    {
        ArgumentNullException.ThrowIfNull(roots);
        Roots = [.. roots.Select(r => Path.IsPathFullyQualified(r)
            ? Path.TrimEndingDirectorySeparator(Path.GetFullPath(r))
            : throw new ArgumentException($"An import root must be an absolute directory, not '{r}'.", nameof(roots)))];
        _resolved = [.. Roots.Select(RealPath)];
    }

    /// <summary>The roots as configured (absolute).</summary>
    public IReadOnlyList<string> Roots { get; }

    /// <summary>
    /// The real path of <paramref name="requested"/>, which is a path under one of the roots, and
    /// whose entries that are links resolve under one of them too (an import reads them).
    /// </summary>
    /// <exception cref="BadRequestException">The path is not absolute.</exception>
    /// <exception cref="ForbiddenException">
    /// The path is not under a root: it names <c>..</c>, resolves outside every root, or a link among
    /// its entries does. The same message whether or not the path exists.
    /// </exception>
    public string Resolve(string requested)
    {
        ArgumentNullException.ThrowIfNull(requested);
        if (!Path.IsPathFullyQualified(requested))
        {
            throw new BadRequestException($"The model directory must be an absolute path on the server's machine, not '{requested}'.", "invalid_model_directory");
        }

        // `..` is refused outright rather than collapsed: after a link, `..` leaves the link's
        // target, not the directory written before it, so no textual rule gets it right.
        if (requested.Split(Separators).Contains(".."))
        {
            throw Refused();
        }

        var real = RealPath(Path.GetFullPath(requested));
        if (!IsUnderRoot(real))
        {
            throw Refused();
        }

        if (Directory.Exists(real))
        {
            foreach (var entry in new DirectoryInfo(real).EnumerateFileSystemInfos())
            {
                if (entry.LinkTarget is not null && !IsUnderRoot(RealPath(entry.FullName)))
                {
                    throw Refused();
                }
            }
        }

        return real;
    }

    /// <summary>
    /// <paramref name="fullPath"/> with every symbolic link of every component replaced by what it
    /// points to, recursively, and <c>.</c> and <c>..</c> applied to the resolved directories, as
    /// <c>realpath(3)</c> does. Components that do not exist are kept as written. A loop of links
    /// resolves to an empty string, which is under no root.
    /// </summary>
    public static string RealPath(string fullPath)
    {
        ArgumentNullException.ThrowIfNull(fullPath);
        var current = Path.GetPathRoot(fullPath) ?? throw new ArgumentException($"'{fullPath}' is not an absolute path.", nameof(fullPath));
        var pending = new Stack<string>();
        Push(pending, fullPath[current.Length..]);
        var hops = 0;
        while (pending.TryPop(out var part))
        {
            if (part == ".")
            {
                continue;
            }

            if (part == "..")
            {
                current = Path.GetDirectoryName(current) ?? current;
                continue;
            }

            var next = Path.Join(current, part);
            var target = LinkTarget(next);
            if (target is null)
            {
                current = next;
                continue;
            }

            if (++hops > MaxLinkHops)
            {
                return "";
            }

            // The target's own components are resolved next, from the link's directory when it is
            // relative or from the file system's root when it is absolute; then the rest of the path.
            if (Path.GetPathRoot(target) is { Length: > 0 } targetRoot)
            {
                current = targetRoot;
                target = target[targetRoot.Length..];
            }

            Push(pending, target);
        }

        return current;
    }

    private bool IsUnderRoot(string real)
    {
        if (real.Length == 0)
        {
            return false;
        }

        foreach (var root in _resolved)
        {
            if (root.Length == 0)
            {
                continue;
            }

            if (string.Equals(real, root, StringComparison.Ordinal)
                || (real.StartsWith(root, StringComparison.Ordinal) && (root.EndsWith(Path.DirectorySeparatorChar) || real[root.Length] == Path.DirectorySeparatorChar)))
            {
                return true;
            }
        }

        return false;
    }

    private ForbiddenException Refused() => new(
        $"Models can be imported only from the configured import roots (models.import_roots): {string.Join(", ", Roots)}. "
        + "Put the model directory under one of them (no '..', no links that lead out of them), or add a root to atelier.json.");

    private static void Push(Stack<string> pending, string relative)
    {
        var parts = relative.Split(Separators, StringSplitOptions.RemoveEmptyEntries);
        for (var i = parts.Length - 1; i >= 0; i--)
        {
            pending.Push(parts[i]);
        }
    }

    // What the link at `path` points to, or null when it is not a link (or does not exist).
    private static string? LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
