using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;

namespace Atelier.Inference.Tests;

public class InferenceEngineTests
{
    // Generous: a defect shows as a failed wait, never as a hung test run.
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    private static async Task<(int[] Tokens, GenerationResult Result)> Collect(GenerationStream stream)
    {
        var tokens = new List<int>();
        await foreach (var t in stream.WithCancellation(CancellationToken.None))
        {
            tokens.Add(t);
        }

        return ([.. tokens], await stream.Completion.WaitAsync(Limit));
    }

    /// <summary>Reads until the stream ends; returns the tokens read and whether it ended by cancellation.</summary>
    private static async Task<(int[] Tokens, bool Cancelled)> CollectUntilCancelled(GenerationStream stream)
    {
        var tokens = new List<int>();
        try
        {
            await foreach (var t in stream.WithCancellation(CancellationToken.None))
            {
                tokens.Add(t);
            }
        }
        catch (OperationCanceledException)
        {
            return ([.. tokens], true);
        }

        return ([.. tokens], false);
    }

    private static async Task<int[]> Solo(MistralWeights weights, GenerationRequest request, InferenceEngineOptions? options = null)
    {
        using var engine = new InferenceEngine(weights, options, TinyModels.Loader(weights.Args));
        var (tokens, _) = await Collect(engine.Submit(request)).WaitAsync(Limit);
        return tokens;
    }

    private static async Task WaitUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + Limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting until {what}");
            await Task.Delay(10);
        }
    }

    private static GenerationRequest Mixed(int i) => new(TinyModels.Prompt(3 + ((i * 7) % 29), 100 + i), MaxTokens: 8 + (i % 5))
    {
        AdapterId = (i % 4) switch { 0 => null, 1 => "a1", 2 => "a2", _ => "a3" },
        Sampling = i % 3 == 0 ? new SamplingOptions() : new SamplingOptions(Temperature: 0.9f, TopP: 0.95f, Seed: (ulong)(1000 + i)),
    };

    [Fact]
    public async Task SeededRequests_GiveTheSameTokens_AloneAndInABatchOf16MixedRequestsWithCancellations()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);

        // Small step budget (chunked prefill), fewer adapter slots than adapters (evictions and waits).
        var options = new InferenceEngineOptions { KvCacheBytes = 4L << 20, BlockSize = 4, MaxBatchTokens = 24, AdapterPoolCapacity = 2 };
        var requests = Enumerable.Range(0, 16).Select(Mixed).ToArray();
        var cancelAfter = new Dictionary<long, int> { [3] = 2, [8] = 1, [13] = 4 };
        var sources = requests.Select(_ => new CancellationTokenSource()).ToArray();

        using var engine = new InferenceEngine(weights, options, TinyModels.Loader(args));
        engine.TokenGenerated = (id, generated, _) =>
        {
            if (cancelAfter.TryGetValue(id, out var k) && generated == k)
            {
                sources[id].Cancel();
            }
        };

        var streams = requests.Select((r, i) => engine.Submit(r, sources[i].Token)).ToArray();
        var outcomes = await Task.WhenAll(streams.Select(CollectUntilCancelled)).WaitAsync(Limit);

        for (var i = 0; i < requests.Length; i++)
        {
            var alone = await Solo(weights, requests[i], options);
            if (cancelAfter.TryGetValue(i, out var k))
            {
                Assert.True(outcomes[i].Cancelled, $"request {i} was not cancelled");
                Assert.Equal(alone[..k], outcomes[i].Tokens);
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => streams[i].Completion);
            }
            else
            {
                Assert.False(outcomes[i].Cancelled);
                Assert.Equal(alone, outcomes[i].Tokens);
                Assert.Equal(requests[i].MaxTokens, alone.Length);
            }
        }

        // The adapters really differ: the same prompt under a1 and a2 continues differently.
        var prompt = TinyModels.Prompt(12, 9);
        var underA1 = await Solo(weights, new GenerationRequest(prompt, 8) { AdapterId = "a1" });
        var underA2 = await Solo(weights, new GenerationRequest(prompt, 8) { AdapterId = "a2" });
        Assert.NotEqual(underA1, underA2);

        await WaitUntil(() => engine.Metrics.KvBlocksUsed == 0 && engine.Metrics.RunningSequences == 0, "every block is free");
        Assert.True(engine.Metrics.AdaptersResident <= 2);
        foreach (var s in sources)
        {
            s.Dispose();
        }
    }

    [Fact]
    public async Task ASecondRequestWithTheSamePrefix_ReportsCachedTokens_ButNotUnderAnotherAdapterOrSalt()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        // A 1k-token shared prefix in blocks of 16, prefilled in chunks of 128.
        var options = new InferenceEngineOptions { KvCacheBytes = 8L << 20, BlockSize = 16, MaxBatchTokens = 128 };
        using var engine = new InferenceEngine(weights, options, TinyModels.Loader(args));
        var prefix = TinyModels.Prompt(1024, 5);
        GenerationRequest Request(string? adapter = null, string salt = "ws1") => new([.. prefix, 7], 10) { AdapterId = adapter, CacheSalt = salt };

        var first = await Collect(engine.Submit(Request()));
        var second = await Collect(engine.Submit(Request()));
        Assert.Equal(0, first.Result.CachedPromptTokens);
        Assert.Equal(1024, second.Result.CachedPromptTokens);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(64, engine.Metrics.PrefixHits);
        Assert.Equal(128, engine.Metrics.PrefixLookups);

        // The same tokens under an adapter, or in another workspace, share nothing...
        var underAdapter = await Collect(engine.Submit(Request(adapter: "a1")));
        Assert.Equal(0, underAdapter.Result.CachedPromptTokens);
        var otherSalt = await Collect(engine.Submit(Request(salt: "ws2")));
        Assert.Equal(0, otherSalt.Result.CachedPromptTokens);
        Assert.Equal(first.Tokens, otherSalt.Tokens);

        // ...but each is cached for its own kind.
        var underAdapterAgain = await Collect(engine.Submit(Request(adapter: "a1")));
        Assert.Equal(1024, underAdapterAgain.Result.CachedPromptTokens);
        Assert.Equal(underAdapter.Tokens, underAdapterAgain.Tokens);
        Assert.NotEqual(first.Tokens, underAdapter.Tokens);

        // And the cache changes no token: the same request without prefix caching.
        var uncached = await Solo(weights, Request(), options with { PrefixCaching = false });
        Assert.Equal(first.Tokens, uncached);
    }

    [Fact]
    public async Task SixtyFourConcurrentRequests_OnASmallKvBudget_AllFinishThroughPreemption()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var bytesPerBlock = 2L * args.NLayers * 4 * args.KvWidth * sizeof(float);
        var options = new InferenceEngineOptions { KvCacheBytes = (12 * bytesPerBlock) + 100, BlockSize = 4, MaxBatchTokens = 64 };
        var requests = Enumerable.Range(0, 64).Select(i => new GenerationRequest(TinyModels.Prompt(14 + (i % 7), 300 + i), 12)
        {
            AdapterId = i % 2 == 0 ? null : "a1",
            Sampling = new SamplingOptions(Temperature: 0.8f, Seed: (ulong)i),
        }).ToArray();

        using var engine = new InferenceEngine(weights, options, TinyModels.Loader(args));
        Assert.Equal(12, engine.Metrics.KvBlocksTotal);
        Assert.True(engine.Metrics.KvCacheBytes <= options.KvCacheBytes);
        var peakSeen = 0;
        engine.TokenGenerated = (_, _, _) => peakSeen = Math.Max(peakSeen, engine.Metrics.KvBlocksUsed);
        var results = await Task.WhenAll(requests.Select(r => Collect(engine.Submit(r)))).WaitAsync(Limit);

        Assert.All(results, r => Assert.Equal(12, r.Tokens.Length));
        Assert.True(engine.Metrics.Preemptions > 0, "the budget was meant to force preemption");
        Assert.True(engine.Metrics.PeakKvBlocksUsed <= 12);
        Assert.True(peakSeen <= 12);
        Assert.Contains(results, r => r.Result.Preemptions > 0);

        // Preempted and recomputed, a seeded request still gives the tokens it gives alone.
        foreach (var i in new[] { 0, 1, 31, 62, 63 })
        {
            Assert.Equal(await Solo(weights, requests[i], options), results[i].Tokens);
        }

        await WaitUntil(() => engine.Metrics.KvBlocksUsed == 0 && engine.Metrics.WaitingSequences == 0, "every block is free");
    }

    [Fact]
    public async Task Cancellation_FreesEveryBlock_WhetherRunningOrStillWaiting()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var options = new InferenceEngineOptions { KvCacheBytes = 4L << 20, BlockSize = 4, MaxBatchTokens = 16, MaxRunningSequences = 3 };
        using var engine = new InferenceEngine(weights, options);
        var sources = Enumerable.Range(0, 8).Select(_ => new CancellationTokenSource()).ToArray();
        engine.TokenGenerated = (id, generated, _) =>
        {
            if (generated == 1 + (int)id)
            {
                sources[id].Cancel();
            }
        };

        sources[7].Cancel();
        var streams = Enumerable.Range(0, 8)
            .Select(i => engine.Submit(new GenerationRequest(TinyModels.Prompt(30, i), 200), sources[i].Token))
            .ToArray();
        var outcomes = await Task.WhenAll(streams.Select(CollectUntilCancelled)).WaitAsync(Limit);
        for (var i = 0; i < 7; i++)
        {
            Assert.True(outcomes[i].Cancelled);
            Assert.Equal(i + 1, outcomes[i].Tokens.Length);
        }

        Assert.True(outcomes[7].Cancelled);
        Assert.Empty(outcomes[7].Tokens);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => streams[7].Completion);
        await WaitUntil(() => engine.Metrics.KvBlocksUsed == 0 && engine.Metrics.RunningSequences == 0 && engine.Metrics.WaitingSequences == 0,
            "the pool is all free");
        Assert.Equal(engine.Metrics.KvBlocksTotal, engine.Metrics.KvBlocksFree);
        foreach (var s in sources)
        {
            s.Dispose();
        }
    }

    [Fact]
    public async Task AStopToken_EndsTheGeneration_AndIsTheLastTokenStreamed()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var prompt = TinyModels.Prompt(10, 4);
        var free = await Solo(weights, new GenerationRequest(prompt, 12));
        var stop = free[4];
        var firstStop = Array.IndexOf(free, stop);

        using var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 1L << 20 });
        var (tokens, result) = await Collect(engine.Submit(new GenerationRequest(prompt, 12) { StopTokenIds = [stop] }));
        Assert.Equal(free[..(firstStop + 1)], tokens);
        Assert.Equal(FinishReason.Stop, result.FinishReason);
        Assert.Equal(10, result.PromptTokens);
    }

    /// <summary>Allows one token per step, taken from a script indexed by what was generated so far; throws past its end.</summary>
    private sealed class ScriptedProcessor(int[] script) : ILogitsProcessor
    {
        public List<int> Seen { get; } = [];

        public void Process(ReadOnlySpan<int> generated, Span<float> logits)
        {
            Seen.Add(generated.Length);
            if (generated.Length >= script.Length)
            {
                throw new InvalidOperationException("script exhausted");
            }

            var allowed = script[generated.Length];
            for (var i = 0; i < logits.Length; i++)
            {
                if (i != allowed)
                {
                    logits[i] = float.NegativeInfinity;
                }
            }
        }
    }

    [Fact]
    public async Task ALogitsProcessor_DecidesEachSampledToken_AndItsFailureFailsOnlyItsRequest()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var prompt = TinyModels.Prompt(10, 4);
        var free = await Solo(weights, new GenerationRequest(prompt, 6));
        // A script that differs from what the model picks on its own at every step, sampled with a temperature.
        var script = free.Select(t => (t + 1) % args.VocabSize).ToArray();
        var steered = new ScriptedProcessor(script);
        var failing = new ScriptedProcessor(script[..2]);

        using var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 1L << 20 });
        var good = engine.Submit(new GenerationRequest(prompt, 6) { LogitsProcessor = steered, Sampling = new SamplingOptions(0.8f, 0.9f, 7) });
        var bad = engine.Submit(new GenerationRequest(prompt, 6) { LogitsProcessor = failing });
        var plain = engine.Submit(new GenerationRequest(prompt, 6));

        var (tokens, result) = await Collect(good);
        Assert.Equal(script, tokens);
        Assert.Equal([0, 1, 2, 3, 4, 5], steered.Seen);
        Assert.Equal(FinishReason.Length, result.FinishReason);
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => bad.Completion.WaitAsync(Limit));
        Assert.Equal("script exhausted", error.Message);
        Assert.Equal(free, (await Collect(plain)).Tokens);
    }

    [Fact]
    public async Task AnAdapterThatFailsToLoad_FailsItsRequestOnly()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        using var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 1L << 20 }, TinyModels.Loader(args));
        var bad = engine.Submit(new GenerationRequest([1, 2, 3], 4) { AdapterId = "missing" });
        var good = engine.Submit(new GenerationRequest([1, 2, 3], 4) { AdapterId = "a1" });
        await Assert.ThrowsAsync<FileNotFoundException>(() => bad.Completion.WaitAsync(Limit));
        var (tokens, result) = await Collect(good);
        Assert.Equal(4, tokens.Length);
        Assert.Equal(FinishReason.Length, result.FinishReason);
    }

    [Fact]
    public void ARequestThatCanNeverFitThePool_IsRefusedAtSubmit()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var bytesPerBlock = 2L * args.NLayers * 4 * args.KvWidth * sizeof(float);
        using var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 4 * bytesPerBlock, BlockSize = 4 });
        Assert.Equal(16, engine.MaxSequenceLength);
        var error = Assert.Throws<ArgumentException>(() => engine.Submit(new GenerationRequest(TinyModels.Prompt(10, 1), 8)));
        Assert.Contains("17", error.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => engine.Submit(new GenerationRequest([64], 1)));
        Assert.Throws<ArgumentException>(() => engine.Submit(new GenerationRequest([], 1)));
        _ = engine.Submit(new GenerationRequest(TinyModels.Prompt(10, 1), 7));
    }

    [Fact]
    public async Task Disposing_FailsWhatIsInFlight_AndRefusesNewRequests()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = 1L << 20, BlockSize = 4, MaxRunningSequences = 1 });
        Task? disposing = null;

        // Disposal starts inside the step that produced the first request's second token (it does not
        // block there: the asynchronous form waits for the loop to exit), so where it lands is fixed.
        engine.TokenGenerated = (id, generated, _) =>
        {
            if (id == 0 && generated == 2)
            {
                disposing = engine.DisposeAsync().AsTask();
            }
        };

        var streams = Enumerable.Range(0, 3).Select(i => engine.Submit(new GenerationRequest(TinyModels.Prompt(8, i), 40))).ToArray();
        var read = new List<int>();
        await Assert.ThrowsAsync<ObjectDisposedException>(async () =>
        {
            await foreach (var t in streams[0].WithCancellation(CancellationToken.None))
            {
                read.Add(t);
            }
        }).WaitAsync(Limit);
        Assert.Equal(2, read.Count);
        foreach (var stream in streams)
        {
            await Assert.ThrowsAsync<ObjectDisposedException>(() => stream.Completion.WaitAsync(Limit));
        }

        Assert.NotNull(disposing);
        await disposing.WaitAsync(Limit);
        Assert.Throws<ObjectDisposedException>(() => engine.Submit(new GenerationRequest([1], 1)));
    }
}
