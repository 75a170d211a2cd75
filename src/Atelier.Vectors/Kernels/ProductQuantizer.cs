using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Atelier.Vectors.Kernels;

/// <summary>
/// Product quantisation (Jégou, Douze and Schmid): the vector is cut into <see cref="Subspaces"/> contiguous
/// sub-vectors and each is replaced by the index of its nearest of 256 centroids learnt by k-means on a
/// sample, so a vector costs one byte per subspace (96 bytes for 384 dimensions against 384 for int8 codes).
/// A search computes, once per query, the distance from each query sub-vector to every centroid of its
/// subspace (the asymmetric distance table) and then scores a code with one table lookup per subspace.
/// </summary>
/// <remarks>
/// The table is laid out subspace-major, 256 floats per subspace, so the lookups of one code walk the table
/// forwards and the whole table (96 x 256 x 4 = 96 KiB at 96 subspaces) stays in L2. For the dot and cosine
/// metrics the table holds negated partial inner products, so the sum is <c>-q.x</c> and the distance
/// <c>1 - q.x</c> is <c>1 + sum</c>, the same form the graph uses everywhere else.
/// </remarks>
public sealed class ProductQuantizer
{
    /// <summary>Centroids per subspace: one byte per code.</summary>
    public const int Centroids = 256;

    private readonly float[] _centroids;

    /// <summary>Creates a quantiser from its centroids (as persisted): subspace-major, 256 sub-vectors per subspace.</summary>
    /// <param name="metric">The metric the tables are built for.</param>
    /// <param name="dimension">The vector dimension.</param>
    /// <param name="subspaces">Subspaces; must divide <paramref name="dimension"/>.</param>
    /// <param name="centroids"><c>subspaces * 256 * (dimension / subspaces)</c> floats.</param>
    public ProductQuantizer(DistanceMetric metric, int dimension, int subspaces, float[] centroids)
    {
        ArgumentNullException.ThrowIfNull(centroids);
        Validate(dimension, subspaces);
        if (centroids.Length != dimension * Centroids)
        {
            VectorThrow.Corrupted($"A product quantiser of dimension {dimension} needs {dimension * Centroids} centroid floats, got {centroids.Length}.");
        }

        Metric = metric;
        Dimension = dimension;
        Subspaces = subspaces;
        SubDimension = dimension / subspaces;
        _centroids = centroids;
    }

    /// <summary>The metric the distance tables are built for.</summary>
    public DistanceMetric Metric { get; }

    /// <summary>The vector dimension.</summary>
    public int Dimension { get; }

    /// <summary>Sub-vectors per vector: bytes per code.</summary>
    public int Subspaces { get; }

    /// <summary>Components per sub-vector.</summary>
    public int SubDimension { get; }

    /// <summary>The centroids, subspace-major (what is persisted).</summary>
    public ReadOnlySpan<float> CentroidData => _centroids;

    /// <summary>Floats in one query's distance table.</summary>
    public int TableLength => Subspaces * Centroids;

    /// <summary>Checks that <paramref name="subspaces"/> can cut vectors of <paramref name="dimension"/>.</summary>
    public static void Validate(int dimension, int subspaces)
    {
        if (subspaces <= 0 || subspaces > dimension || dimension % subspaces != 0)
        {
            VectorThrow.BadArgument($"Product quantisation needs a number of subspaces that divides the dimension ({dimension}); got {subspaces}.");
        }
    }

    /// <summary>
    /// Learns the centroids by k-means (k-means++ seeding from a seeded generator, then Lloyd iterations) on a
    /// sample of row-major vectors, every subspace on its own, in parallel.
    /// </summary>
    /// <param name="metric">The metric the tables will be built for (the centroids are L2 k-means in every case).</param>
    /// <param name="sample">Row-major sample, <paramref name="dimension"/> floats per vector; at most <paramref name="maxSample"/> rows are used.</param>
    /// <param name="dimension">The vector dimension.</param>
    /// <param name="subspaces">Subspaces; must divide <paramref name="dimension"/>.</param>
    /// <param name="seed">Seed of the sampling and seeding, so a training is reproducible.</param>
    /// <param name="iterations">Lloyd iterations.</param>
    /// <param name="maxSample">Rows used at most (evenly strided over the sample).</param>
    public static ProductQuantizer Train(DistanceMetric metric, ReadOnlySpan<float> sample, int dimension, int subspaces, ulong seed = 42, int iterations = 10, int maxSample = 16_384)
    {
        Validate(dimension, subspaces);
        int count = sample.Length / dimension;
        if (count == 0)
        {
            VectorThrow.BadArgument("A product quantiser needs at least one vector to train on.");
        }

        int rows = Math.Min(count, maxSample);
        int sub = dimension / subspaces;

        // Gather the (strided) sample per subspace, contiguous, so each k-means reads one dense array.
        var perSubspace = new float[subspaces][];
        for (int s = 0; s < subspaces; s++)
        {
            perSubspace[s] = new float[rows * sub];
        }

        for (int r = 0; r < rows; r++)
        {
            int v = (int)((long)r * count / rows);
            var row = sample.Slice(v * dimension, dimension);
            for (int s = 0; s < subspaces; s++)
            {
                row.Slice(s * sub, sub).CopyTo(perSubspace[s].AsSpan(r * sub, sub));
            }
        }

        var centroids = new float[dimension * Centroids];
        Parallel.For(0, subspaces, s =>
        {
            var learnt = KMeans(perSubspace[s], rows, sub, seed + (ulong)s, iterations);
            learnt.CopyTo(centroids.AsSpan(s * Centroids * sub, Centroids * sub));
        });
        return new ProductQuantizer(metric, dimension, subspaces, centroids);
    }

    /// <summary>Encodes one vector: the nearest centroid of each subspace.</summary>
    public void Encode(ReadOnlySpan<float> vector, Span<byte> code)
    {
        int sub = SubDimension;
        for (int s = 0; s < Subspaces; s++)
        {
            code[s] = (byte)Nearest(vector.Slice(s * sub, sub), _centroids.AsSpan(s * Centroids * sub, Centroids * sub), sub, Centroids);
        }
    }

    /// <summary>Decodes a code to the concatenation of its centroids (the vector it stands for).</summary>
    public void Decode(ReadOnlySpan<byte> code, Span<float> vector)
    {
        int sub = SubDimension;
        for (int s = 0; s < Subspaces; s++)
        {
            _centroids.AsSpan(((s * Centroids) + code[s]) * sub, sub).CopyTo(vector.Slice(s * sub, sub));
        }
    }

    /// <summary>
    /// Fills <paramref name="table"/> (<see cref="TableLength"/> floats) with the distance from each query
    /// sub-vector to each centroid of its subspace: squared L2 parts, or negated inner-product parts.
    /// </summary>
    public void BuildTable(ReadOnlySpan<float> query, Span<float> table)
    {
        int sub = SubDimension;
        bool l2 = Metric == DistanceMetric.L2;
        for (int s = 0; s < Subspaces; s++)
        {
            var q = query.Slice(s * sub, sub);
            var centroids = _centroids.AsSpan(s * Centroids * sub, Centroids * sub);
            var row = table.Slice(s * Centroids, Centroids);
            for (int c = 0; c < Centroids; c++)
            {
                var centroid = centroids.Slice(c * sub, sub);
                float acc = 0;
                for (int i = 0; i < sub; i++)
                {
                    acc += l2 ? (q[i] - centroid[i]) * (q[i] - centroid[i]) : -(q[i] * centroid[i]);
                }

                row[c] = acc;
            }
        }
    }

    /// <summary>The asymmetric distance of a code from the query whose table this is (as the graph ranks: smaller is closer).</summary>
    public float Distance(ReadOnlySpan<float> table, ReadOnlySpan<byte> code)
    {
        unsafe
        {
            fixed (float* t = table)
            fixed (byte* c = code)
            {
                float sum = Sum(t, c, Subspaces);
                return Metric == DistanceMetric.L2 ? sum : 1f + sum;
            }
        }
    }

    /// <summary>The table lookups of one code, four independent sums so the adds pipeline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static unsafe float Sum(float* table, byte* code, int subspaces)
    {
        float a = 0, b = 0, c = 0, d = 0;
        int s = 0;
        for (; s + 4 <= subspaces; s += 4)
        {
            a += table[(s * Centroids) + code[s]];
            b += table[((s + 1) * Centroids) + code[s + 1]];
            c += table[((s + 2) * Centroids) + code[s + 2]];
            d += table[((s + 3) * Centroids) + code[s + 3]];
        }

        for (; s < subspaces; s++)
        {
            a += table[(s * Centroids) + code[s]];
        }

        return (a + b) + (c + d);
    }

    private static int Nearest(ReadOnlySpan<float> x, ReadOnlySpan<float> centroids, int sub, int k)
    {
        int best = 0;
        float bestDistance = float.MaxValue;
        for (int c = 0; c < k; c++)
        {
            var centroid = centroids.Slice(c * sub, sub);
            float d = 0;
            for (int i = 0; i < sub; i++)
            {
                float diff = x[i] - centroid[i];
                d += diff * diff;
            }

            if (d < bestDistance)
            {
                bestDistance = d;
                best = c;
            }
        }

        return best;
    }

    /// <summary>k-means on <paramref name="rows"/> points of <paramref name="sub"/> floats; returns 256 centroids (repeating points when there are fewer).</summary>
    private static float[] KMeans(float[] points, int rows, int sub, ulong seed, int iterations)
    {
        var centroids = new float[Centroids * sub];
        var random = new Random((int)(seed ^ (seed >> 32)));
        int k = Math.Min(Centroids, rows);

        // k-means++ seeding: each next centroid drawn with probability proportional to its squared distance
        // from the nearest one chosen so far, so the seeds spread over the data.
        var nearest = new float[rows];
        Array.Fill(nearest, float.MaxValue);
        int first = random.Next(rows);
        points.AsSpan(first * sub, sub).CopyTo(centroids);
        for (int c = 1; c < k; c++)
        {
            var last = centroids.AsSpan((c - 1) * sub, sub);
            double total = 0;
            for (int r = 0; r < rows; r++)
            {
                float d = SquaredDistance(points.AsSpan(r * sub, sub), last);
                if (d < nearest[r])
                {
                    nearest[r] = d;
                }

                total += nearest[r];
            }

            int pick = rows - 1;
            double target = random.NextDouble() * total;
            for (int r = 0; r < rows; r++)
            {
                target -= nearest[r];
                if (target <= 0)
                {
                    pick = r;
                    break;
                }
            }

            points.AsSpan(pick * sub, sub).CopyTo(centroids.AsSpan(c * sub, sub));
        }

        var assignment = new int[rows];
        var sums = new double[k * sub];
        var counts = new int[k];
        for (int iteration = 0; iteration < iterations; iteration++)
        {
            for (int r = 0; r < rows; r++)
            {
                assignment[r] = Nearest(points.AsSpan(r * sub, sub), centroids, sub, k);
            }

            Array.Clear(sums);
            Array.Clear(counts);
            for (int r = 0; r < rows; r++)
            {
                int a = assignment[r];
                counts[a]++;
                for (int i = 0; i < sub; i++)
                {
                    sums[(a * sub) + i] += points[(r * sub) + i];
                }
            }

            for (int c = 0; c < k; c++)
            {
                if (counts[c] == 0)
                {
                    // An empty cluster keeps its centroid (a seed point): it still codes that point exactly.
                    continue;
                }

                for (int i = 0; i < sub; i++)
                {
                    centroids[(c * sub) + i] = (float)(sums[(c * sub) + i] / counts[c]);
                }
            }
        }

        // Fewer points than centroids: the unused codes repeat the first centroid and are never chosen first.
        for (int c = k; c < Centroids; c++)
        {
            centroids.AsSpan(0, sub).CopyTo(centroids.AsSpan(c * sub, sub));
        }

        return centroids;
    }

    private static float SquaredDistance(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        float d = 0;
        for (int i = 0; i < a.Length; i++)
        {
            float diff = a[i] - b[i];
            d += diff * diff;
        }

        return d;
    }

    /// <summary>The centroids as bytes (what a segment file holds).</summary>
    internal ReadOnlySpan<byte> CentroidBytes => MemoryMarshal.AsBytes(_centroids.AsSpan());
}
