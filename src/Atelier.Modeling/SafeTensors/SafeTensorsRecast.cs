using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Atelier.Modeling.SafeTensors;

/// <summary>
/// Re-types the float tensors of a safetensors stream to one dtype (F32, F16 or BF16; narrowing rounds to
/// nearest even) while it is copied: one sequential pass over the source, a bounded buffer, never the whole
/// file in memory. Names, shapes and <c>__metadata__</c> are kept; the data keep the source's order.
/// </summary>
/// <remarks>
/// The output length is known from the header alone (<see cref="Length"/>), so a server can send it as
/// <c>Content-Length</c> before the first tensor is converted. One instance copies once: it reads its
/// source from the start of the data section on.
/// </remarks>
public sealed class SafeTensorsRecast
{
    // Elements converted per chunk: 256 KiB of float32 in flight, whatever the tensor's size.
    private const int ChunkElements = 1 << 16;

    private readonly Stream _source;
    private readonly SafeTensorInfo[] _order;
    private readonly byte[] _header;
    private bool _copied;

    private SafeTensorsRecast(Stream source, SafeTensorsHeader header, SafeTensorInfo[] order, SafeTensorDType target, byte[] outputHeader, long length)
    {
        _source = source;
        _order = order;
        _header = outputHeader;
        SourceHeader = header;
        Target = target;
        Length = length;
    }

    /// <summary>The source's header.</summary>
    public SafeTensorsHeader SourceHeader { get; }

    /// <summary>The dtype every tensor is written in.</summary>
    public SafeTensorDType Target { get; }

    /// <summary>The output's length in bytes: length prefix, header and data.</summary>
    public long Length { get; }

    /// <summary>Whether every tensor of the source is already in <see cref="Target"/>, so the source's bytes could be sent as they are.</summary>
    public bool IsIdentity => _order.All(t => t.DType == Target);

    /// <summary>
    /// Reads the header of <paramref name="source"/> (left positioned at the start of its data section) and
    /// plans the output.
    /// </summary>
    /// <param name="source">The safetensors bytes, from their start.</param>
    /// <param name="sourceLength">The source's length in bytes.</param>
    /// <param name="target">F32, F16 or BF16.</param>
    /// <param name="sourceName">Names the source in error messages.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <exception cref="SafeTensorsFormatException">The header is malformed, or a tensor is not a float type.</exception>
    public static async Task<SafeTensorsRecast> ReadAsync(Stream source, long sourceLength, SafeTensorDType target, string sourceName, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        if (target is not (SafeTensorDType.F32 or SafeTensorDType.F16 or SafeTensorDType.BF16))
        {
            throw new ArgumentException($"Tensors are re-typed to F32, F16 or BF16, not {SafeTensorDTypes.Name(target)}.", nameof(target));
        }

        var prefix = new byte[8];
        await source.ReadExactlyAsync(prefix, cancellationToken).ConfigureAwait(false);
        var headerLength = SafeTensorsHeader.ReadHeaderLength(prefix, sourceLength, SafeTensorsHeader.DefaultMaxHeaderBytes, sourceName);
        var json = new byte[headerLength];
        await source.ReadExactlyAsync(json, cancellationToken).ConfigureAwait(false);
        var header = SafeTensorsHeader.Parse(json, sourceLength - 8 - headerLength, sourceName);

        // The header tiles the data section without gaps (Parse checks it), so walking the tensors by
        // offset reads the source strictly forward.
        var order = header.Tensors.Values.OrderBy(t => t.Begin).ToArray();
        var targetSize = SafeTensorDTypes.SizeOf(target);
        var entries = new List<(string, SafeTensorDType, long[], long)>(order.Length);
        long data = 0;
        foreach (var t in order)
        {
            if (t.DType is not (SafeTensorDType.F32 or SafeTensorDType.F16 or SafeTensorDType.BF16))
            {
                throw new SafeTensorsFormatException($"{sourceName}: tensor '{t.Name}' has dtype {SafeTensorDTypes.Name(t.DType)}; only F32, F16 and BF16 tensors are re-typed.");
            }

            var bytes = checked(t.ElementCount * targetSize);
            entries.Add((t.Name, target, t.Shape, bytes));
            data += bytes;
        }

        var outputHeader = SafeTensorsWriter.BuildHeader(entries, header.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal));
        return new SafeTensorsRecast(source, header, order, target, outputHeader, 8 + outputHeader.Length + data);
    }

    /// <summary>Writes the re-typed file to <paramref name="destination"/>: exactly <see cref="Length"/> bytes.</summary>
    /// <exception cref="InvalidOperationException">It was already copied.</exception>
    public async Task CopyToAsync(Stream destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(destination);
        if (_copied)
        {
            throw new InvalidOperationException("A recast reads its source once; open the source again and read a new one.");
        }

        _copied = true;
        var prefix = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)_header.Length);
        await destination.WriteAsync(prefix, cancellationToken).ConfigureAwait(false);
        await destination.WriteAsync(_header, cancellationToken).ConfigureAwait(false);

        var targetSize = SafeTensorDTypes.SizeOf(Target);
        var input = ArrayPool<byte>.Shared.Rent(ChunkElements * 4);
        var output = ArrayPool<byte>.Shared.Rent(ChunkElements * targetSize);
        var floats = ArrayPool<float>.Shared.Rent(ChunkElements);
        try
        {
            foreach (var t in _order)
            {
                var sourceSize = SafeTensorDTypes.SizeOf(t.DType);
                var left = t.ElementCount;
                while (left > 0)
                {
                    var n = (int)Math.Min(left, ChunkElements);
                    await _source.ReadExactlyAsync(input.AsMemory(0, n * sourceSize), cancellationToken).ConfigureAwait(false);
                    if (t.DType == Target)
                    {
                        await destination.WriteAsync(input.AsMemory(0, n * sourceSize), cancellationToken).ConfigureAwait(false);
                    }
                    else
                    {
                        Convert(t, input.AsSpan(0, n * sourceSize), floats.AsSpan(0, n), output.AsSpan(0, n * targetSize));
                        await destination.WriteAsync(output.AsMemory(0, n * targetSize), cancellationToken).ConfigureAwait(false);
                    }

                    left -= n;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(input);
            ArrayPool<byte>.Shared.Return(output);
            ArrayPool<float>.Shared.Return(floats);
        }
    }

    /// <summary>Widens a chunk to float32 (exact for every source type), then narrows it to the target.</summary>
    private void Convert(SafeTensorInfo tensor, ReadOnlySpan<byte> input, Span<float> floats, Span<byte> output)
    {
        SafeTensorsFile.ConvertToFloat32(tensor.DType, input, floats, tensor.Name);
        switch (Target)
        {
            case SafeTensorDType.F32:
                MemoryMarshal.AsBytes(floats).CopyTo(output);
                break;
            case SafeTensorDType.BF16:
                for (var i = 0; i < floats.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(output[(i * 2)..], SafeTensorDTypes.ToBFloat16(floats[i]));
                }

                break;
            default:
                for (var i = 0; i < floats.Length; i++)
                {
                    BinaryPrimitives.WriteHalfLittleEndian(output[(i * 2)..], (Half)floats[i]);
                }

                break;
        }
    }
}
