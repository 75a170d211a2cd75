using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Threading.Channels;
using Atelier.Core.Errors;
using Atelier.Modeling.Sampling;

namespace Atelier.Inference.Serving;

/// <summary>A completion to run: a rendered prompt on a served model, and how to continue it.</summary>
public sealed record CompletionRequest
{
    /// <summary>The model (and adapter) to run.</summary>
    public required ServedModel Model { get; init; }

    /// <summary>The prompt's token ids, rendered by the model's own renderer.</summary>
    public required int[] Prompt { get; init; }

    /// <summary>The most tokens to generate; null for as many as the context leaves.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>How many completions of the same prompt (<c>n</c>).</summary>
    public int Choices { get; init; } = 1;

    /// <summary>0 for greedy decoding.</summary>
    public float Temperature { get; init; } = 0.7f;

    /// <summary>Nucleus sampling mass.</summary>
    public float TopP { get; init; } = 1f;

    /// <summary>The seed (<c>random_seed</c>); choice i uses seed + i. Null draws one.</summary>
    public ulong? Seed { get; init; }

    /// <summary>Strings that end a completion (not included in it).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];

    /// <summary>Subtracted once from the logit of every token already generated.</summary>
    public float PresencePenalty { get; init; }

    /// <summary>Subtracted from a token's logit once per time it was generated.</summary>
    public float FrequencyPenalty { get; init; }

    /// <summary>The prefix-cache scope: the caller's workspace.</summary>
    public string CacheSalt { get; init; } = "";

    /// <summary>Makes each choice's constraint (a grammar), or null for none.</summary>
    public Func<ILogitsProcessor?>? Constraint { get; init; }

    /// <summary>
    /// A control token after which the text is no longer content (<c>[TOOL_CALLS]</c>): the tokens from
    /// it on are returned for the caller to parse, not decoded as text.
    /// </summary>
    public int? ContentEndToken { get; init; }
}

/// <summary>One finished completion.</summary>
/// <param name="Index">Its index among the request's choices.</param>
/// <param name="Text">The text generated, up to a stop string or <see cref="CompletionRequest.ContentEndToken"/>.</param>
/// <param name="Tokens">Every token generated, the final stop token excluded.</param>
/// <param name="FinishReason"><c>stop</c>, <c>length</c> (max_tokens reached) or <c>model_length</c> (the context is full).</param>
/// <param name="CachedPromptTokens">Prompt tokens that came from the prefix cache.</param>
public sealed record CompletionChoice(int Index, string Text, int[] Tokens, string FinishReason, int CachedPromptTokens);

/// <summary>Streamed progress of a completion: text of choice <paramref name="Index"/>, and the choice once it is finished.</summary>
/// <param name="Index">The choice.</param>
/// <param name="Delta">New text (may be empty).</param>
/// <param name="Finished">The finished choice, on its last update.</param>
public sealed record CompletionUpdate(int Index, string Delta, CompletionChoice? Finished);

/// <summary>
/// Runs completions on the engine: the sampling options, penalties and constraint per choice, text
/// assembled as tokens arrive with stop strings applied, and the finish reason as Mistral's API states
/// it. Cancelling the caller's token (a client that went away) ends every choice at once and frees its
/// KV blocks.
/// </summary>
public static class Completions
{
    private static readonly System.Diagnostics.Metrics.Meter Meter = new("Atelier");
    private static readonly System.Diagnostics.Metrics.Histogram<double> FirstToken = Meter.CreateHistogram<double>("atelier.inference.time_to_first_token", unit: "s", description: "Time from a request's arrival at the engine to its first generated token (queueing and prefill).");
    private static readonly System.Diagnostics.Metrics.Histogram<double> InterToken = Meter.CreateHistogram<double>("atelier.inference.inter_token_latency", unit: "s", description: "Time between consecutive tokens of one completion.");
    private static readonly System.Diagnostics.Metrics.Counter<long> Requests = Meter.CreateCounter<long>("atelier.inference.completions", description: "Completions finished, by finish reason.");

    /// <summary>The prompt and answer limits of <paramref name="request"/>: its max tokens and whether the context, not the caller, set it.</summary>
    /// <exception cref="BadRequestException">The prompt, with max_tokens, does not fit the model's context.</exception>
    public static (int MaxTokens, bool ContextBound) Budget(CompletionRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var context = request.Model.ContextLength;
        var prompt = request.Prompt.Length;
        if (request.MaxTokens is { } max)
        {
            if (prompt + max > context)
            {
                throw new BadRequestException($"Prompt contains {prompt} tokens and max_tokens is {max}: too large for model with {context} maximum context length.", "context_length_exceeded");
            }

            return (max, false);
        }

        if (prompt >= context)
        {
            throw new BadRequestException($"Prompt contains {prompt} tokens: too large for model with {context} maximum context length.", "context_length_exceeded");
        }

        return (context - prompt, true);
    }

    /// <summary>Runs every choice to its end and returns them in order.</summary>
    public static async Task<IReadOnlyList<CompletionChoice>> RunAsync(CompletionRequest request, CancellationToken ct)
    {
        var choices = new CompletionChoice[request.Choices];
        await foreach (var update in StreamAsync(request, ct).ConfigureAwait(false))
        {
            if (update.Finished is { } done)
            {
                choices[done.Index] = done;
            }
        }

        return choices;
    }

    /// <summary>Streams every choice's text as it is generated; each choice's last update carries it finished.</summary>
    public static async IAsyncEnumerable<CompletionUpdate> StreamAsync(CompletionRequest request, [EnumeratorCancellation] CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(request);
        var (maxTokens, contextBound) = Budget(request);
        var seed = request.Seed ?? BitConverter.ToUInt64(RandomNumberGenerator.GetBytes(8));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var updates = Channel.CreateUnbounded<CompletionUpdate>(new UnboundedChannelOptions { SingleReader = true });
        var runs = new Task[request.Choices];
        for (var i = 0; i < runs.Length; i++)
        {
            runs[i] = RunChoiceAsync(request, i, seed + (ulong)i, maxTokens, contextBound, updates.Writer, stop.Token);
        }

        _ = Task.WhenAll(runs).ContinueWith(t => updates.Writer.TryComplete(t.Exception?.InnerException), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        try
        {
            await foreach (var update in updates.Reader.ReadAllAsync(ct).ConfigureAwait(false))
            {
                yield return update;
            }
        }
        finally
        {
            // A reader that stops early (a client gone, an error) ends the other choices too.
            await stop.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(runs).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private static async Task RunChoiceAsync(CompletionRequest request, int index, ulong seed, int maxTokens, bool contextBound, ChannelWriter<CompletionUpdate> updates, CancellationToken ct)
    {
        var served = request.Model;
        var tokenizer = served.Base.Tokenizer;
        var eos = tokenizer.Control.Eos;
        using var end = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var processors = new List<ILogitsProcessor>(2);
        if (request.PresencePenalty != 0 || request.FrequencyPenalty != 0)
        {
            processors.Add(new RepetitionPenalties(request.PresencePenalty, request.FrequencyPenalty));
        }

        if (request.Constraint?.Invoke() is { } constraint)
        {
            processors.Add(constraint);
        }

        var generation = new GenerationRequest(request.Prompt, maxTokens)
        {
            AdapterId = served.AdapterId,
            Sampling = new SamplingOptions(request.Temperature, request.TopP, seed),
            StopTokenIds = [eos],
            CacheSalt = request.CacheSalt,
            LogitsProcessor = processors.Count switch { 0 => null, 1 => processors[0], _ => new LogitsProcessorChain(processors) },
        };
        GenerationStream stream;
        try
        {
            stream = served.Base.Engine.Submit(generation, end.Token);
        }
        catch (ArgumentException e)
        {
            // The engine refuses what cannot fit its KV pool at all.
            throw new BadRequestException(e.Message, "context_length_exceeded");
        }

        try
        {
            await ReadChoiceAsync(request, index, contextBound, updates, stream, ct).ConfigureAwait(false);
        }
        finally
        {
            // However the reading ended (a client gone, a stop string, a failed write), a generation still running is
            // cancelled before its token source is disposed: disposal alone would unlink it, and the engine would go on
            // generating for nobody.
            if (!stream.Completion.IsCompleted)
            {
                await end.CancelAsync().ConfigureAwait(false);
            }
        }
    }

    private static async Task ReadChoiceAsync(CompletionRequest request, int index, bool contextBound, ChannelWriter<CompletionUpdate> updates, GenerationStream stream, CancellationToken ct)
    {
        var tokenizer = request.Model.Base.Tokenizer;
        var eos = tokenizer.Control.Eos;
        var text = new TextAssembler(tokenizer, request.Stop);
        var tokens = new List<int>();
        var inContent = true;
        string? finish = null;
        var submitted = System.Diagnostics.Stopwatch.GetTimestamp();
        var previous = 0L;
        await foreach (var token in stream.WithCancellation(ct).ConfigureAwait(false))
        {
            var now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (previous == 0)
            {
                FirstToken.Record(System.Diagnostics.Stopwatch.GetElapsedTime(submitted, now).TotalSeconds);
            }
            else
            {
                InterToken.Record(System.Diagnostics.Stopwatch.GetElapsedTime(previous, now).TotalSeconds);
            }

            previous = now;
            if (token == eos)
            {
                break;
            }

            tokens.Add(token);
            if (token == request.ContentEndToken)
            {
                inContent = false;
            }

            if (!inContent)
            {
                continue;
            }

            // Every token gives an update, even one whose text is still held back (a stop string's possible start, an
            // incomplete UTF-8 sequence): a streaming caller then writes something per token, which is how it learns
            // that its client has gone (an HTTP/1.1 client's close is only seen when a write to it fails).
            var delta = text.Push(token);
            await updates.WriteAsync(new CompletionUpdate(index, delta, null), ct).ConfigureAwait(false);

            if (text.Stopped)
            {
                // A stop string: the rest is not wanted (the caller cancels the sequence once this returns).
                finish = "stop";
                break;
            }
        }

        if (finish is null)
        {
            var result = await stream.Completion.ConfigureAwait(false);
            finish = result.FinishReason == FinishReason.Stop ? "stop" : contextBound ? "model_length" : "length";
        }

        Requests.Add(1, new KeyValuePair<string, object?>("finish_reason", finish));
        var tail = inContent ? text.Finish() : string.Empty;
        var choice = new CompletionChoice(index, text.Text, [.. tokens], finish, stream.CachedPromptTokens);
        await updates.WriteAsync(new CompletionUpdate(index, tail, choice), ct).ConfigureAwait(false);
    }
}

/// <summary>
/// OpenAI's and Mistral's repetition penalties: a token's logit drops by <c>presence</c> once it has
/// appeared in the answer, and by <c>frequency</c> for each time it has.
/// </summary>
internal sealed class RepetitionPenalties(float presence, float frequency) : ILogitsProcessor
{
    private readonly Dictionary<int, int> _counts = [];
    private int _seen;

    public void Process(ReadOnlySpan<int> generated, Span<float> logits)
    {
        // Generated tokens only grow between calls: count the new ones.
        for (; _seen < generated.Length; _seen++)
        {
            _counts[generated[_seen]] = _counts.GetValueOrDefault(generated[_seen]) + 1;
        }

        foreach (var (token, count) in _counts)
        {
            if ((uint)token < (uint)logits.Length)
            {
                logits[token] -= presence + (frequency * count);
            }
        }
    }
}
