using System.Buffers.Binary;
using System.Text;

namespace Atelier.Data.Tokenization;

/// <summary>The fields of sentencepiece_model.proto the encoder reads, from the protobuf wire format.</summary>
internal sealed class SentencePieceModelProto
{
    public List<(string Piece, float Score, SentencePieceType Type)> Pieces { get; } = [];

    public int ModelType { get; private set; } = 1;                    // TrainerSpec.model_type (3): UNIGRAM by default

    public bool ByteFallback { get; private set; }                     // TrainerSpec.byte_fallback (35)

    public bool TreatWhitespaceAsSuffix { get; private set; }          // TrainerSpec.treat_whitespace_as_suffix (24)

    public bool HasCharsMap { get; private set; }                      // NormalizerSpec.precompiled_charsmap (2)

    public bool AddDummyPrefix { get; private set; } = true;           // NormalizerSpec.add_dummy_prefix (3)

    public bool RemoveExtraWhitespaces { get; private set; } = true;   // NormalizerSpec.remove_extra_whitespaces (4)

    public bool EscapeWhitespaces { get; private set; } = true;        // NormalizerSpec.escape_whitespaces (5)

    public static SentencePieceModelProto Parse(ReadOnlySpan<byte> bytes)
    {
        var model = new SentencePieceModelProto();
        var reader = new ProtobufWireReader(bytes);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, 2):
                    model.Pieces.Add(ParsePiece(reader.ReadBytes()));
                    break;
                case (2, 2):
                    model.ParseTrainerSpec(reader.ReadBytes());
                    break;
                case (3, 2):
                    model.ParseNormalizerSpec(reader.ReadBytes());
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }

        return model;
    }

    private static (string, float, SentencePieceType) ParsePiece(ReadOnlySpan<byte> bytes)
    {
        string piece = "";
        float score = 0;
        var type = SentencePieceType.Normal;
        var reader = new ProtobufWireReader(bytes);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (1, 2):
                    piece = Encoding.UTF8.GetString(reader.ReadBytes());
                    break;
                case (2, 5):
                    score = reader.ReadFloat();
                    break;
                case (3, 0):
                    type = (SentencePieceType)reader.ReadVarint();
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }

        return (piece, score, type);
    }

    private void ParseTrainerSpec(ReadOnlySpan<byte> bytes)
    {
        var reader = new ProtobufWireReader(bytes);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (3, 0):
                    ModelType = (int)reader.ReadVarint();
                    break;
                case (24, 0):
                    TreatWhitespaceAsSuffix = reader.ReadVarint() != 0;
                    break;
                case (35, 0):
                    ByteFallback = reader.ReadVarint() != 0;
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
    }

    private void ParseNormalizerSpec(ReadOnlySpan<byte> bytes)
    {
        var reader = new ProtobufWireReader(bytes);
        while (reader.TryReadTag(out int field, out int wireType))
        {
            switch (field, wireType)
            {
                case (2, 2):
                    HasCharsMap = reader.ReadBytes().Length > 0;
                    break;
                case (3, 0):
                    AddDummyPrefix = reader.ReadVarint() != 0;
                    break;
                case (4, 0):
                    RemoveExtraWhitespaces = reader.ReadVarint() != 0;
                    break;
                case (5, 0):
                    EscapeWhitespaces = reader.ReadVarint() != 0;
                    break;
                default:
                    reader.Skip(wireType);
                    break;
            }
        }
    }
}

/// <summary>Reads protobuf wire-format fields: varints, length-delimited bytes, fixed 32-bit floats.</summary>
internal ref struct ProtobufWireReader(ReadOnlySpan<byte> bytes)
{
    private readonly ReadOnlySpan<byte> _bytes = bytes;
    private int _position;

    public bool TryReadTag(out int field, out int wireType)
    {
        if (_position >= _bytes.Length)
        {
            field = wireType = 0;
            return false;
        }

        ulong tag = ReadVarint();
        field = (int)(tag >> 3);
        wireType = (int)(tag & 7);
        return true;
    }

    public ulong ReadVarint()
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_position >= _bytes.Length)
            {
                break;
            }

            byte b = _bytes[_position++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }

        throw new InvalidDataException("tokenizer.model: malformed varint.");
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        int length = checked((int)ReadVarint());
        if (length > _bytes.Length - _position)
        {
            throw new InvalidDataException("tokenizer.model: truncated field.");
        }

        ReadOnlySpan<byte> value = _bytes.Slice(_position, length);
        _position += length;
        return value;
    }

    public float ReadFloat()
    {
        if (_bytes.Length - _position < 4)
        {
            throw new InvalidDataException("tokenizer.model: truncated float.");
        }

        float value = BinaryPrimitives.ReadSingleLittleEndian(_bytes.Slice(_position, 4));
        _position += 4;
        return value;
    }

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0:
                ReadVarint();
                break;
            case 1:
                _position += 8;
                break;
            case 2:
                ReadBytes();
                break;
            case 5:
                _position += 4;
                break;
            default:
                throw new InvalidDataException($"tokenizer.model: unsupported wire type {wireType}.");
        }

        if (_position > _bytes.Length)
        {
            throw new InvalidDataException("tokenizer.model: truncated field.");
        }
    }
}

/// <summary>sentencepiece_model.proto's <c>SentencePiece.Type</c>.</summary>
internal enum SentencePieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}
