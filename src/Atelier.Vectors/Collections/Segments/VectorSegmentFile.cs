using System.Runtime.InteropServices;
using Atelier.Vectors.Hnsw;
using Microsoft.Win32.SafeHandles;

namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// The full-precision vectors of one int8 graph in a file on a local drive instead of in memory: record
/// <c>n</c> holds graph node <c>n</c>. The graph walks its int8 codes in memory and reads full vectors only
/// to re-rank candidates, through a shared <see cref="FullVectorCache"/>; a miss is one positional read.
/// </summary>
/// <remarks>
/// Records are written before their node is linked into the graph (<see cref="IFullVectorSource.Write"/>),
/// so a search that reaches a node can always read its record. Node ids only grow (a replaced vector gets
/// a new node), so the cache never holds a stale record under a live key.
/// </remarks>
internal sealed partial class VectorSegmentFile : IFullVectorSource, IDisposable
{
    private const int FadviseWillNeed = 3;

    /// <summary>The file name of a segment in its directory.</summary>
    public const string FileName = "vectors.f32";

    private readonly SafeFileHandle _file;
    private readonly FullVectorCache _cache;
    private readonly long _segmentId;
    private readonly int _dimension;
    private long _diskReads;

    /// <summary>Opens (creating) the segment file in <paramref name="directory"/>.</summary>
    /// <param name="directory">Its directory, created if needed.</param>
    /// <param name="dimension">Components per vector.</param>
    /// <param name="cache">The cache shared by the segments of one collection.</param>
    /// <param name="truncate">Starts empty: the caller rebuilds the graph and writes every record again.</param>
    public VectorSegmentFile(string directory, int dimension, FullVectorCache cache, bool truncate)
    {
        Directory.CreateDirectory(directory);
        Path = System.IO.Path.Combine(directory, FileName);
        _dimension = dimension;
        _cache = cache;
        _segmentId = cache.NewSegmentId();
        _file = File.OpenHandle(Path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        if (truncate)
        {
            RandomAccess.SetLength(_file, 0);
        }
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>Records read from the file (cache misses) since it was opened.</summary>
    public long DiskReads => Interlocked.Read(ref _diskReads);

    /// <summary>Bytes in the file.</summary>
    public long Length => RandomAccess.GetLength(_file);

    private int RecordBytes => _dimension * sizeof(float);

    /// <summary>Reads the full vector of <paramref name="node"/>: from the cache, or from the file (then cached).</summary>
    public void Read(int node, Span<float> destination)
    {
        long key = (_segmentId << 40) | (uint)node;
        if (!_cache.TryGet(key, out var vector))
        {
            vector = new float[_dimension];
            int read = RandomAccess.Read(_file, MemoryMarshal.AsBytes(vector.AsSpan()), (long)node * RecordBytes);
            if (read != RecordBytes)
            {
                VectorThrow.Corrupted($"Vector segment '{Path}' ends before node {node}.");
            }

            Interlocked.Increment(ref _diskReads);
            _cache.Add(key, vector);
        }

        vector.AsSpan().CopyTo(destination);
    }

    /// <summary>
    /// Starts reading the record of <paramref name="node"/> into the page cache without waiting
    /// (<c>posix_fadvise(WILLNEED)</c>) unless the cache holds it: a re-rank asks for all its candidates first,
    /// so their reads are in flight together and the search waits about one device latency, not one per
    /// candidate, on one thread. Nothing off Linux.
    /// </summary>
    public void Prefetch(int node)
    {
        long key = (_segmentId << 40) | (uint)node;
        if (!OperatingSystem.IsLinux() || _cache.Contains(key))
        {
            return;
        }

        bool added = false;
        try
        {
            _file.DangerousAddRef(ref added);
            _ = Fadvise((int)_file.DangerousGetHandle(), (long)node * RecordBytes, RecordBytes, FadviseWillNeed);
        }
        finally
        {
            if (added)
            {
                _file.DangerousRelease();
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);

    /// <summary>Writes the record of a node being inserted.</summary>
    public void Write(int node, ReadOnlySpan<float> vector) =>
        RandomAccess.Write(_file, MemoryMarshal.AsBytes(vector), (long)node * RecordBytes);

    /// <summary>
    /// Keeps exactly the records of the first <paramref name="nodes"/> nodes: records past them were appended
    /// after the graph was last committed and belong to no committed node.
    /// </summary>
    /// <exception cref="VectorStoreCorruptedException">The file holds fewer records than that (a torn or truncated write).</exception>
    public void TruncateTo(int nodes)
    {
        long committed = (long)nodes * RecordBytes;
        long length = Length;
        if (length < committed)
        {
            VectorThrow.Corrupted($"Vector segment '{Path}' holds {length} bytes; the committed index needs {committed}.");
        }

        RandomAccess.SetLength(_file, committed);
    }

    /// <summary>Makes the records durable.</summary>
    public void Flush() => RandomAccess.FlushToDisk(_file);

    public void Dispose() => _file.Dispose();
}
