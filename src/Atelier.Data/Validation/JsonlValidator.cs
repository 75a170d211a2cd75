using System.Buffers;
using System.Text.Json;
using System.Text.Unicode;
using Atelier.Core.Errors;

namespace Atelier.Data.Validation;

/// <summary>Which rules the lines of an uploaded file are held to. Flags: a validator can judge a
/// file by several sets of rules in one pass, parsing each line once, when the purpose of an upload
/// is not yet known (the Mistral SDK sends the file part before the purpose part).</summary>
[Flags]
public enum JsonlFormat
{
    /// <summary>Mistral fine-tuning lines: chat <c>messages</c> (instruct) or <c>text</c> (pretrain).</summary>
    FineTune = 1,

    /// <summary>Batch request lines: <c>custom_id</c> and <c>body</c>.</summary>
    Batch = 2,
}

/// <summary>
/// Validates a JSONL file as its bytes stream past, in chunks of any size, with memory bounded by
/// the longest allowed line. It finds line boundaries, checks UTF-8 and the line length, parses each
/// line once and applies the rules of every requested <see cref="JsonlFormat"/>. For each format it
/// keeps the first <see cref="MaxProblemsKept"/> problems and counts all of them.
/// </summary>
public sealed class JsonlValidator : IDisposable
{
    /// <summary>How many problems are kept with their details; the rest are only counted.</summary>
    public const int MaxProblemsKept = 100;

    private static readonly JsonDocumentOptions ParseOptions = new() { MaxDepth = 64 };

    private readonly int _maxLineBytes;
    private readonly string? _fileName;
    private readonly ProblemSink? _fineTune;
    private readonly ProblemSink? _batch;
    private byte[] _carry;
    private int _carryLength;
    private bool _skippingLongLine;
    private bool _atStart = true;
    private long _lineNumber;
    private bool _completed;

    /// <summary>Creates a validator for one file, judging it by every format in <paramref name="formats"/>.</summary>
    public JsonlValidator(JsonlFormat formats, int maxLineBytes, string? fileName = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLineBytes, 16);
        _maxLineBytes = maxLineBytes;
        _fileName = fileName;
        _fineTune = formats.HasFlag(JsonlFormat.FineTune) ? new ProblemSink(fileName) : null;
        _batch = formats.HasFlag(JsonlFormat.Batch) ? new ProblemSink(fileName) : null;
        if (_fineTune is null && _batch is null)
        {
            throw new ArgumentException("At least one format is needed.", nameof(formats));
        }

        _carry = ArrayPool<byte>.Shared.Rent(Math.Min(maxLineBytes, 1 << 16));
    }

    /// <summary>Non-empty lines seen so far.</summary>
    public long Lines { get; private set; }

    /// <summary>Feeds the next bytes of the file. The memory is only read during the call.</summary>
    public void Append(ReadOnlySpan<byte> chunk)
    {
        var copy = ArrayPool<byte>.Shared.Rent(chunk.Length);
        chunk.CopyTo(copy);
        try
        {
            Append(copy.AsMemory(0, chunk.Length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    /// <summary>
    /// Feeds the next bytes of the file without copying them: lines that lie wholly inside the
    /// chunk are parsed in place. The memory is only read during the call.
    /// </summary>
    public void Append(ReadOnlyMemory<byte> chunk)
    {
        if (_atStart && chunk.Length > 0)
        {
            // Tolerate a UTF-8 byte order mark, as editors on Windows write one.
            if (chunk.Span.StartsWith("\uFEFF"u8))
            {
                chunk = chunk[3..];
            }

            _atStart = false;
        }

        while (!chunk.IsEmpty)
        {
            var newline = chunk.Span.IndexOf((byte)'\n');
            if (newline < 0)
            {
                Carry(chunk.Span);
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
                    TooLong();
                    continue;
                }

                Carry(piece.Span);
                var whole = _carry.AsMemory(0, _carryLength);
                _carryLength = 0;
                Line(whole);
            }
        }
    }

    /// <summary>Ends the file: validates a last line without a newline and the file-level rules.</summary>
    public void Complete()
    {
        if (_completed)
        {
            return;
        }

        _completed = true;
        if (_carryLength > 0 && !_skippingLongLine)
        {
            var last = _carry.AsMemory(0, _carryLength);
            _carryLength = 0;
            Line(last);
        }

        if (Lines == 0)
        {
            AddCommon(new Problem("the file has no lines; a JSONL file needs at least one", File: _fileName));
        }

        if (_fineTune is { InstructLines: > 0, PretrainLines: > 0 })
        {
            _fineTune.Add(new Problem(
                $"the file mixes instruct lines ({_fineTune.InstructLines}) and pretrain lines ({_fineTune.PretrainLines}); the first line sets the kind (line {_fineTune.FirstKindLine})"));
        }
    }

    /// <summary>True when the file passes the rules of <paramref name="format"/> (after <see cref="Complete"/>).</summary>
    public bool IsValid(JsonlFormat format) => Sink(format).Total == 0;

    /// <summary>All problems found under <paramref name="format"/>, including those not kept.</summary>
    public int TotalProblems(JsonlFormat format) => Sink(format).Total;

    /// <summary>The first <see cref="MaxProblemsKept"/> problems under <paramref name="format"/>, in file order.</summary>
    public IReadOnlyList<Problem> Problems(JsonlFormat format) => Sink(format).Kept;

    /// <summary>The Mistral sample type of the file under <paramref name="format"/>: <c>instruct</c>, <c>pretrain</c> or <c>batch_request</c>.</summary>
    public string SampleType(JsonlFormat format) =>
        format == JsonlFormat.Batch ? "batch_request"
        : Sink(format) is { PretrainLines: > 0, InstructLines: 0 } ? "pretrain" : "instruct";

    /// <summary>Throws <see cref="ValidationFailedException"/> when the file fails the rules of <paramref name="format"/>.</summary>
    public void ThrowIfInvalid(JsonlFormat format)
    {
        var sink = Sink(format);
        if (sink.Total > 0)
        {
            var noun = sink.Total == 1 ? "problem" : "problems";
            throw new ValidationFailedException(
                $"{_fileName ?? "The file"} failed validation with {sink.Total} {noun}; first: {sink.Kept[0]}",
                sink.Kept,
                sink.Total);
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

    private ProblemSink Sink(JsonlFormat format) => format switch
    {
        JsonlFormat.FineTune => _fineTune ?? throw new InvalidOperationException("The validator does not judge fine-tune rules."),
        JsonlFormat.Batch => _batch ?? throw new InvalidOperationException("The validator does not judge batch rules."),
        _ => throw new ArgumentOutOfRangeException(nameof(format), "Ask for one format at a time."),
    };

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
        _lineNumber++;
        Lines++;
        AddCommon(new Problem($"the line is longer than the limit of {_maxLineBytes} bytes", _lineNumber));
    }

    private void Line(ReadOnlyMemory<byte> line)
    {
        _lineNumber++;
        if (!line.IsEmpty && line.Span[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        if (line.Span.Trim(" \t"u8).IsEmpty)
        {
            // A blank line is not an example; Mistral's reader rejects it, so say where it is.
            AddCommon(new Problem("the line is empty", _lineNumber));
            return;
        }

        Lines++;
        if (!Utf8.IsValid(line.Span))
        {
            AddCommon(new Problem("the line is not valid UTF-8", _lineNumber));
            return;
        }

        // The direct scan settles the ordinary lines for both rule sets in one pass; what it is
        // unsure of goes to the reader scan, and what that is unsure of to the full rules.
        var fineTunePending = _fineTune is not null;
        var batchPending = _batch is not null;
        if (DirectLineScan.TryScan(line.Span, out var direct, out var directIdOk, out var directBodyOk))
        {
            if (fineTunePending && direct != LineKind.Invalid)
            {
                _fineTune!.Count(direct, _lineNumber);
                fineTunePending = false;
            }

            if (batchPending)
            {
                BatchLineRules.Report(directIdOk, directBodyOk, _lineNumber, _batch!);
                batchPending = false;
            }

            if (!fineTunePending && !batchPending)
            {
                return;
            }
        }

        if (fineTunePending && batchPending)
        {
            // Purpose not known yet: one pass answers both rule sets for the common lines.
            var both = FastLineScan.FineTuneAndBatch(line.Span, out var batchKnown, out var idOk, out var bodyOk);
            if (both != LineKind.Invalid)
            {
                _fineTune!.Count(both, _lineNumber);
                fineTunePending = false;
            }

            if (batchKnown || FastLineScan.Batch(line.Span, out idOk, out bodyOk))
            {
                BatchLineRules.Report(idOk, bodyOk, _lineNumber, _batch!);
                batchPending = false;
            }
        }
        else if (fineTunePending)
        {
            if (FastLineScan.FineTune(line.Span) is var kind and not LineKind.Invalid)
            {
                _fineTune!.Count(kind, _lineNumber);
                fineTunePending = false;
            }
        }
        else if (batchPending && FastLineScan.Batch(line.Span, out var idOk, out var bodyOk))
        {
            BatchLineRules.Report(idOk, bodyOk, _lineNumber, _batch!);
            batchPending = false;
        }

        if (!fineTunePending && !batchPending)
        {
            return;
        }

        JsonDocument document;
        try
        {
            // Parsed in place: the document only lives until the end of this method.
            document = JsonDocument.Parse(line, ParseOptions);
        }
        catch (JsonException e)
        {
            AddCommon(new Problem($"the line is not valid JSON: {TrimJsonMessage(e.Message)}", _lineNumber));
            return;
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                AddCommon(new Problem($"the line must be a JSON object, not {FineTuneLineRules.Describe(root.ValueKind)}", _lineNumber));
                return;
            }

            if (fineTunePending)
            {
                _fineTune!.Count(FineTuneLineRules.Validate(root, _lineNumber, _fineTune), _lineNumber);
            }

            if (batchPending)
            {
                BatchLineRules.Validate(root, _lineNumber, _batch!);
            }
        }
    }

    private void AddCommon(Problem problem)
    {
        _fineTune?.Add(problem);
        _batch?.Add(problem);
    }

    private static string TrimJsonMessage(string message)
    {
        // System.Text.Json appends "LineNumber: 0 | BytePositionInLine: 12."; keep the byte position, which helps.
        var cut = message.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (cut < 0)
        {
            return message;
        }

        var position = message.IndexOf("BytePositionInLine:", StringComparison.Ordinal);
        var head = message[..cut].TrimEnd();
        return position < 0 ? head : $"{head} (at byte {message[(position + 19)..].Trim().TrimEnd('.')})";
    }
}

/// <summary>The problems found under one set of rules.</summary>
internal sealed class ProblemSink(string? fileName)
{
    public List<Problem> Kept { get; } = [];

    public int Total { get; private set; }

    public int InstructLines { get; private set; }

    public int PretrainLines { get; private set; }

    public long? FirstKindLine { get; private set; }

    /// <summary>Counts a problem, allocating it only when it is among those kept.</summary>
    public void Add(string message, long line, string field)
    {
        if (Kept.Count < JsonlValidator.MaxProblemsKept)
        {
            Add(new Problem(message, line, field));
        }
        else
        {
            Total++;
        }
    }

    public void Add(Problem problem)
    {
        Total++;
        if (Kept.Count < JsonlValidator.MaxProblemsKept)
        {
            Kept.Add(fileName is null || problem.File is not null ? problem : problem with { File = fileName });
        }
    }

    public void Count(LineKind kind, long line)
    {
        if (kind == LineKind.Instruct)
        {
            InstructLines++;
        }
        else if (kind == LineKind.Pretrain)
        {
            PretrainLines++;
        }
        else
        {
            return;
        }

        FirstKindLine ??= line;
    }
}

internal enum LineKind
{
    Invalid,
    Instruct,
    Pretrain,
    Batch,
}
