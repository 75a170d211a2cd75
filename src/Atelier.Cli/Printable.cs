using System.Globalization;
using System.Text;

namespace Atelier.Cli;

/// <summary>Text from a model or a server made safe to write to a terminal.</summary>
internal static class Printable
{
    /// <summary>
    /// Escapes every control character except line feed and tab (C0, DEL and C1, ESC among them,
    /// which would start a terminal escape sequence) as <c>\xNN</c> or <c>\u00NN</c>, and backslashes
    /// as <c>\\</c> so that an escape and the text it stands for cannot be confused.
    /// </summary>
    public static string Escape(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var clean = true;
        foreach (var c in text)
        {
            if (NeedsEscape(c))
            {
                clean = false;
                break;
            }
        }

        if (clean)
        {
            return text;
        }

        var builder = new StringBuilder(text.Length + 16);
        foreach (var c in text)
        {
            if (c == '\\')
            {
                builder.Append(@"\\");
            }
            else if (NeedsEscape(c))
            {
                builder.Append(c <= 0xFF ? @"\x" + ((int)c).ToString("x2", CultureInfo.InvariantCulture) : @"\u" + ((int)c).ToString("x4", CultureInfo.InvariantCulture));
            }
            else
            {
                builder.Append(c);
            }
        }

        return builder.ToString();
    }

    private static bool NeedsEscape(char c) =>
        c is '\\' || (char.IsControl(c) && c is not ('\n' or '\t')) || c is '\u2028' or '\u2029' or '\u202E' or '\u2066' or '\u2067' or '\u2068' or '\u2069';
}
