using System.Net;
using System.Text;
using System.Text.Json;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;

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

    /// <summary>
    /// A tiny model stored in <paramref name="dtype"/> under <paramref name="server"/>'s import root: a float32 one
    /// makes a job place a float32 adapter (an adapter takes its base's dtype).
    /// </summary>
    public static string TinyModel(TestServer server, string name, SafeTensorDType dtype)
    {
        ArgumentNullException.ThrowIfNull(server);
        var dir = Path.Combine(server.ImportRoot, Guid.NewGuid().ToString("N"), name);
        TinyModelWriter.Write(dir, seed: 5, dtype: dtype);
        return dir;
    }

    /// <summary>
    /// Fine-tunes <paramref name="baseModel"/> on <see cref="TrainingLines"/> through the API and waits for the job
    /// to succeed; returns the fine-tuned model's id and the job's id.
    /// </summary>
    /// <param name="server">The server.</param>
    /// <param name="baseModel">The base model (an id, or <c>name@alias</c>).</param>
    /// <param name="steps">Training steps.</param>
    /// <param name="learningRate">Peak learning rate.</param>
    /// <param name="suffix">The job's <c>suffix</c>, when given.</param>
    /// <param name="registeredModelName">The job's <c>registered_model_name</c>, when given.</param>
    /// <param name="key">The API key to act with; the operator's when null.</param>
    public static async Task<(string Model, string JobId)> FineTuneAsync(
        TestServer server, string baseModel, int steps = 8, double learningRate = 1e-2, string? suffix = null, string? registeredModelName = null, string? key = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        using var client = server.Client(key);
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TrainingLines());
        var request = new Dictionary<string, object?>
        {
            ["model"] = baseModel,
            ["training_files"] = new[] { new { file_id = train, weight = 1 } },
            ["hyperparameters"] = new { training_steps = steps, learning_rate = learningRate, seq_len = 64 },
            ["auto_start"] = true,
        };
        if (suffix is not null)
        {
            request["suffix"] = suffix;
        }

        if (registeredModelName is not null)
        {
            request["registered_model_name"] = registeredModelName;
        }

        using var created = await client.PostAsync("/v1/fine_tuning/jobs", new StringContent(JsonSerializer.Serialize(request), Encoding.UTF8, "application/json"));
        var createdBody = await created.Content.ReadAsStringAsync();
        Assert.True(created.StatusCode == HttpStatusCode.OK, createdBody);
        var id = JsonDocument.Parse(createdBody).RootElement.GetProperty("id").GetString()!;
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            using var job = JsonDocument.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{id}"));
            var status = job.RootElement.GetProperty("status").GetString();
            if (status == "SUCCESS")
            {
                return (job.RootElement.GetProperty("fine_tuned_model").GetString()!, id);
            }

            Assert.True(status is not ("FAILED" or "FAILED_VALIDATION" or "CANCELLED"), $"job ended {status}: {job.RootElement}");
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(240), $"job not SUCCESS within 240 s: {job.RootElement}");
            await Task.Delay(100);
        }
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
