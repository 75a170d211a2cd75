using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Atelier.Testing;

/// <summary>The HTTP calls the API tests share: a chat line, an upload, waiting for a dataset build.</summary>
public static class ApiRequests
{
    public static string Chat(string q, string a) =>
        JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = q }, new { role = "assistant", content = a } } });

    /// <summary>Uploads <paramref name="lines"/> as a JSONL file through <c>POST /v1/files</c>; returns its id.</summary>
    public static async Task<string> UploadAsync(HttpClient client, string name, IEnumerable<string> lines, string purpose = "fine-tune")
    {
        var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n")), "file", name },
            { new StringContent(purpose), "purpose" },
        };
        using var response = await client.PostAsync("/v1/files", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonNode.Parse(body)!["id"]!.GetValue<string>();
    }

    /// <summary>Polls a dataset until it is no longer queued or running (at most 120 s).</summary>
    public static async Task<JsonNode> WaitForDatasetAsync(HttpClient client, string id)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var body = JsonNode.Parse(await client.GetStringAsync($"/api/v1/datasets/{id}"))!;
            if (body["status"]!.GetValue<string>() is not ("queued" or "running"))
            {
                return body;
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120), "the build did not finish in 120 s: " + body.ToJsonString());
            await Task.Delay(100);
        }
    }
}
