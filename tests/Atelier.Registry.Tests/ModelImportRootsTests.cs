using Atelier.Core.Errors;

namespace Atelier.Registry.Tests;

/// <summary>
/// <see cref="ModelImportRoots"/> over real directories and symbolic links: what resolves under a root
/// is returned resolved, everything else gets one refusal that does not depend on the path.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ModelImportRootsTests : IDisposable
{
    private readonly string _base = Atelier.Testing.TestCleanup.CreateDirectory("atelier-import-roots");
    private readonly string _root;
    private readonly string _outside;
    private readonly ModelImportRoots _roots;

    public ModelImportRootsTests()
    {
        _root = Directory.CreateDirectory(Path.Combine(_base, "root")).FullName;
        _outside = Directory.CreateDirectory(Path.Combine(_base, "outside", "model")).FullName;
        File.WriteAllText(Path.Combine(_outside, "params.json"), "{}");
        _roots = new ModelImportRoots([_root]);
    }

    public void Dispose() => Atelier.Testing.TestCleanup.Delete(_base);

    [Fact]
    public void Resolve_OfADirectoryUnderTheRoot_ReturnsIt()
    {
        var model = Directory.CreateDirectory(Path.Combine(_root, "team", "model")).FullName;
        Assert.Equal(model, _roots.Resolve(model));
        Assert.Equal(model, _roots.Resolve(model + "/"));
        Assert.Equal(model, _roots.Resolve(Path.Combine(_root, "team", ".", "model")));
    }

    [Fact]
    public void Resolve_OfAMissingPathUnderTheRoot_ReturnsItForValidationToReport()
    {
        var missing = Path.Combine(_root, "not-there");
        Assert.Equal(missing, _roots.Resolve(missing));
    }

    [Fact]
    public void Resolve_OutsideTheRoot_GivesTheSameRefusalWhetherThePathExistsOrNot()
    {
        var existing = Assert.Throws<ForbiddenException>(() => _roots.Resolve(_outside));
        var missing = Assert.Throws<ForbiddenException>(() => _roots.Resolve(Path.Combine(_base, "outside", "no-such-model")));
        var system = Assert.Throws<ForbiddenException>(() => _roots.Resolve("/etc"));
        Assert.Equal(existing.Message, missing.Message);
        Assert.Equal(existing.Message, system.Message);
        Assert.Contains("models.import_roots", existing.Message, StringComparison.Ordinal);
        Assert.Contains(_root, existing.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("outside", existing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Resolve_WithDotDot_IsRefusedEvenWhenItWouldStayInside()
    {
        Directory.CreateDirectory(Path.Combine(_root, "a"));
        var escape = Assert.Throws<ForbiddenException>(() => _roots.Resolve(Path.Combine(_root, "..", "outside", "model")));
        var inside = Assert.Throws<ForbiddenException>(() => _roots.Resolve(Path.Combine(_root, "a", "..", "a")));
        Assert.Equal(escape.Message, inside.Message);
    }

    [Fact]
    public void Resolve_ThroughALinkThatLeavesTheRoot_IsRefused()
    {
        var link = Path.Combine(_root, "link");
        Directory.CreateSymbolicLink(link, _outside);
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(link));

        // A relative link whose `..` climbs out, and a chain of links that ends outside.
        var relative = Path.Combine(_root, "relative");
        Directory.CreateSymbolicLink(relative, "../outside/model");
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(relative));
        var chain = Path.Combine(_root, "chain");
        Directory.CreateSymbolicLink(chain, relative);
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(chain));
    }

    [Fact]
    public void Resolve_OfAModelWhoseFileLinksOutOfTheRoot_IsRefused()
    {
        var model = Directory.CreateDirectory(Path.Combine(_root, "model")).FullName;
        File.CreateSymbolicLink(Path.Combine(model, "params.json"), Path.Combine(_outside, "params.json"));
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(model));
    }

    [Fact]
    public void Resolve_ThroughALinkThatStaysInsideOrARootReachedByALink_ReturnsTheRealPath()
    {
        var real = Directory.CreateDirectory(Path.Combine(_root, "real")).FullName;
        var alias = Path.Combine(_root, "alias");
        Directory.CreateSymbolicLink(alias, "real");
        Assert.Equal(real, _roots.Resolve(alias));

        // The root configured through a link matches paths given through its target, and back.
        var linkedRoot = Path.Combine(_base, "linked-root");
        Directory.CreateSymbolicLink(linkedRoot, _root);
        var viaLink = new ModelImportRoots([linkedRoot]);
        Assert.Equal(real, viaLink.Resolve(real));
        Assert.Equal(real, viaLink.Resolve(Path.Combine(linkedRoot, "real")));
    }

    [Fact]
    public void Resolve_OfASiblingWhoseNameStartsLikeTheRoot_IsRefused()
    {
        var sibling = Directory.CreateDirectory(_root + "-evil").FullName;
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(sibling));
    }

    [Fact]
    public void Resolve_OfALinkLoop_IsRefused()
    {
        var a = Path.Combine(_root, "a");
        var b = Path.Combine(_root, "b");
        Directory.CreateSymbolicLink(a, b);
        Directory.CreateSymbolicLink(b, a);
        Assert.Throws<ForbiddenException>(() => _roots.Resolve(Path.Combine(a, "model")));
    }

    [Fact]
    public void Resolve_OfARelativePath_IsABadRequest() =>
        Assert.Throws<BadRequestException>(() => _roots.Resolve("relative/model"));
}
