using System.Security.Cryptography;
using Microsoft.ML.Tokenizers;

namespace Atelier.Data.Tokenization;

/// <summary>
/// A SentencePiece <c>tokenizer.model</c> (Mistral v1–v3 before tekken). BPE models encode with
/// <see cref="SentencePieceBpeEncoder"/>, which equals Google's sentencepiece id for id; other model
/// types, decoding and the vocabulary come from Microsoft.ML.Tokenizers' <see cref="SentencePieceTokenizer"/>.
/// Control tokens come from the model's pieces (<c>[INST]</c>... exist in the v3 models); pieces the
/// model lacks are written as text.
/// </summary>
public sealed class SentencePieceTextTokenizer : ITextTokenizer
{
    private readonly SentencePieceTokenizer _tokenizer;
    private readonly SentencePieceBpeEncoder? _bpe;
    private readonly byte[] _model;

    private SentencePieceTextTokenizer(SentencePieceTokenizer tokenizer, SentencePieceBpeEncoder? bpe, string identity, byte[] model)
    {
        _model = model;
        _tokenizer = tokenizer;
        _bpe = bpe;
        Identity = identity;
        IReadOnlyDictionary<string, int> vocabulary = tokenizer.Vocabulary;
        VocabularySize = vocabulary.Count;
        int? Piece(string token) => vocabulary.TryGetValue(token, out int id) ? id : null;
        Control = new ControlTokens
        {
            Bos = tokenizer.BeginningOfSentenceId,
            Eos = tokenizer.EndOfSentenceId,
            Inst = Piece("[INST]"),
            EndInst = Piece("[/INST]"),
            AvailableTools = Piece("[AVAILABLE_TOOLS]"),
            EndAvailableTools = Piece("[/AVAILABLE_TOOLS]"),
            ToolCalls = Piece("[TOOL_CALLS]"),
            ToolResults = Piece("[TOOL_RESULTS]"),
            EndToolResults = Piece("[/TOOL_RESULTS]"),
            Pad = 0,
        };
    }

    /// <inheritdoc />
    public string Name => "sentencepiece";

    /// <inheritdoc />
    public string Identity { get; }

    /// <inheritdoc />
    public int VocabularySize { get; }

    /// <inheritdoc />
    public ControlTokens Control { get; }

    /// <summary>Loads a serialised SentencePiece <c>ModelProto</c>.</summary>
    /// <exception cref="NotSupportedException">A BPE model whose normalisation is not identity (Mistral's are identity).</exception>
    public static SentencePieceTextTokenizer Load(Stream model)
    {
        ArgumentNullException.ThrowIfNull(model);
        using var buffer = new MemoryStream();
        model.CopyTo(buffer);
        byte[] bytes = buffer.ToArray();
        using var stream = new MemoryStream(bytes, writable: false);
        SentencePieceTokenizer tokenizer = SentencePieceTokenizer.Create(stream, false, false);
        return new SentencePieceTextTokenizer(tokenizer, SentencePieceBpeEncoder.TryCreate(bytes), "sentencepiece/sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes)), bytes);
    }

    /// <inheritdoc />
    public void Encode(string text, List<int> destination)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(destination);
        if (_bpe is not null)
        {
            _bpe.Encode(text, destination);
        }
        else if (text.Length > 0)
        {
            destination.AddRange(_tokenizer.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false));
        }
    }

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids);

    /// <summary>
    /// The bytes of each piece: text with <c>▁</c> as a space, a byte piece (<c>&lt;0x41&gt;</c>) as its byte,
    /// null for control, unknown and unused pieces.
    /// </summary>
    internal byte[]?[] TokenBytes()
    {
        var pieces = SentencePieceModelProto.Parse(_model).Pieces;
        var bytes = new byte[]?[pieces.Count];
        for (int id = 0; id < pieces.Count; id++)
        {
            var (piece, _, type) = pieces[id];
            bytes[id] = type switch
            {
                SentencePieceType.Normal or SentencePieceType.UserDefined => System.Text.Encoding.UTF8.GetBytes(piece.Replace('\u2581', ' ')),
                SentencePieceType.Byte when piece.Length == 6 && byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out byte b) => [b],
                _ => null,
            };
        }

        return bytes;
    }
}
