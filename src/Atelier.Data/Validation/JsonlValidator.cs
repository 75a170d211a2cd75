using System.Buffers;
using System.Text.Unicode;
using Atelier.Core.Errors;

namespace Atelier.Data.Validation;

/// <summary>Which rules the lines of an uploaded file are held to.</summary>
public enum JsonlFormat
{
    /// <summary>Mistral fine-tuning lines: chat <c>messages</c> (instruct) or <c>text</c> (pretrain).</summary>
    FineTune,

    /// <summary>Batch request lines: <c>custom_id</c> and <c>body</c>.</summary>
    Batch,
}

/// <summary>
/// Validates a JSONL file as its bytes stream past, in chunks of any size, with memory bounded by
/// the longest allowed line. It finds line boundaries, checks UTF-8 and the line length, and hands
/// each line to the rules of its <see cref="JsonlFormat"/>. It keeps the first
/// <see cref="MaxProblemsKept"/> problems and counts all of them.
/// </summary>
public sealed class JsonlValidator : IDisposable
{
    /// <summary>How many problems are kept with their details; the rest are only counted.</summary>
    public const int MaxProblemsKept = 100;

    private readonly JsonlFormat _format;
    private readonly int _maxLineBytes;
    private readonly string? _fileName;
    private readonly List<Problem> _problems = [];
    private byte[] _carry;
    private int _carryLength;
    private bool _skippingLongLine;
    private bool _atStart = true;
    private long _lineNumber;
    private int _instructLines;
    private int _pretrainLines;
    private long? _firstKindLine;
    private bool _completed;

    /// <summary>Creates a validator for one file.</summary>
    public JsonlValidator(JsonlFormat format, int maxLineBytes, string? fileName = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineBytes, 16);
        _format = format;
        _maxLineBytes = maxLineBytes;
        _fileName = fileName;
        _carry = ArrayPool<byte>.Shared.Rent(Math.Min(maxLineBytes, 1 << 16));
    }

    /// <summary>Non-empty lines seen so far.</summary>
    public long Lines { get; private set; }

    /// <summary>All problems found, including those not kept.</summary>
    public int TotalProblems { get; private set; }

    /// <summary>The first <see cref="MaxProblemsKept"/> problems, in file order.</summary>
    public IReadOnlyList<Problem> Problems => _problems;

    /// <summary>True when no problem was found (meaningful after <see cref="Complete"/>).</summary>
    public bool IsValid => TotalProblems == 0;

    /// <summary>The Mistral sample type of the file: <c>instruct</c>, <c>pretrain</c> or <c>batch_request</c>.</summary>
    public string SampleType => _format == JsonlFormat.Batch ? "batch_request" : _pretrainLines > 0 && _instructLines == 0 ? "pretrain" : "instruct";

    /// <summary>Feeds the next bytes of the file.</summary>
    public void Append(ReadOnlySpan<byte> chunk)
    {
        if (_atStart && chunk.Length > 0)
        {
            // Tolerate a UTF-8 byte order mark, as editors on Windows write one.
            if (_carryLength == 0 && chunk.StartsWith("\uFEFF"u8))
            {
                chunk = chunk[3..];
            }

            _atStart = false;
        }

        while (!chunk.IsEmpty)
        {
            var newline = chunk.IndexOf((byte)'\n');
            if (newline < 0)
            {
                Carry(chunk);
                return;
            }

            var piece = chunk[..newline];
            chunk = chunk[(newline + 1)..];
            if (_skippingLongLine)
            {
                _skippingLongLine = false;
                continue;
            }

            if (_carryLength == 0)
            {
                if (piece.Length > _maxLineBytes)
                {
                    _lineNumber++;
                    TooLong();
                    continue;
                }

                Line(piece);
            }
            else
            {
                if (_carryLength + piece.Length > _maxLineBytes)
                {
                    _carryLength = 0;
                    _lineNumber++;
                    TooLong();
                    continue;
                }

                Carry(piece);
                var whole = _carry.AsSpan(0, _carryLength);
                _carryLength = 0;
                Line(whole);
            }
        }
    }

    /// <summary>Ends the file: validates a last line without a newline and file-level rules.</summary>
    public void Complete()
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        if (_carryLength > 0 && !_skippingLongLine)
        {
            var last = _carry.AsSpan(0, _carryLength);
            _carryLength = 0;
            Line(last);
        }

        if (Lines == 0 && TotalProblems == 0)
        {
            Add(new Problem("the file has no lines; a JSONL file needs at least one", File: _fileName));
        }

        if (_format == JsonlFormat.FineTune && _instructLines > 0 && _pretrainLines > 0)
        {
            Add(new Problem(
                $"the file mixes instruct lines ({_instructLines}) and pretrain lines ({_pretrainLines}); the first line sets the kind (line {_firstKindLine})",
                File: _fileName));
        }
    }

    /// <summary>Returns the pooled buffer.</summary>
    public void Dispose()
    {
        if (_carry.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_carry);
            _carry = [];
        }
    }

    /// <summary>Throws <see cref="ValidationFailedException"/> when a problem was found.</summary>
    public void ThrowIfInvalid()
    {
        if (!IsValid)
        {
            var noun = TotalProblems == 1 ? "problem" : "problems";
            throw new ValidationFailedException(
                $"{_fileName ?? "The file"} failed validation with {TotalProblems} {noun}; first: {_problems[0]}",
                _problems,
                TotalProblems);
        }
    }

    private void Carry(ReadOnlySpan<byte> bytes)
    {
        if (_skippingLongLine)
        {
            return;
        }

        if (_carryLength + bytes.Length > _maxLineBytes)
        {
            // The line is already too long: report it once and drop bytes until its newline.
            _carryLength = 0;
            _skippingLongLine = true;
            _lineNumber++;
            TooLong();
            return;
        }

        if (_carryLength + bytes.Length > _carry.Length)
        {
            var grown = ArrayPool<byte>.Shared.Rent(Math.Min(_maxLineBytes, Math.Max(_carry.Length * 2, _carryLength + bytes.Length)));
            _carry.AsSpan(0, _carryLength).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(_carry);
            _carry = grown;
        }

        bytes.CopyTo(_carry.AsSpan(_carryLength));
        _carryLength += bytes.Length;
    }

    private void TooLong()
    {
        Lines++;
        Add(new Problem($"the line is longer than the limit of {_maxLineBytes} bytes", _lineNumber, File: _fileName));
    }

    private void Line(ReadOnlySpan<byte> line)
    {
        _lineNumber++;
        if (!line.IsEmpty && line[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        if (line.Trim(" \t"u8).IsEmpty)
        {
            // A blank line is not an example; Mistral's reader rejects it, so say where it is.
            Add(new Problem("the line is empty", _lineNumber, File: _fileName));
            return;
        }

        Lines++;
        if (!Utf8.IsValid(line))
        {
            Add(new Problem("the line is not valid UTF-8", _lineNumber, File: _fileName));
            return;
        }

        var kind = _format == JsonlFormat.Batch
            ? BatchLineRules.Validate(line, _lineNumber, this)
            : FineTuneLineRules.Validate(line, _lineNumber, this);
        if (kind == LineKind.Instruct)
        {
            _instructLines++;
            _firstKindLine ??= _lineNumber;
        }
        else if (kind == LineKind.Pretrain)
        {
            _pretrainLines++;
            _firstKindLine ??= _lineNumber;
        }
    }

    internal void Add(Problem problem)
    {
        TotalProblems++;
        if (_problems.Count < MaxProblemsKept)
        {
            _problems.Add(_fileName is null || problem.File is not null ? problem : problem with { File = _fileName });
        }
    }
}

internal enum LineKind
{
    Invalid,
    Instruct,
    Pretrain,
    Batch,
}
