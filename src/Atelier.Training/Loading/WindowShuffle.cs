namespace Atelier.Training.Loading;

/// <summary>
/// The seeded per-epoch permutation of a dataset's windows: a Fisher–Yates shuffle driven by
/// SplitMix64 with Lemire's unbiased bounded draws, all written out here, so the order is a pure
/// function of (seed, epoch, window count) on every platform and every .NET version
/// (<see cref="Random"/>'s seeded algorithm is an implementation detail and has changed before).
/// <para>
/// Memory: one <see cref="int"/> per window (400 MB at 100M windows, i.e. 400B tokens at
/// <c>seq_len</c> 4096, far beyond a fine-tuning set); the loader holds at most two epochs'
/// permutations at a time. Changing anything here changes every job's data order: the golden test
/// pins it.
/// </para>
/// </summary>
public static class WindowShuffle
{
    /// <summary>The largest window count an epoch may have (the largest .NET array).</summary>
    public static int MaxWindows => Array.MaxLength;

    /// <summary>
    /// The order of epoch <paramref name="epoch"/>: element <c>i</c> is the global index (shards in
    /// list order, rows in shard order) of the <c>i</c>-th window the epoch hands out.
    /// </summary>
    public static int[] Permutation(ulong seed, int epoch, int count, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var order = new int[count];
        for (int i = 0; i < order.Length; i++)
        {
            order[i] = i;
        }

        var random = new SplitMix64(EpochSeed(seed, epoch));
        for (int i = count - 1; i > 0; i--)
        {
            if ((i & 0xFFFFF) == 0)
            {
                cancellationToken.ThrowIfCancellationRequested();
            }

            int j = (int)random.NextBelow((ulong)i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }

        return order;
    }

    // Mixing seed and epoch through the finaliser twice makes nearby seeds and epochs give unrelated streams.
    private static ulong EpochSeed(ulong seed, int epoch) =>
        SplitMix64.Mix(SplitMix64.Mix(seed ^ 0x6174656C69657231UL) + (ulong)epoch);

    /// <summary>SplitMix64 (Steele, Lea, Flood 2014), as in <c>java.util.SplittableRandom</c>.</summary>
    private struct SplitMix64(ulong state)
    {
        private const ulong Gamma = 0x9E3779B97F4A7C15UL;
        private ulong _state = state;

        public static ulong Mix(ulong z)
        {
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return z ^ (z >> 31);
        }

        public ulong Next()
        {
            _state += Gamma;
            return Mix(_state);
        }

        // Lemire, "Fast random integer generation in an interval" (2019): unbiased, rarely divides.
        public ulong NextBelow(ulong bound)
        {
            ulong high = Math.BigMul(Next(), bound, out ulong low);
            if (low < bound)
            {
                ulong threshold = (0 - bound) % bound;
                while (low < threshold)
                {
                    high = Math.BigMul(Next(), bound, out low);
                }
            }

            return high;
        }
    }
}
