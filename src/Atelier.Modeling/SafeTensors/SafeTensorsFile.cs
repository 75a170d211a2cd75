using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.SafeTensors;

/// <summary>
/// A safetensors file opened read-only through a memory map. The header is validated on open;
/// tensor bytes are read straight from the map, and float tensors are widened to float32 on request.
/// </summary>
public sealed unsafe class SafeTensorsFile : IDisposable
{
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _base;
    private readonly long _dataOffset;

    private SafeTensorsFile(string path, MemoryMappedFile map, MemoryMappedViewAccessor view, byte* basePtr, SafeTensorsHeader header)
    {
        Path = path;
        _map = map;
        _view = view;
        _base = basePtr;
        Header = header;
        _dataOffset = 8 + header.HeaderLength;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>The validated header.</summary>
    public SafeTensorsHeader Header { get; }

    /// <summary>Entries by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => Header.Tensors;

    /// <summary>Opens and validates a file; throws <see cref="SafeTensorsFormatException"/> if it is malformed.</summary>
    public static SafeTensorsFile Open(string path, long maxHeaderBytes = SafeTensorsHeader.DefaultMaxHeaderBytes)
    {
        var length = new FileInfo(path).Length;
        Span<byte> prefix = stackalloc byte[8];
        using (var fs = File.OpenRead(path))
        {
            fs.ReadAtLeast(prefix, Math.Min(8, (int)Math.Min(length, 8)), throwOnEndOfStream: false);
        }

        var headerLength = SafeTensorsHeader.ReadHeaderLength(prefix, length, maxHeaderBytes, path);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        MemoryMappedViewAccessor? view = null;
        try
        {
            view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            p += view.PointerOffset;
            try
            {
                var header = SafeTensorsHeader.Parse(new ReadOnlySpan<byte>(p + 8, (int)headerLength), length - 8 - headerLength, path);
                return new SafeTensorsFile(path, map, view, p, header);
            }
            catch
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
                throw;
            }
        }
        catch
        {
            view?.Dispose();
            map.Dispose();
            throw;
        }
    }

    /// <summary>The raw bytes of a tensor (valid until the file is disposed).</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        var info = Get(name);
        ObjectDisposedException.ThrowIf(_base == null, this);
        return new ReadOnlySpan<byte>(_base + _dataOffset + info.Begin, checked((int)info.ByteLength));
    }

    /// <summary>Whether the file holds a tensor of this name.</summary>
    public bool Contains(string name) => Header.Tensors.ContainsKey(name);

    /// <summary>The entry of a tensor; throws <see cref="SafeTensorsFormatException"/> when it is absent.</summary>
    public SafeTensorInfo Get(string name)
        => Header.Tensors.TryGetValue(name, out var info) ? info : throw new SafeTensorsFormatException($"{Path}: no tensor named '{name}'.");

    /// <summary>Reads a floating-point tensor (F32, F16, BF16 or F64) into a new float32 tensor.</summary>
    public Tensor ReadFloat32(string name)
    {
        var info = Get(name);
        var shape = new int[info.Shape.Length];
        for (var i = 0; i < shape.Length; i++)
        {
            shape[i] = info.Shape[i] > int.MaxValue ? throw new SafeTensorsFormatException($"{Path}: tensor '{name}' is too large.") : (int)info.Shape[i];
        }

        var t = Tensor.Uninitialized(shape);
        try
        {
            ConvertToFloat32(info.DType, GetBytes(name), t.Span, $"{Path}: tensor '{name}'");
        }
        catch
        {
            t.Dispose();
            throw;
        }

        return t;
    }

    /// <summary>Widens raw little-endian F32/F16/BF16/F64 bytes to float32.</summary>
    public static void ConvertToFloat32(SafeTensorDType dtype, ReadOnlySpan<byte> bytes, Span<float> dst, string what)
    {
        switch (dtype)
        {
            case SafeTensorDType.F32:
                MemoryMarshal.Cast<byte, float>(bytes).CopyTo(dst);
                break;
            case SafeTensorDType.BF16:
                {
                    var src = MemoryMarshal.Cast<byte, ushort>(bytes);
                    for (var i = 0; i < dst.Length; i++)
                    {
                        dst[i] = SafeTensorDTypes.FromBFloat16(src[i]);
                    }

                    break;
                }

            case SafeTensorDType.F16:
                {
                    var src = MemoryMarshal.Cast<byte, Half>(bytes);
                    for (var i = 0; i < dst.Length; i++)
                    {
                        dst[i] = (float)src[i];
                    }

                    break;
                }

            case SafeTensorDType.F64:
                {
                    var src = MemoryMarshal.Cast<byte, double>(bytes);
                    for (var i = 0; i < dst.Length; i++)
                    {
                        dst[i] = (float)src[i];
                    }

                    break;
                }

            default:
                throw new SafeTensorsFormatException($"{what} has dtype {SafeTensorDTypes.Name(dtype)}, which is not a float type.");
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_base != null)
        {
            _base = null;
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _map.Dispose();
        }
    }
}
