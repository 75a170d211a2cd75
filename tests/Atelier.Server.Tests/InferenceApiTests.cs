using System.Net;
using System.Text;
using Atelier.Core;
using Atelier.Inference.Serving;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Server.Tests;

/// <summary>Serving over raw HTTP: what the SDK does not show, such as a client that goes away mid-stream.</summary>
public sealed class InferenceApiTests
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task AClientThatDisconnectsMidStream_FreesItsSequenceAndKvBlocks()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        using var client = server.Client();
        // Greedy, so the run is known: alone, it writes all 1,000 tokens (no end-of-sequence token
        // ends it early), which is what makes a cancellation the only way the streamed one can end soon.
        const string Request = """{"model":"tiny-model","messages":[{"role":"user","content":"tell me everything"}],"max_tokens":1000,"temperature":0""";
        using (var whole = await client.PostAsync("/v1/chat/completions", new StringContent(Request + "}", Encoding.UTF8, "application/json")))
        {
            var answer = System.Text.Json.Nodes.JsonNode.Parse(await whole.Content.ReadAsStringAsync())!;
            Assert.Equal("length", answer["choices"]![0]!["finish_reason"]!.GetValue<string>());
        }

        var engine = server.Service<ServingRouter>().Replicas[0].Server.Loaded.Single().Engine;
        var generatedBefore = engine.Metrics.GeneratedTokens;
        // From the streamed request's fifth token on, each token waits 50 ms unless the request is cancelled,
        // so a fast engine cannot finish all 1,000 tokens (at least 50 s) before the client has read its first
        // line and left. Tokens keep coming, as they do in real serving: the server learns of the departure
        // from the connection or, at the latest, from its next write. (Holding the engine still until the
        // cancel, as this test once did, left the server only the connection to learn it from, and under a
        // loaded test run that sometimes took longer than the test's two minutes.)
        engine.TokenGenerated = (id, generated, cancelled) =>
        {
            // Polls the token rather than waiting on its WaitHandle: the request disposes its token source once it has
            // cancelled it, and a disposed source's WaitHandle throws (which failed the whole step, not the sequence).
            for (var waited = 0; id > 0 && generated >= 5 && waited < 50 && !cancelled.IsCancellationRequested; waited++)
            {
                Thread.Sleep(1);
            }
        };
        var body = Request + ",\"stream\":true}";
        // A client that really goes away: HttpClient would otherwise drain up to 1 MB of the rest of
        // the stream to reuse the connection, and the server would see no disconnect at all.
        using (var leaving = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = client.BaseAddress })
        using (var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json"), Headers = { Authorization = client.DefaultRequestHeaders.Authorization } })
        using (var response = await leaving.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            // Comment lines (a token whose text is held back) may come first: the first data line is a chunk.
            string? first;
            while ((first = await reader.ReadLineAsync()) is not null && !first.StartsWith("data:", StringComparison.Ordinal))
            {
            }

            Assert.StartsWith("data: {", first, StringComparison.Ordinal);
        }

        // The connection is gone: the engine must let go of the sequence without generating its 1,000 tokens.
        var deadline = DateTime.UtcNow + Limit;
        while (engine.Metrics.Cancellations == 0 || engine.Metrics.RunningSequences + engine.Metrics.WaitingSequences > 0 || engine.Metrics.KvBlocksUsed > 0)
        {
            Assert.True(DateTime.UtcNow < deadline, $"cancelled {engine.Metrics.Cancellations}, still running {engine.Metrics.RunningSequences}, waiting {engine.Metrics.WaitingSequences}, {engine.Metrics.KvBlocksUsed} KV blocks used, {engine.Metrics.GeneratedTokens - generatedBefore} tokens generated since the streamed request");
            await Task.Delay(20);
        }

        Assert.Equal(1, engine.Metrics.Cancellations);
        Assert.True(engine.Metrics.GeneratedTokens - generatedBefore < 1000, $"{engine.Metrics.GeneratedTokens - generatedBefore} tokens were generated for a client that left");
    }

    [Theory]
    [InlineData(SafeTensorDType.BF16, null, SafeTensorDType.BF16)]
    [InlineData(SafeTensorDType.F32, null, SafeTensorDType.F32)]
    [InlineData(SafeTensorDType.F32, ServingConfig.WeightsBFloat16, SafeTensorDType.BF16)]
    public async Task AServedModel_HoldsItsProjectionsInTheCheckpointsDtype_OrInBFloat16WhenConfigured(SafeTensorDType stored, string? weights, SafeTensorDType held)
    {
        await using var server = await TestServer.StartAsync(weights is null ? null : c => c with { Serving = c.Serving with { Weights = weights } });
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-model", stored));
        using var client = server.Client();
        using (var chat = await client.PostAsync("/v1/chat/completions", new StringContent(
            """{"model":"tiny-model","messages":[{"role":"user","content":"hello"}],"max_tokens":4,"temperature":0}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, chat.StatusCode);
        }

        using (var embeddings = await client.PostAsync("/v1/embeddings", new StringContent(
            """{"model":"tiny-model","input":["hello","a longer text to embed"]}""", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.OK, embeddings.StatusCode);
        }

        var loaded = server.Service<ServingRouter>().Replicas[0].Server.Loaded.Single().Weights;
        var expected = held == SafeTensorDType.BF16 ? PackedElementType.BFloat16 : PackedElementType.Float32;
        Assert.Equal(expected, loaded.ElementType);
        Assert.Equal(expected, loaded.Projection(0, ProjectionStack.W13).ElementType);
        Assert.Equal(stored, loaded.StorageDType);
    }

    [Fact]
    public async Task AnUnknownServingWeightsValue_StopsTheServerNamingTheSettingAndTheChoices()
    {
        var e = await Assert.ThrowsAnyAsync<Exception>(() => TestServer.StartAsync(c => c with { Serving = c.Serving with { Weights = "int4" } }));
        var message = e.ToString();
        Assert.Contains("serving.weights: 'int4'", message, StringComparison.Ordinal);
        Assert.Contains("'as_loaded' or 'bf16'", message, StringComparison.Ordinal);
    }
}
