using Atelier.Core.Errors;

namespace Atelier.Registry.Tests;

/// <summary>The rules of registered names, aliases and <c>name@N</c> version numbers.</summary>
public sealed class RegisteredNamesTests
{
    [Theory]
    [InlineData("tiny-model", true)]
    [InlineData("tiny-model:My_Suffix.2", true)]
    [InlineData("support-bot", true)]
    [InlineData("", false)]
    [InlineData(":leading", false)]
    [InlineData("a@b", false)]
    [InlineData("a/b", false)]
    [InlineData("a b", false)]
    public void Names_HoldColonsButNeverTheAliasSeparatorOrASlash(string name, bool valid)
    {
        Assert.Equal(valid, RegisteredNames.IsValidName(name));
        Assert.False(RegisteredNames.IsValidName(new string('a', RegisteredNames.MaxNameLength + 1)));
    }

    [Theory]
    [InlineData("production", true)]
    [InlineData("staging-2", true)]
    [InlineData("canary_eu", true)]
    [InlineData("Production", false)]
    [InlineData("3", false)]
    [InlineData("-x", false)]
    [InlineData("a.b", false)]
    [InlineData("", false)]
    public void Aliases_AreLowerCaseAndStartWithALetter_SoTheyNeverReadAsAVersion(string alias, bool valid)
    {
        Assert.Equal(valid, RegisteredNames.IsValidAlias(alias));
        if (!valid)
        {
            var error = Assert.Throws<ValidationFailedException>(() => RegisteredNames.ValidateAlias(alias));
            Assert.Equal(422, error.StatusCode);
        }
    }

    [Theory]
    [InlineData("1", 1)]
    [InlineData("42", 42)]
    [InlineData("0", null)]
    [InlineData("-1", null)]
    [InlineData("production", null)]
    [InlineData("9999999999", null)]
    public void VersionSelectors_ArePositiveNumbers(string selector, int? expected) =>
        Assert.Equal(expected, RegisteredNames.TryParseVersion(selector));

    [Fact]
    public void DefaultFineTunedName_IsTheBaseAndTheSuffix() =>
        Assert.Equal(["tiny:bot", "tiny:fine-tuned"], [ModelRegistry.DefaultFineTunedName("tiny", "bot"), ModelRegistry.DefaultFineTunedName("tiny", null)]);
}
