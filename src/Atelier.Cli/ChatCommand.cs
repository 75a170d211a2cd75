using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier chat MODEL</c>: a conversation in the terminal with a served model (base or fine-tuned),
/// the answer streamed as it is generated. Each line typed is a user turn and the conversation is
/// kept; an empty line or end of input ends it. <c>--message</c> asks one question and exits.
/// </summary>
internal static class ChatCommand
{
    public static Command Build(ClientOptions client)
    {
        var model = new Argument<string>("model") { Description = "The model id (a base model or an ft:... model of your workspace) or alias." };
        var message = new Option<string?>("--message", "-m") { Description = "Ask this one question, print the answer and exit." };
        var system = new Option<string?>("--system") { Description = "A system prompt." };
        var maxTokens = new Option<int?>("--max-tokens") { Description = "The most tokens per answer (default: what the context leaves)." };
        var temperature = new Option<double>("--temperature") { Description = "Sampling temperature: 0 decodes greedily (always the likeliest token); higher values sample more freely.", DefaultValueFactory = _ => 0.7 };
        var seed = new Option<long?>("--seed") { Description = "Seed of the sampler (the API's random_seed): the same model, messages and seed give the same answer. It does not change the model's weights." };
        var command = new Command("chat", "Chat with a served model in the terminal, the answer streamed as it is generated.");
        command.Arguments.Add(model);
        command.Options.Add(message);
        command.Options.Add(system);
        command.Options.Add(maxTokens);
        command.Options.Add(temperature);
        command.Options.Add(seed);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var messages = new JsonArray();
            if (parse.GetValue(system) is { } prompt)
            {
                messages.Add(new JsonObject { ["role"] = "system", ["content"] = prompt });
            }

            var once = parse.GetValue(message);
            var interactive = once is null && !Console.IsInputRedirected;
            if (interactive)
            {
                Console.Error.WriteLine($"Chatting with {parse.GetValue(model)}; an empty line ends the conversation.");
            }

            while (true)
            {
                string? line;
                if (once is not null)
                {
                    line = once;
                }
                else
                {
                    if (interactive)
                    {
                        Console.Error.Write("> ");
                    }

                    line = await Console.In.ReadLineAsync(cancel).ConfigureAwait(false);
                }

                if (string.IsNullOrWhiteSpace(line))
                {
                    return 0;
                }

                messages.Add(new JsonObject { ["role"] = "user", ["content"] = line });
                var body = new JsonObject
                {
                    ["model"] = parse.GetValue(model),
                    ["messages"] = messages.DeepClone(),
                    ["stream"] = true,
                    ["temperature"] = parse.GetValue(temperature),
                    ["max_tokens"] = parse.GetValue(maxTokens),
                    ["random_seed"] = parse.GetValue(seed),
                };
                var answer = await StreamAsync(api, body, cancel).ConfigureAwait(false);
                messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = answer });
                if (once is not null)
                {
                    return 0;
                }
            }
        });
        return command;
    }

    /// <summary>Sends one streamed chat request and writes the answer as it arrives; returns it whole.</summary>
    private static async Task<string> StreamAsync(ApiClient api, JsonObject body, CancellationToken cancel)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = JsonContent.Create(body) };
        HttpResponseMessage response;
        try
        {
            response = await api.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new CliException($"Cannot reach the Atelier server at {api.Http.BaseAddress}: {e.Message}. Is 'atelier serve' running?");
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
            }

            var answer = new System.Text.StringBuilder();
            string? finish = null;
            JsonNode? usage = null;
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false));
            while (await reader.ReadLineAsync(cancel).ConfigureAwait(false) is { } line)
            {
                if (!line.StartsWith("data: ", StringComparison.Ordinal) || line == "data: [DONE]")
                {
                    continue;
                }

                var chunk = JsonNode.Parse(line["data: ".Length..])!;
                var choice = chunk["choices"]![0]!;
                if (choice["delta"]?["content"]?.GetValue<string>() is { Length: > 0 } delta)
                {
                    answer.Append(delta);
                    Console.Out.Write(delta);
                    await Console.Out.FlushAsync(cancel).ConfigureAwait(false);
                }

                finish = choice["finish_reason"]?.GetValue<string>() ?? finish;
                usage = chunk["usage"] ?? usage;
            }

            Console.Out.WriteLine();
            if (usage is not null)
            {
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"[{finish}; {usage["prompt_tokens"]} prompt tokens ({usage["prompt_tokens_details"]?["cached_tokens"] ?? 0} cached), {usage["completion_tokens"]} generated]"));
            }

            return answer.ToString();
        }
    }
}
