namespace Atelier.Inference.Constraints;

/// <summary>Where a UTF-8 validator stands: at a character boundary, inside a character, or failed.</summary>
internal enum Utf8State : byte
{
    /// <summary>At a character boundary.</summary>
    Start,

    /// <summary>One continuation byte (80–BF) to go.</summary>
    Need1,

    /// <summary>Two continuation bytes to go.</summary>
    Need2,

    /// <summary>Three continuation bytes to go.</summary>
    Need3,

    /// <summary>After E0: the next byte is A0–BF (no overlong form).</summary>
    AfterE0,

    /// <summary>After ED: the next byte is 80–9F (no surrogate).</summary>
    AfterED,

    /// <summary>After F0: the next byte is 90–BF (no overlong form).</summary>
    AfterF0,

    /// <summary>After F4: the next byte is 80–8F (nothing past U+10FFFF).</summary>
    AfterF4,

    /// <summary>Not UTF-8.</summary>
    Invalid,
}

/// <summary>
/// A byte-at-a-time UTF-8 validator (RFC 3629's table): tokens of byte-level vocabularies may end
/// inside a character, so a string's content is checked across token boundaries.
/// </summary>
internal static class Utf8Dfa
{
    public static Utf8State Step(Utf8State state, byte b) => state switch
    {
        Utf8State.Start => b switch
        {
            < 0x80 => Utf8State.Start,
            >= 0xC2 and <= 0xDF => Utf8State.Need1,
            0xE0 => Utf8State.AfterE0,
            0xED => Utf8State.AfterED,
            >= 0xE1 and <= 0xEF => Utf8State.Need2,
            0xF0 => Utf8State.AfterF0,
            >= 0xF1 and <= 0xF3 => Utf8State.Need3,
            0xF4 => Utf8State.AfterF4,
            _ => Utf8State.Invalid,
        },
        Utf8State.Need1 => IsContinuation(b) ? Utf8State.Start : Utf8State.Invalid,
        Utf8State.Need2 => IsContinuation(b) ? Utf8State.Need1 : Utf8State.Invalid,
        Utf8State.Need3 => IsContinuation(b) ? Utf8State.Need2 : Utf8State.Invalid,
        Utf8State.AfterE0 => b is >= 0xA0 and <= 0xBF ? Utf8State.Need1 : Utf8State.Invalid,
        Utf8State.AfterED => b is >= 0x80 and <= 0x9F ? Utf8State.Need1 : Utf8State.Invalid,
        Utf8State.AfterF0 => b is >= 0x90 and <= 0xBF ? Utf8State.Need2 : Utf8State.Invalid,
        Utf8State.AfterF4 => b is >= 0x80 and <= 0x8F ? Utf8State.Need2 : Utf8State.Invalid,
        _ => Utf8State.Invalid,
    };

    private static bool IsContinuation(byte b) => b is >= 0x80 and <= 0xBF;
}
