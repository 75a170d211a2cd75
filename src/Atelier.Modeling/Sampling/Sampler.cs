using System.Buffers;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Sampling;

/// <summary>How to pick the next token.</summary>
/// <param name="Temperature">0 for greedy (argmax); otherwise logits are divided by it before the softmax.</param>
/// <param name="TopP">Nucleus sampling: keep the most likely tokens whose probabilities reach this mass (1 keeps all).</param>
/// <param name="Seed">Seeds the sampler; equal seeds give equal choices.</param>
public sealed record SamplingOptions(float Temperature = 0f, float TopP = 1f, ulong Seed = 0);

/// <summary>Picks tokens from logits: greedy, or temperature with optional top-p, from a seeded generator.</summary>
public sealed class Sampler
{
    private readonly DeterministicRandom _rng;

    /// <summary>Creates a sampler.</summary>
    public Sampler(SamplingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.Temperature < 0 || !(options.TopP > 0 && options.TopP <= 1))
        {
            throw new ArgumentException("Temperature must be ≥ 0 and top_p in (0, 1].", nameof(options));
        }

        Options = options;
        _rng = new DeterministicRandom(options.Seed);
    }

    /// <summary>The options.</summary>
    public SamplingOptions Options { get; }

    /// <summary>The index of the largest logit (the lowest index among ties).</summary>
    public static int Argmax(ReadOnlySpan<float> logits)
    {
        var best = 0;
        for (var i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    /// <summary>Picks the next token.</summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty)
        {
            throw new ArgumentException("No logits to sample from.", nameof(logits));
        }

        if (Options.Temperature == 0)
        {
            return Argmax(logits);
        }

        // Pooled: two vocabulary-sized arrays per sampled token would land on the large object heap.
        var n = logits.Length;
        var probsArray = ArrayPool<double>.Shared.Rent(n);
        var orderArray = ArrayPool<int>.Shared.Rent(n);
        try
        {
            return SampleFrom(logits, probsArray.AsSpan(0, n), orderArray.AsSpan(0, n), probsArray);
        }
        finally
        {
            ArrayPool<double>.Shared.Return(probsArray);
            ArrayPool<int>.Shared.Return(orderArray);
        }
    }

    private int SampleFrom(ReadOnlySpan<float> logits, Span<double> probs, Span<int> order, double[] probsArray)
    {
        var n = logits.Length;
        var max = logits[Argmax(logits)];
        double sum = 0;
        for (var i = 0; i < n; i++)
        {
            probs[i] = Math.Exp((logits[i] - max) / Options.Temperature);
            sum += probs[i];
        }

        for (var i = 0; i < n; i++)
        {
            order[i] = i;
        }

        var keep = n;
        if (Options.TopP < 1)
        {
            // Most likely first; ties by token id, so the nucleus is well defined (a total order: any sort gives it).
            order.Sort((x, y) => probsArray[x] != probsArray[y] ? probsArray[y].CompareTo(probsArray[x]) : x.CompareTo(y));
            double mass = 0;
            keep = 0;
            while (keep < n)
            {
                mass += probs[order[keep]] / sum;
                keep++;
                if (mass >= Options.TopP)
                {
                    break;
                }
            }
        }

        double kept = 0;
        for (var i = 0; i < keep; i++)
        {
            kept += probs[order[i]];
        }

        var u = _rng.NextDouble() * kept;
        double acc = 0;
        for (var i = 0; i < keep; i++)
        {
            acc += probs[order[i]];
            if (u < acc)
            {
                return order[i];
            }
        }

        return order[keep - 1];
    }
}

/// <summary>Text generation over token ids (tokenisation is the caller's).</summary>
public static class Generator
{
    /// <summary>
    /// Feeds <paramref name="prompt"/>, then samples up to <paramref name="maxNewTokens"/> tokens, stopping
    /// after any token in <paramref name="stopTokens"/> (which is included). Returns the new tokens.
    /// </summary>
    public static int[] Generate(MistralModel model, ReadOnlySpan<int> prompt, int maxNewTokens, SamplingOptions options, IReadOnlyCollection<int>? stopTokens = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (prompt.IsEmpty)
        {
            throw new ArgumentException("The prompt needs at least one token (e.g. BOS).", nameof(prompt));
        }

        ArgumentOutOfRangeException.ThrowIfNegative(maxNewTokens);
        var sampler = new Sampler(options);
        var output = new List<int>(maxNewTokens);
        if (maxNewTokens == 0)
        {
            return [];
        }

        using var session = model.StartSession(prompt.Length + maxNewTokens);
        var logits = session.Append(prompt);
        while (true)
        {
            var next = sampler.Sample(logits);
            output.Add(next);
            if (output.Count == maxNewTokens || (stopTokens is not null && stopTokens.Contains(next)))
            {
                break;
            }

            logits = session.Append([next]);
        }

        return [.. output];
    }
}
