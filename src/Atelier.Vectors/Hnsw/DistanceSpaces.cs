using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;
using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Hnsw;

/// <summary>
/// The distance from a fixed query to any node, as a struct so the JIT specialises the graph walk per
/// metric and representation (BitFaster-style struct policies) and inlines the kernel.
/// </summary>
internal unsafe interface IDistanceSpace<TSelf>
    where TSelf : struct, IDistanceSpace<TSelf>
{
    float Distance(int node);

    void Prefetch(int node);

    /// <summary>The same space with the query replaced by node <paramref name="node"/> (pairwise distances in the heuristic).</summary>
    TSelf ForNode(int node);
}

internal unsafe struct Float32L2Space(float* query, float* vectors, int dimension) : IDistanceSpace<Float32L2Space>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Distance(int node) => VectorDistance.L2Squared(query, vectors + ((long)node * dimension), dimension);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Prefetch(int node)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(vectors + ((long)node * dimension));
        }
    }

    public readonly Float32L2Space ForNode(int node) => new(vectors + ((long)node * dimension), vectors, dimension);
}

internal unsafe struct Float32DotSpace(float* query, float* vectors, int dimension) : IDistanceSpace<Float32DotSpace>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Distance(int node) => 1f - VectorDistance.Dot(query, vectors + ((long)node * dimension), dimension);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Prefetch(int node)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(vectors + ((long)node * dimension));
        }
    }

    public readonly Float32DotSpace ForNode(int node) => new(vectors + ((long)node * dimension), vectors, dimension);
}

internal unsafe struct Int8L2Space(sbyte* query, sbyte* codes, int dimension, float stepSquared) : IDistanceSpace<Int8L2Space>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Distance(int node) => stepSquared * VectorDistance.L2Squared(query, codes + ((long)node * dimension), dimension);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Prefetch(int node)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(codes + ((long)node * dimension));
        }
    }

    public readonly Int8L2Space ForNode(int node) => new(codes + ((long)node * dimension), codes, dimension, stepSquared);
}

internal unsafe struct Int8DotSpace(sbyte* query, sbyte* codes, int dimension, float stepSquared) : IDistanceSpace<Int8DotSpace>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Distance(int node) => 1f - (stepSquared * VectorDistance.Dot(query, codes + ((long)node * dimension), dimension));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Prefetch(int node)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(codes + ((long)node * dimension));
        }
    }

    public readonly Int8DotSpace ForNode(int node) => new(codes + ((long)node * dimension), codes, dimension, stepSquared);
}

/// <summary>
/// Asymmetric distance to product-quantisation codes: one table lookup per subspace. Search only; the graph
/// is built on the int8 codes, so the pairwise form is never needed.
/// </summary>
internal unsafe struct PqSpace(float* table, byte* codes, int subspaces, float bias) : IDistanceSpace<PqSpace>
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly float Distance(int node) => bias + ProductQuantizer.Sum(table, codes + ((long)node * subspaces), subspaces);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Prefetch(int node)
    {
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(codes + ((long)node * subspaces));
        }
    }

    public readonly PqSpace ForNode(int node) => throw new NotSupportedException("Product-quantisation codes are only compared with a query.");
}

/// <summary>Which nodes may enter the results of a walk (struct policy, so the unfiltered walk has no check).</summary>
internal interface IAcceptPolicy
{
    /// <summary>True when every node is accepted, letting the walk stop as soon as hnswlib's unfiltered walk would.</summary>
    static abstract bool AcceptsAll { get; }

    bool Accept(int node);
}

internal readonly struct AcceptAll : IAcceptPolicy
{
    public static bool AcceptsAll => true;

    public bool Accept(int node) => true;
}

internal readonly struct AcceptLive(byte[] states) : IAcceptPolicy
{
    public static bool AcceptsAll => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Accept(int node) => states[node] == NodeState.Live;
}

internal readonly struct AcceptLiveMatching(byte[] states, long[] ids, IVectorFilter filter) : IAcceptPolicy
{
    public static bool AcceptsAll => false;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Accept(int node) => states[node] == NodeState.Live && filter.Matches(ids[node]);
}

internal static class NodeState
{
    /// <summary>Reserved by an insert that has not finished linking; walkable, never returned.</summary>
    public const byte Pending = 0;

    public const byte Live = 1;

    /// <summary>Tombstoned: still links the graph together, never returned.</summary>
    public const byte Deleted = 2;
}

/// <summary>Where a quantised index without in-memory vectors reads full vectors for re-ranking.</summary>
internal interface IFullVectorSource
{
    void Read(int node, Span<float> destination);

    /// <summary>Stores the full vector of a node being inserted, before it is linked into the graph.</summary>
    void Write(int node, ReadOnlySpan<float> vector);

    /// <summary>Asks for the node's vector to be read ahead (without waiting), so that several reads overlap.</summary>
    void Prefetch(int node);
}
