using System.CommandLine;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Atelier.Server.Hosting;

namespace Atelier.Cli;

/// <summary>The options every client command shares, and how they resolve.</summary>
internal sealed record ClientOptions(Option<string?> Data, Option<string?> Server, Option<string?> ApiKey, Option<bool> Json)
{
    public bool WantsJson(ParseResult parse) => parse.GetValue(Json);

    public ApiClient Connect(ParseResult parse)
    {
        var (url, key) = ServerDiscovery.Resolve(parse.GetValue(Server), parse.GetValue(ApiKey), parse.GetValue(Data) ?? AtelierCommands.DefaultDataDirectory);
        return new ApiClient(url, key);
    }
}

/// <summary>A user-facing CLI error: printed without a stack trace, exit code 2.</summary>
internal sealed class CliException(string message) : Exception(message);

/// <summary>A small HTTP client for the Atelier API that turns error bodies into readable messages.</summary>
internal sealed class ApiClient : IDisposable
{
    public ApiClient(Uri baseAddress, string key)
    {
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = Timeout.InfiniteTimeSpan };
        Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    public HttpClient Http { get; }

    public async Task<JsonNode> GetJsonAsync(string path, CancellationToken cancel) =>
        await SendAsync(new HttpRequestMessage(HttpMethod.Get, path), cancel).ConfigureAwait(false);

    public async Task<JsonNode> SendAsync(HttpRequestMessage request, CancellationToken cancel)
    {
        using (request)
        {
            HttpResponseMessage response;
            try
            {
                response = await Http.SendAsync(request, cancel).ConfigureAwait(false);
            }
            catch (HttpRequestException e)
            {
                throw new CliException($"Cannot reach the Atelier server at {Http.BaseAddress}: {e.Message}. Is 'atelier serve' running?");
            }

            using (response)
            {
                var text = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
                if (!response.IsSuccessStatusCode)
                {
                    throw new CliException(Describe(response, text));
                }

                return JsonNode.Parse(text) ?? new JsonObject();
            }
        }
    }

    public static string Describe(HttpResponseMessage response, string body)
    {
        var message = $"{(int)response.StatusCode} {response.ReasonPhrase}";
        try
        {
            var json = JsonNode.Parse(body);
            message += ": " + (json?["message"] ?? json?["detail"])?.ToString();
            if ((json?["problems"] as JsonArray) is { Count: > 0 } problems)
            {
                foreach (var p in problems.Take(20))
                {
                    var where = string.Join(" ", new[] { p?["file"], p?["line"] is { } l ? "line " + l : null, p?["field"] }.Where(x => x is not null));
                    message += $"\n  {where}: {p?["message"]}";
                }

                if (json?["total_problems"]?.GetValue<int>() is { } total && total > problems.Count)
                {
                    message += $"\n  ... {total} problems in all.";
                }
            }
        }
        catch (System.Text.Json.JsonException)
        {
            message += ": " + body;
        }

        return message;
    }

    public void Dispose() => Http.Dispose();
}
