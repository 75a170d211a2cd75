using System.Net;
using System.Text;
using System.Text.Json;
using Atelier.Modeling.Mistral;

namespace Atelier.Testing;

/// <summary>Tiny models and training data the server's and the CLI's tests share.</summary>
public static class TestModels
{
    /// <summary>A tiny model in a temporary directory, outside every server's import roots: for tests that load it themselves.</summary>
    public static string TinyModel(string name = "tiny-model")
    {
        var dir = Path.Combine(TempDirectory.Create("atelier-tiny"), name);
        TinyModelWriter.Write(dir, seed: 5);
        return dir;
    }

    /// <summary>A tiny model under <paramref name="server"/>'s default import root (<c>import/</c> in its data directory), where an import may read it.</summary>
    public static string TinyModel(TestServer server, string name = "tiny-model")
    {
        ArgumentNullException.ThrowIfNull(server);
        var dir = Path.Combine(server.ImportRoot, Guid.NewGuid().ToString("N"), name);
        TinyModelWriter.Write(dir, seed: 5);
        return dir;
    }

    /// <summary>Imports the model in <paramref name="dir"/> through <c>POST /api/v1/models/import</c> and checks the status.</summary>
    public static async Task<JsonElement> ImportAsync(TestServer server, string dir, string? name = null, HttpStatusCode expected = HttpStatusCode.Created, string? key = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        using var client = server.Client(key);
        using var response = await client.PostAsync("/api/v1/models/import", new StringContent(JsonSerializer.Serialize(new { path = dir, name }), Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == expected, $"{(int)response.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>A small task the tiny model can learn a little of: echo a word back in a fixed frame.</summary>
    public static IEnumerable<string> TrainingLines(int count = 48)
    {
        string[] words = ["apple", "river", "stone", "cloud", "ember", "maple", "frost", "amber", "coral", "delta", "lumen", "orbit"];
        for (var i = 0; i < count; i++)
        {
            var w = words[i % words.Length];
            yield return ApiRequests.Chat($"Say {w} {i}.", $"{w} {i} {w}.");
        }
    }
}
