using System.Buffers;
using System.Diagnostics;

namespace Atelier.Data.Validation;

/// <summary>
/// A hand-written, single forward pass over one JSONL line that gathers, in one go, every fact
/// both rule sets need from an ordinary line: whether it is one well-formed JSON object, its
/// fine-tune kind as <see cref="FastLineScan.FineTune"/> would answer it, and the two facts the
/// batch rules judge (<c>custom_id</c> and <c>body</c>) as <see cref="FastLineScan.Batch"/> would.
/// So the choice of rule set can wait for the <c>purpose</c> part at no extra cost per line.
/// <para>
/// Why not <see cref="System.Text.Json.Utf8JsonReader"/>: the reader is general (token states,
/// depth bit stacks, value spans for every token) and was the largest user-space cost of an
/// upload. This pass does only what a line needs: string bodies are skipped with one vectorised
/// search for a quote, a backslash or a control byte (<see cref="SearchValues{T}"/>), and
/// structure is checked byte by byte in between.
/// </para>
/// <para>
/// It is sound, not complete: it answers <c>false</c> ("not sure", the line goes to the reader
/// and the full rules, as before) for anything it does not judge exactly as the reader would:
/// escaped property names or roles, a lone surrogate escape, a weight written other than
/// <c>0</c>, <c>1</c>, <c>0.0</c> or <c>1.0</c>, nesting deeper than <see cref="MaxDepth"/>, and
/// every grammar error. It never decides that a line is bad, so every problem is still worded by
/// the full rules. UTF-8 validity is checked before it runs.
/// </para>
/// </summary>
internal static class DirectLineScan
{
    /// <summary>Deeper lines go to the reader (whose limit is 64), so depth is never judged here.</summary>
    internal const int MaxDepth = 32;

    // What ends a run of plain string bytes: the closing quote, an escape, or a control byte,
    // which JSON forbids unescaped inside a string.
    private static readonly SearchValues<byte> StringStops = SearchValues.Create(
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, (byte)'"', (byte)'\\']);

    /// <summary>
    /// Scans <paramref name="line"/>. True when it is one well-formed JSON object that this pass
    /// judged completely; then <paramref name="fineTune"/> is what <see cref="FastLineScan.FineTune"/>
    /// answers (<see cref="LineKind.Invalid"/> meaning "unsure" there too) and <paramref name="idOk"/>
    /// and <paramref name="bodyOk"/> are what <see cref="FastLineScan.Batch"/> answers.
    /// False when unsure about anything: the caller asks the reader.
    /// </summary>
    public static bool TryScan(ReadOnlySpan<byte> line, out LineKind fineTune, out bool idOk, out bool bodyOk)
    {
        fineTune = LineKind.Invalid;
        idOk = bodyOk = false;
        var scan = new Scanner(line);
        scan.SkipWhitespace();
        if (!scan.TryTake((byte)'{'))
        {
            return false;
        }

        // The fine-tune scan stops at its first doubt ("unsure" is final); the batch facts and the
        // well-formedness still need the whole line, so this pass goes on and only remembers it.
        var kind = LineKind.Invalid;
        var fineTuneUnsure = false;
        scan.SkipWhitespace();
        if (!scan.TryTake((byte)'}'))
        {
            while (true)
            {
                if (!scan.TryName(out var name))
                {
                    return false;
                }

                var value = scan.Position;
                if (name.SequenceEqual("messages"u8))
                {
                    if (fineTuneUnsure || kind != LineKind.Invalid || !scan.TryMessages())
                    {
                        fineTuneUnsure = true;
                        scan.Position = value;
                        if (!scan.TrySkipValue(1))
                        {
                            return false;
                        }
                    }
                    else
                    {
                        kind = LineKind.Instruct;
                    }
                }
                else if (name.SequenceEqual("text"u8))
                {
                    if (fineTuneUnsure || kind != LineKind.Invalid || scan.Peek() != (byte)'"')
                    {
                        fineTuneUnsure = true;
                        if (!scan.TrySkipValue(1))
                        {
                            return false;
                        }
                    }
                    else
                    {
                        if (!scan.TrySkipString(out var length, out _))
                        {
                            return false;
                        }

                        if (length == 0)
                        {
                            fineTuneUnsure = true;
                        }
                        else
                        {
                            kind = LineKind.Pretrain;
                        }
                    }
                }
                else if (name.SequenceEqual("custom_id"u8))
                {
                    // As the batch scan judges it: a repeated property is judged by its last value.
                    if (scan.Peek() == (byte)'"')
                    {
                        if (!scan.TrySkipString(out var length, out _))
                        {
                            return false;
                        }

                        idOk = length > 0;
                    }
                    else
                    {
                        idOk = false;
                        if (!scan.TrySkipValue(1))
                        {
                            return false;
                        }
                    }
                }
                else if (name.SequenceEqual("body"u8))
                {
                    bodyOk = scan.Peek() == (byte)'{';
                    if (!scan.TrySkipValue(1))
                    {
                        return false;
                    }
                }
                else
                {
                    if (name.SequenceEqual("interactions"u8) || name.SequenceEqual("tools"u8))
                    {
                        fineTuneUnsure = true;
                    }

                    if (!scan.TrySkipValue(1))
                    {
                        return false;
                    }
                }

                scan.SkipWhitespace();
                if (scan.TryTake((byte)','))
                {
                    scan.SkipWhitespace();
                    continue;
                }

                if (scan.TryTake((byte)'}'))
                {
                    break;
                }

                return false;
            }
        }

        // The object must close the line: only whitespace may follow it.
        scan.SkipWhitespace();
        if (!scan.AtEnd)
        {
            return false;
        }

        fineTune = fineTuneUnsure ? LineKind.Invalid : kind;
        return true;
    }

    private enum Role
    {
        None,
        System,
        User,
        Assistant,
    }

    /// <summary>A position in the line; every <c>Try</c> method answers false when unsure.</summary>
    private ref struct Scanner(ReadOnlySpan<byte> line)
    {
        private readonly ReadOnlySpan<byte> _line = line;

        public int Position;

        public readonly bool AtEnd => Position >= _line.Length;

        public readonly byte Peek() => Position < _line.Length ? _line[Position] : (byte)0;

        public void SkipWhitespace()
        {
            while (Position < _line.Length && _line[Position] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
            {
                Position++;
            }
        }

        public bool TryTake(byte expected)
        {
            if (Position < _line.Length && _line[Position] == expected)
            {
                Position++;
                return true;
            }

            return false;
        }

        /// <summary>A property name and its colon; an escaped name is compared unescaped by the reader, so it is a doubt here.</summary>
        public bool TryName(out ReadOnlySpan<byte> name)
        {
            name = default;
            var start = Position + 1;
            if (Peek() != (byte)'"' || !TrySkipString(out var length, out var escaped) || escaped)
            {
                return false;
            }

            name = _line.Slice(start, length);
            SkipWhitespace();
            if (!TryTake((byte)':'))
            {
                return false;
            }

            SkipWhitespace();
            return true;
        }

        /// <summary>
        /// A string at the position: its raw length (between the quotes, escapes as written) and
        /// whether it has escapes. Escapes are checked as the reader checks them.
        /// </summary>
        public bool TrySkipString(out int length, out bool escaped)
        {
            length = 0;
            escaped = false;
            Debug.Assert(Peek() == (byte)'"');
            var start = ++Position;
            while (true)
            {
                var stop = _line[Position..].IndexOfAny(StringStops);
                if (stop < 0)
                {
                    return false;
                }

                Position += stop;
                var b = _line[Position];
                if (b == (byte)'"')
                {
                    length = Position - start;
                    Position++;
                    return true;
                }

                if (b != (byte)'\\' || !TrySkipEscape())
                {
                    // A control byte inside a string, or a bad escape.
                    return false;
                }

                escaped = true;
            }
        }

        /// <summary>A value of any kind, checked for well-formedness only.</summary>
        public bool TrySkipValue(int depth)
        {
            switch (Peek())
            {
                case (byte)'"':
                    return TrySkipString(out _, out _);
                case (byte)'{':
                    if (depth >= MaxDepth)
                    {
                        return false;
                    }

                    Position++;
                    SkipWhitespace();
                    if (TryTake((byte)'}'))
                    {
                        return true;
                    }

                    while (true)
                    {
                        if (Peek() != (byte)'"' || !TrySkipString(out _, out _))
                        {
                            return false;
                        }

                        SkipWhitespace();
                        if (!TryTake((byte)':'))
                        {
                            return false;
                        }

                        SkipWhitespace();
                        if (!TrySkipValue(depth + 1))
                        {
                            return false;
                        }

                        SkipWhitespace();
                        if (TryTake((byte)','))
                        {
                            SkipWhitespace();
                            continue;
                        }

                        return TryTake((byte)'}');
                    }

                case (byte)'[':
                    if (depth >= MaxDepth)
                    {
                        return false;
                    }

                    Position++;
                    SkipWhitespace();
                    if (TryTake((byte)']'))
                    {
                        return true;
                    }

                    while (true)
                    {
                        if (!TrySkipValue(depth + 1))
                        {
                            return false;
                        }

                        SkipWhitespace();
                        if (TryTake((byte)','))
                        {
                            SkipWhitespace();
                            continue;
                        }

                        return TryTake((byte)']');
                    }

                case (byte)'t':
                    return TryLiteral("true"u8);
                case (byte)'f':
                    return TryLiteral("false"u8);
                case (byte)'n':
                    return TryLiteral("null"u8);
                default:
                    return TrySkipNumber(out _);
            }
        }

        /// <summary>
        /// The <c>messages</c> array of a plain chat line, judged as <see cref="FastLineScan"/> judges
        /// it; false for anything else (the caller then skips the value and is unsure).
        /// </summary>
        public bool TryMessages()
        {
            if (!TryTake((byte)'['))
            {
                return false;
            }

            var count = 0;
            var lastRole = Role.None;
            while (true)
            {
                SkipWhitespace();
                if (!TryTake((byte)'{'))
                {
                    // Also an empty array, or an element that is not an object.
                    return false;
                }

                var role = Role.None;
                var hasContent = false;
                SkipWhitespace();
                if (!TryTake((byte)'}'))
                {
                    while (true)
                    {
                        if (!TryName(out var name))
                        {
                            return false;
                        }

                        if (name.SequenceEqual("role"u8))
                        {
                            var start = Position + 1;
                            if (role != Role.None || Peek() != (byte)'"' || !TrySkipString(out var length, out var escaped) || escaped)
                            {
                                return false;
                            }

                            var value = _line.Slice(start, length);
                            role = value.SequenceEqual("user"u8) ? Role.User
                                : value.SequenceEqual("assistant"u8) ? Role.Assistant
                                : value.SequenceEqual("system"u8) ? Role.System
                                : Role.None;
                            if (role == Role.None)
                            {
                                return false;
                            }
                        }
                        else if (name.SequenceEqual("content"u8))
                        {
                            // An empty content is left to the full rules to word, as the reader scan does.
                            if (hasContent || Peek() != (byte)'"' || !TrySkipString(out var length, out _) || length == 0)
                            {
                                return false;
                            }

                            hasContent = true;
                        }
                        else if (name.SequenceEqual("weight"u8))
                        {
                            // The reader scan takes any number equal to 0 or 1; only the plain spellings are certain here.
                            var start = Position;
                            if (!TrySkipNumber(out var length) || _line.Slice(start, length) is not ([(byte)'0'] or [(byte)'1'] or [(byte)'0', (byte)'.', (byte)'0'] or [(byte)'1', (byte)'.', (byte)'0']))
                            {
                                return false;
                            }
                        }
                        else if (name.SequenceEqual("tool_calls"u8) || name.SequenceEqual("tool_call_id"u8))
                        {
                            return false;
                        }
                        else if (!TrySkipValue(3))
                        {
                            return false;
                        }

                        SkipWhitespace();
                        if (TryTake((byte)','))
                        {
                            SkipWhitespace();
                            continue;
                        }

                        if (TryTake((byte)'}'))
                        {
                            break;
                        }

                        return false;
                    }
                }

                if (role == Role.None || !hasContent || (count == 0 && role == Role.Assistant))
                {
                    return false;
                }

                lastRole = role;
                count++;
                SkipWhitespace();
                if (TryTake((byte)','))
                {
                    continue;
                }

                return TryTake((byte)']') && lastRole == Role.Assistant;
            }
        }

        private bool TryLiteral(ReadOnlySpan<byte> literal)
        {
            if (!_line[Position..].StartsWith(literal))
            {
                return false;
            }

            Position += literal.Length;
            return true;
        }

        // JSON's number grammar, as strict as the reader: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
        // What follows the number is checked by the caller (a delimiter or the end).
        private bool TrySkipNumber(out int length)
        {
            var start = Position;
            length = 0;
            TryTake((byte)'-');
            if (!TryTake((byte)'0'))
            {
                if (Peek() is not (>= (byte)'1' and <= (byte)'9'))
                {
                    return false;
                }

                SkipDigits();
            }

            if (TryTake((byte)'.') && SkipDigits() == 0)
            {
                return false;
            }

            if (Peek() is (byte)'e' or (byte)'E')
            {
                Position++;
                if (Peek() is (byte)'+' or (byte)'-')
                {
                    Position++;
                }

                if (SkipDigits() == 0)
                {
                    return false;
                }
            }

            length = Position - start;
            return true;
        }

        private int SkipDigits()
        {
            var start = Position;
            while (Position < _line.Length && _line[Position] is >= (byte)'0' and <= (byte)'9')
            {
                Position++;
            }

            return Position - start;
        }

        // At a backslash: one of \" \\ \/ \b \f \n \r \t, or \u and four hex digits. A surrogate
        // escape is only taken as a high-low pair; a lone one is a doubt.
        private bool TrySkipEscape()
        {
            if (Position + 1 >= _line.Length)
            {
                return false;
            }

            switch (_line[Position + 1])
            {
                case (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t':
                    Position += 2;
                    return true;
                case (byte)'u':
                    if (!TryHex4(Position + 2, out var unit))
                    {
                        return false;
                    }

                    Position += 6;
                    if (unit is < 0xD800 or > 0xDFFF)
                    {
                        return true;
                    }

                    if (unit > 0xDBFF || Position + 1 >= _line.Length || _line[Position] != (byte)'\\' || _line[Position + 1] != (byte)'u'
                        || !TryHex4(Position + 2, out var low) || low is < 0xDC00 or > 0xDFFF)
                    {
                        return false;
                    }

                    Position += 6;
                    return true;
                default:
                    return false;
            }
        }

        private readonly bool TryHex4(int at, out int value)
        {
            value = 0;
            if (at + 4 > _line.Length)
            {
                return false;
            }

            for (var i = at; i < at + 4; i++)
            {
                var digit = HexDigit(_line[i]);
                if (digit < 0)
                {
                    return false;
                }

                value = (value << 4) | digit;
            }

            return true;
        }

        private static int HexDigit(byte b) => b switch
        {
            >= (byte)'0' and <= (byte)'9' => b - '0',
            >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
            >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
            _ => -1,
        };
    }
}
