using System.Numerics.Tensors;
using Atelier.Vectors;
using Atelier.Vectors.Hnsw;

namespace Atelier.Features.Semantic;

/// <summary>Thresholds and search limits of a <see cref="SemanticDeduplicator"/> run.</summary>
public sealed record SemanticDedupOptions
{
    /// <summary>Two training examples whose cosine similarity is at least this are duplicates (in (0, 1]).</summary>
    public double Threshold { get; init; } = 0.95;

    /// <summary>A training example whose nearest eval item has at least this cosine similarity is contaminated (in (0, 1]).</summary>
    public double ContaminationThreshold { get; init; } = 0.9;

    /// <summary>
    /// Up to this many vectors the neighbours are found by exact brute force (every pair compared);
    /// above it by an HNSW graph, which may miss a few pairs in exchange for sub-quadratic time.
    /// </summary>
    public int ExactSearchLimit { get; init; } = 4096;

    /// <summary>Neighbours examined per example when the graph is used.</summary>
    public int GraphNeighbors { get; init; } = 32;
}

/// <summary>A training example dropped as a member of a cluster.</summary>
/// <param name="Index">Its position in the training list.</param>
/// <param name="Similarity">Its cosine similarity to the cluster's kept example (below the threshold only through a chain of links).</param>
public readonly record struct SemanticClusterMember(int Index, float Similarity);

/// <summary>A cluster of semantic duplicates with more than one member.</summary>
/// <param name="Kept">The example kept: the first of the cluster in training order.</param>
/// <param name="Dropped">The other members, in training order.</param>
public sealed record SemanticCluster(int Kept, IReadOnlyList<SemanticClusterMember> Dropped)
{
    /// <summary>Members, the kept one included.</summary>
    public int Size => Dropped.Count + 1;
}

/// <summary>A training example too close to an eval item.</summary>
/// <param name="Index">Its position in the training list.</param>
/// <param name="EvalIndex">The nearest eval item's position in the eval list (the first of equally near ones).</param>
/// <param name="Similarity">Their cosine similarity.</param>
public readonly record struct SemanticContamination(int Index, int EvalIndex, float Similarity);

/// <summary>What a run decided.</summary>
public sealed class SemanticDedupResult
{
    internal SemanticDedupResult(bool[] keep, IReadOnlyList<SemanticCluster> clusters, IReadOnlyList<SemanticContamination> contaminated, bool exact)
    {
        Keep = keep;
        Clusters = clusters;
        Contaminated = contaminated;
        Exact = exact;
    }

    /// <summary>Whether each training example is kept.</summary>
    public IReadOnlyList<bool> Keep { get; }

    /// <summary>Clusters with more than one member, ordered by their kept example.</summary>
    public IReadOnlyList<SemanticCluster> Clusters { get; }

    /// <summary>Contaminated examples (all dropped), in training order.</summary>
    public IReadOnlyList<SemanticContamination> Contaminated { get; }

    /// <summary>Whether every neighbour search was exact (brute force) rather than through a graph.</summary>
    public bool Exact { get; }
}

/// <summary>
/// Semantic dedup and decontamination over embeddings: drops every training example whose nearest
/// eval item is at least <see cref="SemanticDedupOptions.ContaminationThreshold"/> similar, then links
/// every pair of the remaining examples at least <see cref="SemanticDedupOptions.Threshold"/> similar,
/// and keeps the first example (in training order) of each connected component.
/// </summary>
/// <remarks>
/// Deterministic: the result depends only on the vectors and the options, never on timing or thread
/// count (the graph, when used, is built sequentially with a fixed seed). Contamination is decided
/// first so a contaminated example never becomes the kept representative of a cluster of clean ones.
/// </remarks>
public static class SemanticDeduplicator
{
    /// <summary>Runs dedup and decontamination.</summary>
    /// <param name="training">Training embeddings, in dataset order, all of one dimension.</param>
    /// <param name="eval">Eval embeddings of the same dimension (may be empty).</param>
    /// <param name="options">Thresholds.</param>
    public static SemanticDedupResult Run(IReadOnlyList<float[]> training, IReadOnlyList<float[]> eval, SemanticDedupOptions options)
    {
        ArgumentNullException.ThrowIfNull(training);
        ArgumentNullException.ThrowIfNull(eval);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Threshold is not (> 0 and <= 1) || options.ContaminationThreshold is not (> 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), "Thresholds must be in (0, 1].");
        }

        var dimension = training.Count > 0 ? training[0].Length : eval.Count > 0 ? eval[0].Length : 0;
        var train = Normalized(training, dimension);
        var evals = Normalized(eval, dimension);
        var keep = new bool[training.Count];
        Array.Fill(keep, true);
        var exact = true;

        var contaminated = new List<SemanticContamination>();
        if (evals.Length > 0)
        {
            exact &= evals.Length <= options.ExactSearchLimit;
            using var index = exact ? null : BuildGraph(evals, dimension, Enumerable.Range(0, evals.Length).ToArray());
            for (var i = 0; i < training.Count; i++)
            {
                var (evalIndex, similarity) = index is null ? NearestExact(train[i], evals) : NearestInGraph(index, train[i], evals);
                if (evalIndex >= 0 && similarity >= options.ContaminationThreshold)
                {
                    keep[i] = false;
                    contaminated.Add(new SemanticContamination(i, evalIndex, similarity));
                }
            }
        }

        var clean = Enumerable.Range(0, training.Count).Where(i => keep[i]).ToArray();
        var parent = new int[training.Count];
        for (var i = 0; i < parent.Length; i++)
        {
            parent[i] = i;
        }

        var threshold = (float)options.Threshold;
        if (clean.Length <= options.ExactSearchLimit)
        {
            for (var a = 0; a < clean.Length; a++)
            {
                for (var b = a + 1; b < clean.Length; b++)
                {
                    if (TensorPrimitives.Dot(train[clean[a]], train[clean[b]]) >= threshold)
                    {
                        Union(parent, clean[a], clean[b]);
                    }
                }
            }
        }
        else
        {
            exact = false;
            using var index = BuildGraph(train, dimension, clean);
            var k = Math.Min(options.GraphNeighbors, clean.Length);
            foreach (var i in clean)
            {
                foreach (var hit in index.Search(train[i], k, ef: Math.Max(k * 2, 64)))
                {
                    var j = (int)hit.Id;

                    // The graph proposes candidates; the decision is taken on the exact similarity.
                    if (j != i && TensorPrimitives.Dot(train[i], train[j]) >= threshold)
                    {
                        Union(parent, i, j);
                    }
                }
            }
        }

        // Union by smallest index: a component's root is its first member in training order.
        var members = new SortedDictionary<int, List<SemanticClusterMember>>();
        foreach (var i in clean)
        {
            var root = Find(parent, i);
            if (root != i)
            {
                keep[i] = false;
                if (!members.TryGetValue(root, out var list))
                {
                    members[root] = list = [];
                }

                list.Add(new SemanticClusterMember(i, TensorPrimitives.Dot(train[root], train[i])));
            }
        }

        var clusters = members.Select(m => new SemanticCluster(m.Key, m.Value)).ToArray();
        return new SemanticDedupResult(keep, clusters, contaminated, exact);
    }

    private static float[][] Normalized(IReadOnlyList<float[]> vectors, int dimension)
    {
        var result = new float[vectors.Count][];
        for (var i = 0; i < vectors.Count; i++)
        {
            var v = vectors[i] ?? throw new ArgumentException($"Vector {i} is null.", nameof(vectors));
            if (v.Length != dimension || dimension == 0)
            {
                throw new ArgumentException($"Vector {i} has {v.Length} dimensions, expected {dimension}.", nameof(vectors));
            }

            var copy = (float[])v.Clone();
            var norm = TensorPrimitives.Norm(copy);
            if (norm > 0)
            {
                TensorPrimitives.Divide(copy, norm, copy);
            }

            result[i] = copy;
        }

        return result;
    }

    private static (int Index, float Similarity) NearestExact(float[] query, float[][] candidates)
    {
        var best = -1;
        var bestSimilarity = float.NegativeInfinity;
        for (var j = 0; j < candidates.Length; j++)
        {
            var s = TensorPrimitives.Dot(query, candidates[j]);
            if (s > bestSimilarity)
            {
                best = j;
                bestSimilarity = s;
            }
        }

        return (best, bestSimilarity);
    }

    private static (int Index, float Similarity) NearestInGraph(HnswIndex index, float[] query, float[][] candidates)
    {
        var best = -1;
        var bestSimilarity = float.NegativeInfinity;
        foreach (var hit in index.Search(query, Math.Min(8, candidates.Length), ef: 64))
        {
            var j = (int)hit.Id;
            var s = TensorPrimitives.Dot(query, candidates[j]);
            if (s > bestSimilarity || (s == bestSimilarity && j < best))
            {
                best = j;
                bestSimilarity = s;
            }
        }

        return (best, bestSimilarity);
    }

    private static HnswIndex BuildGraph(float[][] vectors, int dimension, int[] ids)
    {
        var index = new HnswIndex(new HnswOptions { Dimension = dimension, Metric = DistanceMetric.Dot, InitialCapacity = Math.Max(16, ids.Length) });
        foreach (var id in ids)
        {
            index.Add(id, vectors[id]);
        }

        return index;
    }

    private static int Find(int[] parent, int i)
    {
        while (parent[i] != i)
        {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }

        return i;
    }

    private static void Union(int[] parent, int a, int b)
    {
        var ra = Find(parent, a);
        var rb = Find(parent, b);
        if (ra < rb)
        {
            parent[rb] = ra;
        }
        else if (rb < ra)
        {
            parent[ra] = rb;
        }
    }
}
