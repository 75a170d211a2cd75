using System.Buffers.Binary;
using System.Text;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Tests;

public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-st-");

    public void Dispose() => Directory.Delete(_dir, true);

    /// <summary>An independent minimal writer: the 8-byte length, the JSON text as given, the data bytes.</summary>
    private string WriteRaw(string name, string headerJson, byte[] data, ulong? declaredLength = null)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, declaredLength ?? (ulong)header.Length);
        header.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + header.Length);
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] Floats(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    [Fact]
    public void Open_ReadsF32Bf16AndF16Tensors_WrittenByAnIndependentWriter()
    {
        // bf16 0x3FC0 = 1.5, 0xC040 = -3.0; f16 0x3C00 = 1.0, 0xC500 = -5.0.
        var data = Floats(1f, -2f, 0.25f, 8f, 3.5f, -0.125f)
            .Concat(new byte[] { 0xC0, 0x3F, 0x40, 0xC0 })
            .Concat(new byte[] { 0x00, 0x3C, 0x00, 0xC5 })
            .ToArray();
        var path = WriteRaw("ok.safetensors",
            """{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},"b":{"dtype":"BF16","shape":[2],"data_offsets":[24,28]},"h":{"dtype":"F16","shape":[2],"data_offsets":[28,32]}}""",
            data);
        using var file = SafeTensorsFile.Open(path);
        Assert.Equal("pt", file.Header.Metadata["format"]);
        using var w = file.ReadFloat32("w");
        Assert.Equal([2, 3], w.Shape);
        Assert.Equal([1f, -2f, 0.25f, 8f, 3.5f, -0.125f], w.Span.ToArray());
        using var b = file.ReadFloat32("b");
        Assert.Equal([1.5f, -3f], b.Span.ToArray());
        using var h = file.ReadFloat32("h");
        Assert.Equal([1f, -5f], h.Span.ToArray());
        Assert.Throws<SafeTensorsFormatException>(() => file.Get("missing"));
    }

    [Fact]
    public void Writer_RoundTripsThroughTheReader_WithAnAlignedHeaderAndBf16Rounding()
    {
        var path = Path.Combine(_dir, "rt.safetensors");
        float[] values = [1f, 1.00390625f, -2.5f, 3.14159f];
        new SafeTensorsWriter().Add("x", values, [2, 2]).Add("y", values, [4], SafeTensorDType.BF16).AddMetadata("k", "v").Save(path);
        var raw = File.ReadAllBytes(path);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(raw) % 8);
        using var file = SafeTensorsFile.Open(path);
        using var x = file.ReadFloat32("x");
        Assert.Equal(values, x.Span.ToArray());
        using var y = file.ReadFloat32("y");
        Assert.Equal([1f, 1f, -2.5f, 3.140625f], y.Span.ToArray()); // round to nearest even in bf16
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp"));
    }

    public static TheoryData<string, string, int, string> Malformed => new()
    {
        { "not json", "{nope", 4, "JSON" },
        { "not an object", "[1,2]", 0, "'{'" },
        { "unknown dtype", """{"a":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}""", 4, "dtype" },
        { "negative dim", """{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}""", 4, "non-negative" },
        { "size mismatch", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}""", 4, "needs 8 bytes" },
        { "out of bounds", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 4, "past the data section" },
        { "overlap", """{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "overlap" },
        { "hole", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "belong to no tensor" },
        { "trailing bytes", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", 12, "belong to no tensor" },
        { "reversed offsets", """{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}""", 4, "end before" },
        { "duplicate name", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}""", 8, "twice" },
        { "extra field", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":1}}""", 4, "unexpected" },
        { "missing field", """{"a":{"dtype":"F32","shape":[1]}}""", 4, "needs dtype" },
        { "overflowing shape", """{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,4]}}""", 4, "too large" },
        { "bad metadata", """{"__metadata__":{"k":1}}""", 0, "not a string" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void Open_RefusesAMalformedHeader_WithAClearError(string what, string header, int dataBytes, string messagePart)
    {
        var path = WriteRaw(what.Replace(' ', '_') + ".safetensors", header, new byte[dataBytes]);
        var e = Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(path));
        Assert.Contains(messagePart, e.Message, StringComparison.Ordinal);
        Assert.Contains(path, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Open_RefusesHeaderLengthsBeyondTheLimitOrTheFile_AndTruncatedFiles()
    {
        var huge = WriteRaw("huge.safetensors", "{}", [], declaredLength: 200_000_000);
        Assert.Contains("exceeds the limit", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(huge)).Message, StringComparison.Ordinal);
        var past = WriteRaw("past.safetensors", "{}", [], declaredLength: 1000);
        Assert.Contains("past the end", Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(past)).Message, StringComparison.Ordinal);
        var tiny = Path.Combine(_dir, "tiny.safetensors");
        File.WriteAllBytes(tiny, [1, 2, 3]);
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(tiny));
        var limited = WriteRaw("limited.safetensors", """{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[4]);
        Assert.Throws<SafeTensorsFormatException>(() => SafeTensorsFile.Open(limited, maxHeaderBytes: 16));
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void Open_OnSeededFuzzedHeaders_EitherRefusesCleanlyOrYieldsTensorsInsideTheFile()
    {
        const string header = """{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"c":{"dtype":"I8","shape":[2],"data_offsets":[22,24]}}""";
        var baseHeader = Encoding.UTF8.GetBytes(header);
        var data = new byte[24];
        var rng = new Random(1234);
        const string alphabet = "0123456789{}[],:\"-. eEFBI";
        int refused = 0, accepted = 0;
        for (var iter = 0; iter < 400; iter++)
        {
            var h = baseHeader.ToList();
            var mutations = 1 + rng.Next(4);
            for (var m = 0; m < mutations; m++)
            {
                var pos = rng.Next(h.Count);
                switch (rng.Next(4))
                {
                    case 0: h[pos] = (byte)rng.Next(256); break;
                    case 1: h[pos] = (byte)alphabet[rng.Next(alphabet.Length)]; break;
                    case 2: h.RemoveAt(pos); break;
                    default: h.Insert(pos, (byte)alphabet[rng.Next(alphabet.Length)]); break;
                }
            }

            var bytes = new byte[8 + h.Count + data.Length];
            // Sometimes lie about the header length too.
            var declared = rng.Next(10) == 0 ? (ulong)rng.Next(h.Count + 40) : (ulong)h.Count;
            BinaryPrimitives.WriteUInt64LittleEndian(bytes, declared);
            h.ToArray().CopyTo(bytes, 8);
            var path = Path.Combine(_dir, "fuzz.safetensors");
            File.WriteAllBytes(path, bytes);
            try
            {
                using var file = SafeTensorsFile.Open(path);
                var dataLength = bytes.Length - 8 - (long)declared;
                foreach (var t in file.Tensors.Values)
                {
                    Assert.InRange(t.End, t.Begin, dataLength);
                    Assert.Equal(t.ByteLength, file.GetBytes(t.Name).Length);
                }

                accepted++;
            }
            catch (SafeTensorsFormatException)
            {
                refused++;
            }
        }

        Assert.True(refused > 100, $"only {refused} fuzzed headers were refused");
        Assert.Equal(400, refused + accepted);
    }
}
