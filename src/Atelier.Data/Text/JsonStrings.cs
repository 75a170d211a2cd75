using System.Globalization;
using System.Text;

namespace Atelier.Data;

/// <summary>JSON strings written as mistral-common's Python and the constrained decoder expect them.</summary>
public static class JsonStrings
{
    /// <summary>
    /// Appends <paramref name="value"/> as a JSON string with only the escapes JSON requires (quote,
    /// backslash, control characters), as Python's <c>json.dumps(ensure_ascii=False)</c> writes it:
    /// DEL and non-ASCII text stay as they are.
    /// </summary>
    public static void Write(StringBuilder builder, string value)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(value);
        builder.Append('"');
        foreach (char c in value)
        {
            switch (c)
            {
                case '"': builder.Append("\\\""); break;
                case '\\': builder.Append("\\\\"); break;
                case '\n': builder.Append("\\n"); break;
                case '\r': builder.Append("\\r"); break;
                case '\t': builder.Append("\\t"); break;
                case '\b': builder.Append("\\b"); break;
                case '\f': builder.Append("\\f"); break;
                case < ' ': builder.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); break;
                default: builder.Append(c); break;
            }
        }

        builder.Append('"');
    }
}
