using Atelier.Inference.Execution;
using Atelier.Inference.KvCache;
using Atelier.Modeling.Mistral;

namespace Atelier.Inference.Tests;

public class PagedBatchRunnerTests
{
    public static TheoryData<int?, bool> Cases => new()
    {
        { null, false },
        { null, true },
        { 6, false },
        { 6, true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void LogitsThroughThePagedCache_EqualTheSessionsAcrossBlockBoundariesAndChunks(int? window, bool withAdapter)
    {
        var args = TinyModels.Args(window);
        using var weights = TinyModels.Weights(args);
        using var adapter = withAdapter ? TinyModels.Adapter(args, 3) : null;
        var tokens = TinyModels.Prompt(23, 1);

        // Reference: the contiguous-cache session, one logits row per token.
        var model = new MistralModel(weights, adapter);
        using var session = model.StartSession(64);
        using var expected = session.AppendAll(tokens);

        // Paged: block size 4, the sequence's blocks scattered through the pool, prompt fed in chunks.
        var pool = new KvBlockPool(args, blockSize: 4, budgetBytes: 16 * 2L * args.NLayers * 4 * args.KvWidth * sizeof(float));
        Assert.Equal(16, pool.BlockCount);
        var taken = new List<int>();
        for (var i = 0; i < 16; i++)
        {
            Assert.True(pool.TryAllocate(out var b));
            taken.Add(b);
        }

        int[] table = [taken[9], taken[2], taken[14], taken[0], taken[7], taken[11]];
        using var runner = new PagedBatchRunner(weights, pool);
        var start = 0;
        foreach (var chunk in new[] { 5, 3, 1, 1, 8, 1, 4 })
        {
            var logits = runner.Run([new BatchItem(tokens.AsMemory(start, chunk), start, table, adapter, WantLogits: true)]);
            start += chunk;
            var row = expected.Row(start - 1);
            Assert.Equal(args.VocabSize, logits.Length);
            for (var j = 0; j < logits.Length; j++)
            {
                Assert.True(Math.Abs(row[j] - logits[j]) < 1e-5, $"position {start - 1}, logit {j}: {row[j]} vs {logits[j]}");
            }
        }

        Assert.Equal(tokens.Length, start);
    }

    [Fact]
    public void ASequencesLogits_AreTheSameBits_AloneOrBatchedWithOtherAdaptersAndChunks()
    {
        var args = TinyModels.Args();
        using var weights = TinyModels.Weights(args);
        using var a1 = TinyModels.Adapter(args, 1);
        using var a2 = TinyModels.Adapter(args, 2);
        var tokens = TinyModels.Prompt(13, 2);
        var other = TinyModels.Prompt(9, 3);
        var budget = 32 * 2L * args.NLayers * 4 * args.KvWidth * sizeof(float);

        float[] Alone()
        {
            // Prefill, then the last token as a one-row decode step (a single-row GEMM).
            var pool = new KvBlockPool(args, 4, budget);
            using var runner = new PagedBatchRunner(weights, pool);
            runner.Run([new BatchItem(tokens.AsMemory(0, 12), 0, [0, 1, 2, 3], a1, false)]);
            return runner.Run([new BatchItem(tokens.AsMemory(12, 1), 12, [0, 1, 2, 3], a1, true)]);
        }

        float[] Batched()
        {
            var pool = new KvBlockPool(args, 4, budget);
            using var runner = new PagedBatchRunner(weights, pool);

            // The same prompt split 6 + 7, its second chunk among rows of a base-model and another adapter's sequence.
            runner.Run([new BatchItem(other, 0, [10, 11, 12], a2, false), new BatchItem(tokens.AsMemory(0, 6), 0, [5, 6, 7, 8], a1, false)]);
            var logits = runner.Run([
                new BatchItem(other.AsMemory(0, 1), 9, [10, 11, 12], a2, true),
                new BatchItem(tokens.AsMemory(6, 7), 6, [5, 6, 7, 8], a1, true),
                new BatchItem(other.AsMemory(0, 5), 0, [20, 21], null, true),
            ]);
            return logits.AsSpan(args.VocabSize, args.VocabSize).ToArray();
        }

        Assert.Equal(Alone(), Batched());
    }
}
