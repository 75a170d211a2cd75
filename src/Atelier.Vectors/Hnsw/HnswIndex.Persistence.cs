using System.Runtime.InteropServices;
using Atelier.Vectors.Kernels;
using Atelier.Vectors.Storage;

namespace Atelier.Vectors.Hnsw;

/// <summary>What <see cref="HnswIndex.Save"/> commits: parameters, counts and the segment files of one generation.</summary>
internal sealed record HnswManifest(
    int Format,
    long Generation,
    int Dimension,
    DistanceMetric Metric,
    int M,
    int EfConstruction,
    int EfSearch,
    ulong Seed,
    bool QuantizeInt8,
    int NodeCount,
    int LiveCount,
    int DeletedCount,
    long Entry,
    float QuantizerStep,
    float[]? QuantizerOffsets,
    SegmentFileEntry[] Files,
    int ProductQuantizationSubspaces = 0);

public sealed unsafe partial class HnswIndex
{
    private const int FormatVersion = 1;
    private const string SegmentPattern = "*.seg";

    /// <summary>
    /// Commits the index to <paramref name="directory"/> as a new generation of segment files plus a
    /// manifest written last. Blocks inserts and searches while it copies. A crash during the save leaves
    /// the previous generation readable; files of older generations are deleted after the commit.
    /// </summary>
    public void Save(string directory)
    {
        ThrowIfDisposed();
        Directory.CreateDirectory(directory);
        long generation = (SegmentIO.ReadManifestOrNull<HnswManifest>(directory)?.Generation ?? 0) + 1;
        _resizeLock.EnterWriteLock();
        try
        {
            int count = Math.Min(_count, _capacity);
            var segments = new List<SegmentSource>();
            if (_vectors is not null)
            {
                segments.Add(new($"vectors.g{generation}.seg", (nint)_vectors.Pointer, (long)count * _dimension * sizeof(float)));
            }

            if (_codes is not null)
            {
                segments.Add(new($"codes.g{generation}.seg", (nint)_codes.Pointer, (long)count * _dimension));
            }

            if (_pqCodes is not null && _pq is not null)
            {
                int subspaces = _options.ProductQuantizationSubspaces;
                segments.Add(new($"pqcodes.g{generation}.seg", (nint)_pqCodes.Pointer, (long)count * subspaces));
            }

            segments.Add(new($"links0.g{generation}.seg", (nint)_links0.Pointer, (long)count * _stride0 * sizeof(int)));
            byte[] nodes = SerializeNodes(count);
            SegmentFileEntry[] files;
            byte[] centroids = _pq is null ? [] : _pq.CentroidBytes.ToArray();
            fixed (byte* nodesPointer = nodes)
            fixed (byte* centroidsPointer = centroids)
            {
                segments.Add(new($"nodes.g{generation}.seg", (nint)nodesPointer, nodes.Length));
                if (_pq is not null)
                {
                    segments.Add(new($"pqcentroids.g{generation}.seg", (nint)centroidsPointer, centroids.Length));
                }

                files = SegmentIO.WriteSegments(directory, segments);
            }

            var manifest = new HnswManifest(
                FormatVersion,
                generation,
                _dimension,
                _options.Metric,
                _m,
                _options.EfConstruction,
                _options.EfSearch,
                _options.Seed,
                _options.QuantizeInt8,
                count,
                _liveCount,
                _deletedCount,
                Volatile.Read(ref _entry),
                _quantizer?.Step ?? 0,
                _quantizer?.Offsets.ToArray(),
                files,
                _pq is null ? 0 : _options.ProductQuantizationSubspaces);
            SegmentIO.CommitManifest(directory, manifest);
            SegmentIO.DeleteStale(directory, files.Select(f => f.Name).ToHashSet(), SegmentPattern);
        }
        finally
        {
            _resizeLock.ExitWriteLock();
        }
    }

    /// <summary>
    /// Reopens the index committed in <paramref name="directory"/>. Vectors, codes and the base layer are
    /// memory-mapped (copy-on-write), so opening costs reading the node table, not the vectors.
    /// </summary>
    /// <param name="directory">Where <see cref="Save"/> committed the index.</param>
    /// <param name="verifyChecksums">Also hash the large mapped segments (reads them all); lengths and the node table are always checked.</param>
    /// <exception cref="VectorStoreCorruptedException">A committed file is missing, truncated or altered.</exception>
    public static HnswIndex Open(string directory, bool verifyChecksums = false) => Open(directory, verifyChecksums, externalVectors: null);

    internal static HnswIndex Open(string directory, bool verifyChecksums, IFullVectorSource? externalVectors)
    {
        var manifest = SegmentIO.ReadManifestOrNull<HnswManifest>(directory)
            ?? throw new FileNotFoundException($"No committed index in '{directory}'.", Path.Combine(directory, SegmentIO.ManifestName));
        if (manifest.Format != FormatVersion)
        {
            VectorThrow.Corrupted($"Index format {manifest.Format} in '{directory}' is not supported.");
        }

        foreach (var file in manifest.Files)
        {
            SegmentIO.Verify(directory, file, hash: verifyChecksums || file.Name.StartsWith("nodes.", StringComparison.Ordinal) || file.Name.StartsWith("pqcentroids.", StringComparison.Ordinal));
        }

        var options = new HnswOptions
        {
            Dimension = manifest.Dimension,
            Metric = manifest.Metric,
            M = manifest.M,
            EfConstruction = manifest.EfConstruction,
            EfSearch = manifest.EfSearch,
            Seed = manifest.Seed,
            QuantizeInt8 = manifest.QuantizeInt8,
            ProductQuantizationSubspaces = manifest.ProductQuantizationSubspaces,
            InitialCapacity = 16,
        };
        var index = new HnswIndex(options, externalVectors);
        try
        {
            index.LoadFrom(directory, manifest);
        }
        catch
        {
            index.Dispose();
            throw;
        }

        return index;
    }

    private void LoadFrom(string directory, HnswManifest manifest)
    {
        int count = manifest.NodeCount;
        string FileOf(string prefix) => Path.Combine(directory, manifest.Files.Single(f => f.Name.StartsWith(prefix, StringComparison.Ordinal)).Name);

        _vectors?.Dispose();
        _codes?.Dispose();
        _pqCodes?.Dispose();
        _links0.Dispose();
        _vectors = _externalVectors is null ? NativeBuffer.Map(FileOf("vectors."), (long)count * _dimension * sizeof(float)) : null;
        _codes = manifest.QuantizeInt8 ? NativeBuffer.Map(FileOf("codes."), (long)count * _dimension) : null;
        _links0 = NativeBuffer.Map(FileOf("links0."), (long)count * _stride0 * sizeof(int));
        int subspaces = manifest.ProductQuantizationSubspaces;
        _pqCodes = subspaces > 0 ? NativeBuffer.Map(FileOf("pqcodes."), (long)count * subspaces) : null;

        // What every search touches is read ahead in the background; the int8 codes of an index that walks on
        // PQ codes are left cold (only inserts read them).
        _links0.ReadAhead();
        if (_pqCodes is not null)
        {
            _pqCodes.ReadAhead();
        }
        else
        {
            _codes?.ReadAhead();
        }

        _capacity = Math.Max(count, 1);
        _upper = new int[]?[_capacity];
        _levels = new byte[_capacity];
        _states = new byte[_capacity];
        _ids = new long[_capacity];

        // Sized up front: growing a dictionary of millions of ids rehashes it several times.
        _idToNode = new(Environment.ProcessorCount, Math.Max(count, 31));
        DeserializeNodes(File.ReadAllBytes(FileOf("nodes.")), count);
        _count = count;
        _liveCount = _idToNode.Count;
        _deletedCount = count - _liveCount;
        _entry = manifest.Entry;
        if (manifest.QuantizeInt8 && manifest.QuantizerOffsets is { } offsets && manifest.QuantizerStep > 0)
        {
            _quantizer = new ScalarQuantizer(manifest.QuantizerStep, offsets);
        }

        if (subspaces > 0)
        {
            byte[] centroids = File.ReadAllBytes(FileOf("pqcentroids."));
            _pq = new ProductQuantizer(manifest.Metric, _dimension, subspaces, MemoryMarshal.Cast<byte, float>(centroids).ToArray());
        }
    }

    private byte[] SerializeNodes(int count)
    {
        long upperInts = 0;
        for (int i = 0; i < count; i++)
        {
            upperInts += _upper[i]?.Length ?? 0;
        }

        var bytes = new byte[(count * (sizeof(long) + 2)) + (upperInts * sizeof(int))];
        var span = bytes.AsSpan();
        MemoryMarshal.AsBytes(_ids.AsSpan(0, count)).CopyTo(span);
        span = span[(count * sizeof(long))..];
        _levels.AsSpan(0, count).CopyTo(span);
        span = span[count..];
        _states.AsSpan(0, count).CopyTo(span);
        span = span[count..];
        for (int i = 0; i < count; i++)
        {
            if (_upper[i] is { } upper)
            {
                MemoryMarshal.AsBytes(upper.AsSpan()).CopyTo(span);
                span = span[(upper.Length * sizeof(int))..];
            }
        }

        return bytes;
    }

    private void DeserializeNodes(ReadOnlySpan<byte> bytes, int count)
    {
        if (bytes.Length < count * (sizeof(long) + 2))
        {
            VectorThrow.Corrupted("The node table is shorter than its node count.");
        }

        MemoryMarshal.Cast<byte, long>(bytes[..(count * sizeof(long))]).CopyTo(_ids);
        bytes = bytes[(count * sizeof(long))..];
        bytes[..count].CopyTo(_levels);
        bytes = bytes[count..];
        bytes[..count].CopyTo(_states);
        bytes = bytes[count..];
        for (int i = 0; i < count; i++)
        {
            int level = _levels[i];
            if (level > 0)
            {
                int ints = level * (_m + 1);
                if (bytes.Length < ints * sizeof(int))
                {
                    VectorThrow.Corrupted("The node table ends inside the upper-layer links.");
                }

                _upper[i] = MemoryMarshal.Cast<byte, int>(bytes[..(ints * sizeof(int))]).ToArray();
                bytes = bytes[(ints * sizeof(int))..];
            }

            if (_states[i] == NodeState.Live)
            {
                _idToNode[_ids[i]] = i;
            }
            else if (_states[i] == NodeState.Pending)
            {
                // Reserved by an insert that had not finished when the snapshot was taken: never returned.
                _states[i] = NodeState.Deleted;
            }
        }
    }
}
