namespace Atelier.Features.Bench;

/// <summary>A seeded Zipf sampler over ranks 0..n-1 (rank 0 the most frequent), by inverse CDF.</summary>
internal sealed class Zipf
{
    private readonly double[] _cdf;
    private readonly Random _random;

    public Zipf(int n, double skew, int seed)
    {
        _cdf = new double[n];
        double sum = 0;
        for (var i = 0; i < n; i++)
        {
            sum += 1.0 / Math.Pow(i + 1, skew);
            _cdf[i] = sum;
        }

        for (var i = 0; i < n; i++)
        {
            _cdf[i] /= sum;
        }

        _random = new Random(seed);
    }

    public int Next()
    {
        var u = _random.NextDouble();
        var i = Array.BinarySearch(_cdf, u);
        return i >= 0 ? i : Math.Min(~i, _cdf.Length - 1);
    }
}

/// <summary>Latency samples in Stopwatch ticks, summarised as percentiles in microseconds.</summary>
internal sealed class Latencies(int capacity)
{
    private readonly List<long> _ticks = new(capacity);

    public void Add(long ticks) => _ticks.Add(ticks);

    public int Count => _ticks.Count;

    public double Percentile(double p)
    {
        var sorted = _ticks.ToArray();
        Array.Sort(sorted);
        var index = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(index, 0, sorted.Length - 1)] * 1_000_000.0 / System.Diagnostics.Stopwatch.Frequency;
    }

    public string Summary() => $"p50 {Percentile(50):F0} us, p90 {Percentile(90):F0} us, p99 {Percentile(99):F0} us, p99.9 {Percentile(99.9):F0} us (n={Count})";
}
