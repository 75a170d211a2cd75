using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Inference.Serving;
using Atelier.Server.Auth;
using Atelier.Server.Hosting;

namespace Atelier.Server.Inference;

/// <summary>A message of a chat request (for the OpenAPI document; <see cref="ChatRequestReader"/> reads it).</summary>
/// <param name="Role"><c>system</c>, <c>user</c>, <c>assistant</c> or <c>tool</c>.</param>
/// <param name="Content">Text, or an array of content chunks (<c>{"type": "text", "text": ...}</c>).</param>
/// <param name="Prefix">On the last assistant message: the answer continues it.</param>
/// <param name="ToolCalls">An assistant's tool calls.</param>
/// <param name="ToolCallId">A tool message's call.</param>
/// <param name="Name">A tool message's function.</param>
public sealed record ChatMessageInput(string Role, JsonElement? Content, bool? Prefix, JsonElement? ToolCalls, string? ToolCallId, string? Name);

/// <summary>The body of <c>POST /v1/chat/completions</c>: Mistral's <c>ChatCompletionRequest</c>.</summary>
/// <param name="Model">A model id, <c>name@alias</c> or <c>name@N</c>.</param>
/// <param name="Messages">The conversation.</param>
/// <param name="Temperature">Sampling temperature.</param>
/// <param name="TopP">Nucleus sampling.</param>
/// <param name="MaxTokens">At most this many tokens.</param>
/// <param name="Stream">Server-sent events when true.</param>
/// <param name="Stop">Stop sequences.</param>
/// <param name="RandomSeed">The sampler's seed (not the weights').</param>
/// <param name="N">Choices to generate.</param>
/// <param name="PresencePenalty">Presence penalty.</param>
/// <param name="FrequencyPenalty">Frequency penalty.</param>
/// <param name="SafePrompt">Prepend Mistral's safety prompt.</param>
/// <param name="Tools">Functions the model may call.</param>
/// <param name="ToolChoice"><c>auto</c>, <c>none</c>, <c>any</c>, <c>required</c>, or a function.</param>
/// <param name="ParallelToolCalls">Whether it may call several at once.</param>
/// <param name="ResponseFormat"><c>text</c>, <c>json_object</c> or <c>json_schema</c>.</param>
/// <param name="PromptMode">Mistral's prompt mode.</param>
public sealed record ChatCompletionRequest(
    string Model, IReadOnlyList<ChatMessageInput> Messages, double? Temperature, double? TopP, int? MaxTokens, bool? Stream, JsonElement? Stop,
    int? RandomSeed, int? N, double? PresencePenalty, double? FrequencyPenalty, bool? SafePrompt, JsonElement? Tools, JsonElement? ToolChoice,
    bool? ParallelToolCalls, JsonElement? ResponseFormat, string? PromptMode);

/// <summary>The body of <c>POST /v1/fim/completions</c>: Mistral's <c>FIMCompletionRequest</c>.</summary>
/// <param name="Model">A model id.</param>
/// <param name="Prompt">The code before.</param>
/// <param name="Suffix">The code after.</param>
/// <param name="Temperature">Sampling temperature.</param>
/// <param name="TopP">Nucleus sampling.</param>
/// <param name="MaxTokens">At most this many tokens.</param>
/// <param name="Stream">Server-sent events when true.</param>
/// <param name="Stop">Stop sequences.</param>
/// <param name="RandomSeed">The sampler's seed.</param>
/// <param name="MinTokens">Not supported (422 when above 0).</param>
public sealed record FimCompletionRequest(string Model, string Prompt, string? Suffix, double? Temperature, double? TopP, int? MaxTokens, bool? Stream, JsonElement? Stop, int? RandomSeed, int? MinTokens);

/// <summary>The body of <c>POST /v1/embeddings</c>.</summary>
/// <param name="Model">A model id.</param>
/// <param name="Input">A text or an array of texts.</param>
/// <param name="OutputDimension">Truncate to this many dimensions.</param>
/// <param name="OutputDtype"><c>float</c>, <c>int8</c>, <c>uint8</c>, <c>binary</c> or <c>ubinary</c>.</param>
/// <param name="EncodingFormat"><c>float</c> or <c>base64</c>.</param>
public sealed record EmbeddingRequest(string Model, JsonElement Input, int? OutputDimension, string? OutputDtype, string? EncodingFormat);

/// <summary>Token counts of an answer.</summary>
/// <param name="PromptTokens">Prompt tokens.</param>
/// <param name="CompletionTokens">Generated tokens.</param>
/// <param name="TotalTokens">Both.</param>
/// <param name="PromptTokensDetails">Cached prompt tokens (completions only).</param>
public sealed record UsageObject(
    int PromptTokens, int CompletionTokens, int TotalTokens,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] PromptTokensDetailsObject? PromptTokensDetails = null);

/// <summary>Cached prompt tokens.</summary>
/// <param name="CachedTokens">Tokens of the prompt the KV cache already held.</param>
public sealed record PromptTokensDetailsObject(int CachedTokens);

/// <summary>The assistant's message of a choice.</summary>
/// <param name="Role">Always <c>assistant</c>.</param>
/// <param name="Content">The text.</param>
/// <param name="ToolCalls">The tool calls it made.</param>
/// <param name="Prefix">Always false.</param>
public sealed record AssistantMessageObject(string Role, string Content, JsonElement? ToolCalls, bool Prefix);

/// <summary>A choice of a completion.</summary>
/// <param name="Index">Its index.</param>
/// <param name="Message">The answer.</param>
/// <param name="FinishReason"><c>stop</c>, <c>length</c> or <c>tool_calls</c>.</param>
public sealed record CompletionChoiceObject(int Index, AssistantMessageObject Message, string FinishReason);

/// <summary>A chat or FIM completion (built as JSON; streamed as <c>chat.completion.chunk</c> events when <c>stream</c> is true).</summary>
/// <param name="Id">Its id.</param>
/// <param name="Object"><c>chat.completion</c> or <c>fim.completion</c>.</param>
/// <param name="Model">The model that answered.</param>
/// <param name="Created">Unix seconds.</param>
/// <param name="Choices">The answers.</param>
/// <param name="Usage">Token counts.</param>
public sealed record CompletionObject(string Id, string Object, string Model, long Created, IReadOnlyList<CompletionChoiceObject> Choices, UsageObject Usage);

/// <summary>An embedding.</summary>
/// <param name="Object">Always <c>embedding</c>.</param>
/// <param name="Embedding">The vector (numbers), or base64 of its bytes.</param>
/// <param name="Index">Its input's index.</param>
public sealed record EmbeddingObject(string Object, JsonElement Embedding, int Index);

/// <summary>The answer of <c>POST /v1/embeddings</c>.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Object">Always <c>list</c>.</param>
/// <param name="Model">The model.</param>
/// <param name="Data">One embedding per input.</param>
/// <param name="Usage">Token counts.</param>
public sealed record EmbeddingResponse(string Id, string Object, string Model, IReadOnlyList<EmbeddingObject> Data, UsageObject Usage);

/// <summary>
/// The Mistral-compatible inference API: <c>POST /v1/chat/completions</c> (streamed as server-sent
/// events when <c>stream</c> is true), <c>POST /v1/fim/completions</c> and <c>POST /v1/embeddings</c>,
/// on base models and on the workspace's fine-tuned models (their base plus their adapter, batched
/// with every other request on the same base). Handlers parse and check the fields, render the prompt
/// with the model's own renderer, and hand it to the engine.
/// </summary>
public static class InferenceEndpoints
{
    /// <summary>Mistral's safety prompt, prepended as a system message when <c>safe_prompt</c> is true.</summary>
    public const string SafePrompt = "Always assist with care, respect, and truth. Respond with utmost utility yet securely. Avoid harmful, unethical, prejudiced, or negative content. Ensure replies promote fairness and positivity.";

    /// <summary>Maps the inference routes.</summary>
    public static void MapInference(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/v1").WithTags("Inference");
        group.MapPost("/chat/completions", ChatAsync).WithSummary("Chat completion (Mistral's API): a conversation in, the assistant's answer out, streamed when stream is true.").WithName("chatCompletion").Reads<ChatCompletionRequest>().Produces<CompletionObject>(StatusCodes.Status200OK, "application/json", "text/event-stream").ProducesErrors(403, 422, 451, 503);
        group.MapPost("/fim/completions", FimAsync).WithSummary("Fill-in-the-middle completion: the code between a prompt and a suffix.").WithName("fimCompletion").Reads<FimCompletionRequest>().Produces<CompletionObject>(StatusCodes.Status200OK, "application/json", "text/event-stream").ProducesErrors(403, 422, 451, 503);
        group.MapPost("/embeddings", EmbeddingsAsync).WithSummary("Embeddings of one or more texts.").WithName("createEmbeddings").Reads<EmbeddingRequest>().Produces<EmbeddingResponse>().ProducesErrors(403, 422, 451, 503);
    }

    private static async Task ChatAsync(HttpContext context, ServingRouter router, ReplicaForwarder forwarder, TimeProvider clock)
    {
        KeepBodyForForwarding(context, router);
        var fields = await RequestFields.ReadAsync(context).ConfigureAwait(false);
        var modelId = fields.String("model", required: true);
        var chat = ChatRequestReader.Read(fields);
        var sampling = SamplingFields.Read(fields);
        fields.ThrowIfInvalid();

        var caller = ApiKeyAuthentication.Caller(context);
        if (await RouteAsync(context, router, forwarder, caller.WorkspaceId, modelId!, Affinity(chat.Messages.FirstOrDefault()?.Content)).ConfigureAwait(false) is not { } served)
        {
            return;
        }

        if (!served.Model.Capabilities.CompletionChat)
        {
            throw new BadRequestException($"Model '{served.Model.Id}' does not do chat completions.", "unsupported_model_capability");
        }

        var messages = chat.Messages;
        if (chat.SafePrompt)
        {
            messages = [new ChatMessage { Role = ChatRole.System, Content = SafePrompt }, .. messages];
        }

        var prompt = served.Base.Formatter.FormatPrompt(messages, chat.ToolsJson, chat.ContinueFinalAssistant);
        var request = sampling.ToRequest(served, prompt, caller.WorkspaceId) with
        {
            ContentEndToken = served.Base.Formatter.ToolCallsTokenId,
            Constraint = ChatConstraints.For(chat, served),
        };
        await RespondAsync(context, clock, request, sampling.Stream, "chat.completion", served.Base.Tokenizer).ConfigureAwait(false);
    }

    private static async Task FimAsync(HttpContext context, ServingRouter router, ReplicaForwarder forwarder, TimeProvider clock)
    {
        KeepBodyForForwarding(context, router);
        var fields = await RequestFields.ReadAsync(context).ConfigureAwait(false);
        var modelId = fields.String("model", required: true);
        var promptText = fields.String("prompt", required: true);
        var suffix = fields.String("suffix");
        var sampling = SamplingFields.Read(fields);
        if (fields.Integer("min_tokens", 0, int.MaxValue) is > 0)
        {
            fields.Problem("min_tokens", "min_tokens is not supported: the answer ends where the model ends it.");
        }

        fields.ThrowIfInvalid();
        var caller = ApiKeyAuthentication.Caller(context);
        if (await RouteAsync(context, router, forwarder, caller.WorkspaceId, modelId!, Affinity(suffix)).ConfigureAwait(false) is not { } served)
        {
            return;
        }

        if (!served.Model.Capabilities.CompletionFim || !served.Base.Formatter.SupportsFim)
        {
            throw new BadRequestException($"Model '{served.Model.Id}' does not do fill-in-the-middle completions (its tokeniser has no [PREFIX]/[SUFFIX] tokens).", "unsupported_model_capability");
        }

        var prompt = served.Base.Formatter.FormatFim(promptText!, suffix);
        var request = sampling.ToRequest(served, prompt, caller.WorkspaceId);
        await RespondAsync(context, clock, request, sampling.Stream, "fim.completion", served.Base.Tokenizer).ConfigureAwait(false);
    }

    private static async Task<IResult> EmbeddingsAsync(HttpContext context, ServingRouter router, ReplicaForwarder forwarder)
    {
        KeepBodyForForwarding(context, router);
        var fields = await RequestFields.ReadAsync(context).ConfigureAwait(false);
        var modelId = fields.String("model", required: true);
        var inputs = fields.Strings("input", required: true);
        if (inputs is { Count: 0 })
        {
            fields.Problem("input", "At least one input is needed.");
        }

        var dimension = fields.Integer("output_dimension", 1, int.MaxValue);
        var dtypeText = fields.String("output_dtype") ?? "float";
        EmbeddingDtype dtype = dtypeText switch
        {
            "float" => EmbeddingDtype.Float,
            "int8" => EmbeddingDtype.Int8,
            "uint8" => EmbeddingDtype.Uint8,
            "binary" => EmbeddingDtype.Binary,
            "ubinary" => EmbeddingDtype.Ubinary,
            _ => (EmbeddingDtype)(-1),
        };
        if (!Enum.IsDefined(dtype))
        {
            fields.Problem("output_dtype", $"Input should be 'float', 'int8', 'uint8', 'binary' or 'ubinary', not '{dtypeText}'.");
        }

        var encoding = fields.String("encoding_format") ?? "float";
        if (encoding is not ("float" or "base64"))
        {
            fields.Problem("encoding_format", $"Input should be 'float' or 'base64', not '{encoding}'.");
        }

        fields.ThrowIfInvalid();
        var caller = ApiKeyAuthentication.Caller(context);
        if (await RouteAsync(context, router, forwarder, caller.WorkspaceId, modelId!, string.Empty).ConfigureAwait(false) is not { } served)
        {
            return Results.Empty;
        }

        var (vectors, tokens) = await Task.Run(() => Embeddings.Create(served, inputs!, (int?)dimension, dtype, context.RequestAborted), context.RequestAborted).ConfigureAwait(false);
        var data = new JsonArray();
        for (var i = 0; i < vectors.Count; i++)
        {
            data.Add(new JsonObject
            {
                ["object"] = "embedding",
                ["embedding"] = encoding == "base64" ? Base64(vectors[i], dtype) : new JsonArray([.. vectors[i].Select(v => (JsonNode)(dtype == EmbeddingDtype.Float ? JsonValue.Create(v) : JsonValue.Create((long)v)))]),
                ["index"] = i,
            });
        }

        return Results.Json(
            new JsonObject
            {
                ["id"] = "embd-" + Guid.NewGuid().ToString("N"),
                ["object"] = "list",
                ["model"] = served.Model.Id,
                ["data"] = data,
                ["usage"] = new JsonObject { ["prompt_tokens"] = tokens, ["completion_tokens"] = 0, ["total_tokens"] = tokens },
            },
            AtelierJson.Options);
    }

    /// <summary>
    /// Where a request is served (decision 0025): the router lists the replicas the model's policy
    /// allows, best first. A local one acquires the model here and names itself in
    /// <c>X-Atelier-Replica</c>; a remote one gets the request forwarded, and null is returned once its
    /// answer is written. A node that fails before answering is passed over for the next allowed
    /// replica; when none is left the answer is 503 naming each failure. A request another node
    /// forwarded here is only ever served here (the router then considers this node's replicas alone,
    /// and judges the policy against this node's location again).
    /// </summary>
    private static async Task<ServedModel?> RouteAsync(HttpContext context, ServingRouter router, ReplicaForwarder forwarder, string workspaceId, string modelId, string affinity)
    {
        var plan = await router.PlanAsync(workspaceId, modelId, affinity, localOnly: ReplicaForwarder.IsForwarded(context), context.RequestAborted).ConfigureAwait(false);
        List<string>? failures = null;
        foreach (var candidate in plan.Candidates)
        {
            if (candidate.Local is { } local)
            {
                var served = await router.AcquireAsync(plan, local, context.RequestAborted).ConfigureAwait(false);
                context.Response.Headers["X-Atelier-Replica"] = local.Id;
                return served;
            }

            if (await forwarder.TryForwardAsync(context, router, plan.Model, candidate.Remote!).ConfigureAwait(false) is not { } failure)
            {
                return null;
            }

            (failures ??= []).Add(failure);
        }

        throw new ServiceUnavailableException(
            $"Model '{plan.Model.Id}' may only be served by replicas on other nodes, and none answered ({string.Join("; ", failures!)}); retry: a node that died leaves the candidates once membership declares it dead.",
            "replica_unavailable");
    }

    /// <summary>In a cluster, the body is kept (in memory: it is bounded by the JSON body limit) so that it can be forwarded after it was read.</summary>
    private static void KeepBodyForForwarding(HttpContext context, ServingRouter router)
    {
        if (router.MayForward && !ReplicaForwarder.IsForwarded(context))
        {
            context.Request.EnableBuffering(bufferThreshold: int.MaxValue);
        }
    }

    /// <summary>The router's prefix-affinity key: the start of what the prompt opens with.</summary>
    private static string Affinity(string? opening) => opening is null ? string.Empty : opening[..Math.Min(opening.Length, 512)];

    /// <summary>Base64 of the values in their dtype's width: little-endian float32, or one byte each.</summary>
    private static string Base64(double[] values, EmbeddingDtype dtype)
    {
        if (dtype == EmbeddingDtype.Float)
        {
            var bytes = new byte[values.Length * 4];
            for (var i = 0; i < values.Length; i++)
            {
                System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), (float)values[i]);
            }

            return Convert.ToBase64String(bytes);
        }

        var raw = new byte[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            // Signed dtypes as their two's-complement byte.
            raw[i] = dtype is EmbeddingDtype.Int8 or EmbeddingDtype.Binary ? unchecked((byte)(sbyte)(int)values[i]) : (byte)(int)values[i];
        }

        return Convert.ToBase64String(raw);
    }

    private static async Task RespondAsync(HttpContext context, TimeProvider clock, CompletionRequest request, bool stream, string kind, Atelier.Data.Tokenization.ITextTokenizer tokenizer)
    {
        // Checked before anything is written, so a prompt too long for the context is a plain 400.
        Completions.Budget(request);
        var id = "cmpl-" + Guid.NewGuid().ToString("N");
        var created = clock.GetUtcNow().ToUnixTimeSeconds();
        var model = request.Model.Model.Id;
        if (!stream)
        {
            var choices = await Completions.RunAsync(request, context.RequestAborted).ConfigureAwait(false);
            var body = new JsonObject
            {
                ["id"] = id,
                ["object"] = kind,
                ["model"] = model,
                ["created"] = created,
                ["choices"] = new JsonArray([.. choices.Select(c => Answer.Of(c, tokenizer, request.ContentEndToken)).Select(a => (JsonNode)new JsonObject
                {
                    ["index"] = a.Index,
                    ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = a.Content, ["tool_calls"] = a.ToolCalls, ["prefix"] = false },
                    ["finish_reason"] = a.FinishReason,
                })]),
                ["usage"] = Usage(request, choices),
            };
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(body.ToJsonString(AtelierJson.Options), context.RequestAborted).ConfigureAwait(false);
            return;
        }

        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        context.Response.Headers["X-Accel-Buffering"] = "no";
        var finished = new List<CompletionChoice>();
        var started = new HashSet<int>();
        await foreach (var update in Completions.StreamAsync(request, context.RequestAborted).ConfigureAwait(false))
        {
            if (update.Delta.Length == 0 && update.Finished is null)
            {
                // A token whose text is held back: an SSE comment, which clients ignore (the SDK's parser, the CLI and
                // the console read only data lines), so that a client that has gone away is noticed by the failed
                // write instead of after the whole generation.
                await context.Response.WriteAsync(":\n\n", context.RequestAborted).ConfigureAwait(false);
                await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
                continue;
            }

            var delta = new JsonObject();
            if (started.Add(update.Index))
            {
                delta["role"] = "assistant";
            }

            delta["content"] = update.Delta;
            string? finish = null;
            if (update.Finished is { } done)
            {
                finished.Add(done);
                var answer = Answer.Of(done, tokenizer, request.ContentEndToken);
                finish = answer.FinishReason;
                if (answer.ToolCalls is { } calls)
                {
                    delta["tool_calls"] = calls;
                }
            }

            var chunk = new JsonObject
            {
                ["id"] = id,
                ["object"] = kind + ".chunk",
                ["created"] = created,
                ["model"] = model,
                ["choices"] = new JsonArray(new JsonObject { ["index"] = update.Index, ["delta"] = delta, ["finish_reason"] = finish }),
            };
            if (finished.Count == request.Choices && update.Finished is not null)
            {
                chunk["usage"] = Usage(request, finished);
            }

            await context.Response.WriteAsync("data: " + chunk.ToJsonString(AtelierJson.Options) + "\n\n", context.RequestAborted).ConfigureAwait(false);
            await context.Response.Body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
        }

        await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted).ConfigureAwait(false);
    }

    private static JsonObject Usage(CompletionRequest request, IReadOnlyList<CompletionChoice> choices)
    {
        var completion = choices.Sum(c => c.Tokens.Length);
        return new JsonObject
        {
            ["prompt_tokens"] = request.Prompt.Length,
            ["completion_tokens"] = completion,
            ["total_tokens"] = request.Prompt.Length + completion,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = choices.Count == 0 ? 0 : choices.Min(c => c.CachedPromptTokens) },
        };
    }

    /// <summary>
    /// What a finished choice answers, its tokens parsed once: the content, the tool calls (parsed by
    /// the model's own syntax; null when it made none or they do not parse, and then, as Mistral's API
    /// does, the content is everything it wrote), and the finish reason (<c>tool_calls</c> when it called).
    /// </summary>
    private sealed record Answer(int Index, string Content, JsonArray? ToolCalls, string FinishReason)
    {
        public static Answer Of(CompletionChoice choice, Atelier.Data.Tokenization.ITextTokenizer tokenizer, int? toolCallsToken)
        {
            if (toolCallsToken is not { } t || Array.IndexOf(choice.Tokens, t) < 0)
            {
                return new Answer(choice.Index, choice.Text, null, choice.FinishReason);
            }

            var turn = MistralToolCallParser.Parse(choice.Tokens, tokenizer);
            var calls = turn.ToolCalls.Count == 0 ? null : new JsonArray([.. turn.ToolCalls.Select((c, i) => (JsonNode)new JsonObject
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments },
                ["index"] = i,
            })]);
            return new Answer(choice.Index, turn.Content, calls, calls is not null && choice.FinishReason == "stop" ? "tool_calls" : choice.FinishReason);
        }
    }
}
