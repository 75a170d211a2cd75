using System.Numerics;
using System.Runtime.InteropServices;
using Atelier.Data.Model;

namespace Atelier.Data.Dedup;

/// <summary>Options of MinHash LSH near-dup detection (defaults as FineWeb).</summary>
public sealed record MinHashOptions
{
    /// <summary>Whether the stage runs.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>
    /// The roles of a conversation whose text is shingled. System prompts are left out by default:
    /// a long prompt shared by every example would make short, different conversations look like
    /// near duplicates of each other. Plain text examples are always shingled whole.
    /// </summary>
    public IReadOnlyList<ChatRole> Roles { get; init; } = [ChatRole.User, ChatRole.Assistant, ChatRole.Tool];

    /// <summary>Words per shingle.</summary>
    public int ShingleSize { get; init; } = 5;

    /// <summary>Number of LSH bands (b).</summary>
    public int Bands { get; init; } = 14;

    /// <summary>Rows (hash values) per band (r).</summary>
    public int RowsPerBand { get; init; } = 8;

    /// <summary>Seed of the hash permutations.</summary>
    public ulong Seed { get; init; } = 0x41_74_65_6C_69_65_72UL;

    /// <summary>
    /// Probability that two documents of Jaccard similarity <paramref name="similarity"/> share at
    /// least one band: <c>1 - (1 - s^r)^b</c>.
    /// </summary>
    public double CandidateProbability(double similarity) =>
        1 - Math.Pow(1 - Math.Pow(similarity, RowsPerBand), Bands);
}

/// <summary>
/// MinHash signatures: for each of <c>bands × rows</c> hash permutations, the minimum over a
/// document's shingle hashes. Permutation i is <c>x → fmix32(a_i·x + b_i)</c> on 32-bit shingle
/// hashes, a bijection, evaluated eight (or sixteen) lanes at a time with <see cref="Vector{T}"/>.
/// Pure and thread-safe.
/// </summary>
public sealed class MinHasher
{
    private readonly uint[] _a;
    private readonly uint[] _b;

    /// <summary>Creates the permutations from the options' seed.</summary>
    public MinHasher(MinHashOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (options.ShingleSize < 1 || options.Bands < 1 || options.RowsPerBand < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "shingle size, bands and rows must be positive");
        }

        Options = options;
        int count = options.Bands * options.RowsPerBand;
        int padded = (count + Vector<uint>.Count - 1) / Vector<uint>.Count * Vector<uint>.Count;
        _a = new uint[padded];
        _b = new uint[padded];
        ulong state = options.Seed;
        for (int i = 0; i < padded; i++)
        {
            _a[i] = (uint)WordHasher.Mix(state += 0x9E3779B97F4A7C15UL) | 1u;
            _b[i] = (uint)WordHasher.Mix(state += 0x9E3779B97F4A7C15UL);
        }
    }

    /// <summary>The options.</summary>
    public MinHashOptions Options { get; }

    /// <summary>Length of a signature.</summary>
    public int SignatureLength => Options.Bands * Options.RowsPerBand;

    /// <summary>Computes the signature of a set of 64-bit shingle hashes. Returns false when there are none.</summary>
    public bool TryCompute(ReadOnlySpan<ulong> shingles, Span<uint> signature)
    {
        if (shingles.IsEmpty)
        {
            return false;
        }

        int vectors = _a.Length / Vector<uint>.Count;
        Span<uint> minimums = stackalloc uint[_a.Length];
        minimums.Fill(uint.MaxValue);
        Span<Vector<uint>> mins = MemoryMarshal.Cast<uint, Vector<uint>>(minimums);
        ReadOnlySpan<Vector<uint>> a = MemoryMarshal.Cast<uint, Vector<uint>>(_a);
        ReadOnlySpan<Vector<uint>> b = MemoryMarshal.Cast<uint, Vector<uint>>(_b);
        var c1 = new Vector<uint>(0x85EBCA6Bu);
        var c2 = new Vector<uint>(0xC2B2AE35u);
        foreach (ulong shingle in shingles)
        {
            var x0 = new Vector<uint>((uint)(shingle ^ (shingle >> 32)));
            for (int v = 0; v < vectors; v++)
            {
                Vector<uint> x = (a[v] * x0) + b[v];
                x ^= x >>> 16;
                x *= c1;
                x ^= x >>> 13;
                x *= c2;
                x ^= x >>> 16;
                mins[v] = Vector.Min(mins[v], x);
            }
        }

        minimums[..SignatureLength].CopyTo(signature);
        return true;
    }

    /// <summary>The LSH key of each band: a hash of its rows and the band index.</summary>
    public void BandKeys(ReadOnlySpan<uint> signature, Span<ulong> keys)
    {
        int rows = Options.RowsPerBand;
        for (int band = 0; band < Options.Bands; band++)
        {
            ReadOnlySpan<uint> slice = signature.Slice(band * rows, rows);
            ulong hash = (ulong)band * 0xD6E8FEB86659FD93UL;
            foreach (uint value in slice)
            {
                hash = WordHasher.Mix(hash ^ value);
            }

            keys[band] = hash;
        }
    }

    /// <summary>Estimated Jaccard similarity of two signatures: the fraction of equal rows.</summary>
    public static double EstimateJaccard(ReadOnlySpan<uint> left, ReadOnlySpan<uint> right)
    {
        int equal = 0;
        for (int i = 0; i < left.Length; i++)
        {
            equal += left[i] == right[i] ? 1 : 0;
        }

        return (double)equal / left.Length;
    }
}

/// <summary>
/// The LSH index of near-dup detection. Online and deterministic: documents arrive in input
/// order; a document sharing a band key with an earlier kept one joins that one's cluster and is
/// dropped; otherwise it starts a cluster (its own ordinal is the cluster id) and its band keys
/// are added. The first document of a cluster is the one kept. Memory: about 30 bytes per band
/// per kept document.
/// </summary>
public sealed class MinHashLshIndex
{
    private readonly Dictionary<ulong, long> _clusterByBandKey = [];

    /// <summary>Band keys stored.</summary>
    public int KeyCount => _clusterByBandKey.Count;

    /// <summary>
    /// Looks up a document's band keys. Returns true, with the cluster id, when it is a near
    /// duplicate of an earlier document; otherwise adds it as a new cluster and returns false.
    /// </summary>
    public bool TryFindCluster(ReadOnlySpan<ulong> bandKeys, long ordinal, out long clusterId)
    {
        foreach (ulong key in bandKeys)
        {
            if (_clusterByBandKey.TryGetValue(key, out clusterId))
            {
                return true;
            }
        }

        foreach (ulong key in bandKeys)
        {
            _clusterByBandKey.TryAdd(key, ordinal);
        }

        clusterId = ordinal;
        return false;
    }
}
