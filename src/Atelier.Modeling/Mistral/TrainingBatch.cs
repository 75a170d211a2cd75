namespace Atelier.Modeling.Mistral;

/// <summary>
/// A packed training sequence: several samples laid end to end. Attention is causal within each
/// sample and blocked across samples (a block-diagonal causal mask), and positions restart at zero
/// at each sample's start, matching how the data pipeline packs shards.
/// </summary>
public sealed class TrainingBatch
{
    /// <summary>Creates a batch; every array but <paramref name="sampleLengths"/> has one entry per position.</summary>
    /// <param name="inputs">Input token ids.</param>
    /// <param name="targets">The token each position should predict.</param>
    /// <param name="lossMask">Weight of each position in the loss (0 excludes it, e.g. prompt tokens).</param>
    /// <param name="sampleLengths">Lengths of the packed samples, summing to the sequence length.</param>
    public TrainingBatch(int[] inputs, int[] targets, float[] lossMask, int[] sampleLengths)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        ArgumentNullException.ThrowIfNull(targets);
        ArgumentNullException.ThrowIfNull(lossMask);
        ArgumentNullException.ThrowIfNull(sampleLengths);
        if (inputs.Length == 0 || targets.Length != inputs.Length || lossMask.Length != inputs.Length)
        {
            throw new ArgumentException("Inputs, targets and loss mask must be non-empty and of equal length.");
        }

        long sum = 0;
        foreach (var n in sampleLengths)
        {
            if (n <= 0)
            {
                throw new ArgumentException("Sample lengths must be positive.", nameof(sampleLengths));
            }

            sum += n;
        }

        if (sum != inputs.Length)
        {
            throw new ArgumentException($"Sample lengths sum to {sum}, but the sequence has {inputs.Length} positions.", nameof(sampleLengths));
        }

        Inputs = inputs;
        Targets = targets;
        LossMask = lossMask;
        SampleLengths = sampleLengths;
    }

    /// <summary>Input token ids.</summary>
    public int[] Inputs { get; }

    /// <summary>Target token ids.</summary>
    public int[] Targets { get; }

    /// <summary>Loss weight per position.</summary>
    public float[] LossMask { get; }

    /// <summary>Lengths of the packed samples.</summary>
    public int[] SampleLengths { get; }

    /// <summary>Number of positions.</summary>
    public int Length => Inputs.Length;

    /// <summary>
    /// Packs whole token sequences, each predicting its next token (inputs <c>s[..^1]</c>, targets
    /// <c>s[1..]</c>), with every position in the loss.
    /// </summary>
    public static TrainingBatch Pack(params int[][] sequences)
    {
        var inputs = new List<int>();
        var targets = new List<int>();
        var lengths = new List<int>();
        foreach (var s in sequences)
        {
            if (s.Length < 2)
            {
                throw new ArgumentException("Each sequence needs at least two tokens.", nameof(sequences));
            }

            inputs.AddRange(s.AsSpan(0, s.Length - 1));
            targets.AddRange(s.AsSpan(1));
            lengths.Add(s.Length - 1);
        }

        var mask = new float[inputs.Count];
        Array.Fill(mask, 1f);
        return new TrainingBatch([.. inputs], [.. targets], mask, [.. lengths]);
    }

    /// <summary>The position of each token within its sample.</summary>
    public int[] Positions()
    {
        var pos = new int[Length];
        var t = 0;
        foreach (var n in SampleLengths)
        {
            for (var i = 0; i < n; i++)
            {
                pos[t++] = i;
            }
        }

        return pos;
    }

    /// <summary>
    /// The key range [lo, hi] each position attends to: from its sample's start (or the window's
    /// start, when a sliding window of <paramref name="window"/> tokens is given) to itself.
    /// </summary>
    public (int[] Lo, int[] Hi) KeyRanges(int? window)
    {
        var lo = new int[Length];
        var hi = new int[Length];
        var start = 0;
        foreach (var n in SampleLengths)
        {
            for (var t = start; t < start + n; t++)
            {
                lo[t] = window is { } w ? Math.Max(start, t - w + 1) : start;
                hi[t] = t;
            }

            start += n;
        }

        return (lo, hi);
    }
}
