namespace Atelier.Cli.Tests;

/// <summary><c>atelier chat</c> against a real server, as a user runs it.</summary>
public sealed class ChatCliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => CliRun.Atelier(server, args);

    [Fact]
    public async Task Chat_StreamsTheAnswer_AndSaysWhyItEnded_OrNamesAnUnknownModel()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));

        var (exit, output) = await Atelier(server, "chat", "tiny-model", "--message", "hello", "--max-tokens", "5", "--seed", "3");
        Assert.True(exit == 0, output);
        Assert.Contains("[length; ", output, StringComparison.Ordinal);
        Assert.Contains(", 5 generated]", output, StringComparison.Ordinal);

        // The same seed gives the same answer: the first line is the streamed text.
        var (_, again) = await Atelier(server, "chat", "tiny-model", "--message", "hello", "--max-tokens", "5", "--seed", "3");
        Assert.Equal(output.Split('\n')[0], again.Split('\n')[0]);

        (exit, output) = await Atelier(server, "chat", "no-such-model", "--message", "hello");
        Assert.NotEqual(0, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);
        Assert.Contains("no-such-model", output, StringComparison.Ordinal);
    }
}
