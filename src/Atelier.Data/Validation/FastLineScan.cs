using System.Text.Json;

namespace Atelier.Data.Validation;

/// <summary>
/// A single forward pass over a line with <see cref="Utf8JsonReader"/>, no document built, that
/// recognises the common, certainly valid shapes: plain chat lines (system/user/assistant messages
/// with string content and an optional weight), pretrain <c>text</c> lines and batch requests.
/// Anything it is not sure of (tool calls, tools, content chunks, a rule broken, bad JSON) makes it
/// answer "unsure", and the line goes to the full rules, which also word the problems. So the fast
/// path never decides that a line is bad; it only saves the document for lines that are fine.
/// Measured on chat lines: several times the throughput of <see cref="JsonDocument"/> plus rules.
/// </summary>
internal static class FastLineScan
{
    private static readonly JsonReaderOptions Options = new() { MaxDepth = 64 };

    /// <summary>The kind of a certainly valid fine-tune line, or <see cref="LineKind.Invalid"/> when unsure.</summary>
    public static LineKind FineTune(ReadOnlySpan<byte> line)
    {
        try
        {
            var reader = new Utf8JsonReader(line, isFinalBlock: true, state: new JsonReaderState(Options));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return LineKind.Invalid;
            }

            var kind = LineKind.Invalid;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("messages"u8))
                {
                    if (kind != LineKind.Invalid || !reader.Read() || !Messages(ref reader))
                    {
                        return LineKind.Invalid;
                    }

                    kind = LineKind.Instruct;
                }
                else if (reader.ValueTextEquals("text"u8))
                {
                    if (kind != LineKind.Invalid || !reader.Read() || reader.TokenType != JsonTokenType.String || reader.ValueSpan.IsEmpty)
                    {
                        return LineKind.Invalid;
                    }

                    kind = LineKind.Pretrain;
                }
                else if (reader.ValueTextEquals("interactions"u8) || reader.ValueTextEquals("tools"u8))
                {
                    return LineKind.Invalid;
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            // The object must close the line: nothing may follow it.
            return reader.TokenType == JsonTokenType.EndObject && !reader.Read() ? kind : LineKind.Invalid;
        }
        catch (JsonException)
        {
            return LineKind.Invalid;
        }
    }

    /// <summary>
    /// Both scans in one pass, for an upload whose purpose is not yet known: the fine-tune scan,
    /// which also notes the two properties the batch rules judge as it passes them. When the scan
    /// reaches the end of a well-formed object, <paramref name="batchKnown"/> is true and
    /// <paramref name="idOk"/> and <paramref name="bodyOk"/> are what <see cref="Batch"/> would
    /// answer; when the fine-tune scan stops early (unsure), the caller scans for batch on its own.
    /// </summary>
    public static LineKind FineTuneAndBatch(ReadOnlySpan<byte> line, out bool batchKnown, out bool idOk, out bool bodyOk)
    {
        batchKnown = idOk = bodyOk = false;
        try
        {
            var reader = new Utf8JsonReader(line, isFinalBlock: true, state: new JsonReaderState(Options));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return LineKind.Invalid;
            }

            var kind = LineKind.Invalid;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("messages"u8))
                {
                    if (kind != LineKind.Invalid || !reader.Read() || !Messages(ref reader))
                    {
                        return LineKind.Invalid;
                    }

                    kind = LineKind.Instruct;
                }
                else if (reader.ValueTextEquals("text"u8))
                {
                    if (kind != LineKind.Invalid || !reader.Read() || reader.TokenType != JsonTokenType.String || reader.ValueSpan.IsEmpty)
                    {
                        return LineKind.Invalid;
                    }

                    kind = LineKind.Pretrain;
                }
                else if (reader.ValueTextEquals("interactions"u8) || reader.ValueTextEquals("tools"u8))
                {
                    return LineKind.Invalid;
                }
                else if (reader.ValueTextEquals("custom_id"u8))
                {
                    // As Batch judges it; a repeated property is judged by its last value there too.
                    reader.Read();
                    idOk = reader.TokenType == JsonTokenType.String && !reader.ValueSpan.IsEmpty;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("body"u8))
                {
                    reader.Read();
                    bodyOk = reader.TokenType == JsonTokenType.StartObject;
                    reader.Skip();
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            if (reader.TokenType == JsonTokenType.EndObject && !reader.Read())
            {
                batchKnown = true;
                return kind;
            }

            return LineKind.Invalid;
        }
        catch (JsonException)
        {
            return LineKind.Invalid;
        }
    }

    /// <summary>
    /// Scans a batch request line. Returns false when the line is not a well-formed JSON object
    /// (the full rules word that); otherwise true, with whether its <c>custom_id</c> and
    /// <c>body</c> are right, which is all the batch rules judge.
    /// </summary>
    public static bool Batch(ReadOnlySpan<byte> line, out bool idOk, out bool bodyOk)
    {
        idOk = bodyOk = false;
        try
        {
            var reader = new Utf8JsonReader(line, isFinalBlock: true, state: new JsonReaderState(Options));
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("custom_id"u8))
                {
                    reader.Read();
                    idOk = reader.TokenType == JsonTokenType.String && !reader.ValueSpan.IsEmpty;
                    reader.Skip();
                }
                else if (reader.ValueTextEquals("body"u8))
                {
                    reader.Read();
                    bodyOk = reader.TokenType == JsonTokenType.StartObject;
                    reader.Skip();
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            return reader.TokenType == JsonTokenType.EndObject && !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static bool Messages(ref Utf8JsonReader reader)
    {
        if (reader.TokenType != JsonTokenType.StartArray)
        {
            return false;
        }

        var count = 0;
        var lastRole = Role.None;
        while (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
        {
            var role = Role.None;
            var hasContent = false;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                if (reader.ValueTextEquals("role"u8))
                {
                    if (role != Role.None || !reader.Read() || reader.TokenType != JsonTokenType.String)
                    {
                        return false;
                    }

                    role = reader.ValueTextEquals("user"u8) ? Role.User
                        : reader.ValueTextEquals("assistant"u8) ? Role.Assistant
                        : reader.ValueTextEquals("system"u8) ? Role.System
                        : Role.None;
                    if (role == Role.None)
                    {
                        return false;
                    }
                }
                else if (reader.ValueTextEquals("content"u8))
                {
                    if (hasContent || !reader.Read() || reader.TokenType != JsonTokenType.String)
                    {
                        return false;
                    }

                    hasContent = true;
                    if (reader.ValueSpan.IsEmpty)
                    {
                        // An empty assistant content is a problem; leave the wording to the full rules.
                        return false;
                    }
                }
                else if (reader.ValueTextEquals("weight"u8))
                {
                    if (!reader.Read() || reader.TokenType != JsonTokenType.Number || !reader.TryGetDouble(out var w) || (w != 0 && w != 1))
                    {
                        return false;
                    }
                }
                else if (reader.ValueTextEquals("tool_calls"u8) || reader.ValueTextEquals("tool_call_id"u8))
                {
                    return false;
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }

            if (role == Role.None || !hasContent || (count == 0 && role == Role.Assistant))
            {
                return false;
            }

            lastRole = role;
            count++;
        }

        return reader.TokenType == JsonTokenType.EndArray && count > 0 && lastRole == Role.Assistant;
    }

    private enum Role
    {
        None,
        System,
        User,
        Assistant,
    }
}
