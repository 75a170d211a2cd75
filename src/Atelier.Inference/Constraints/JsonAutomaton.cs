namespace Atelier.Inference.Constraints;

/// <summary>
/// One pushdown stack of the byte automaton: an immutable linked list of frames, so the states a
/// step's trie walk explores share their common tails instead of copying them.
/// </summary>
internal sealed class Stack(Frame top, Stack? below)
{
    public Frame Top { get; } = top;

    public Stack? Below { get; } = below;

    /// <summary>Containers open above the root (bounds the nesting of unconstrained values).</summary>
    public int Depth { get; } = below is null ? 0 : below.Depth + 1;

    public Stack Replace(Frame frame) => new(frame, Below);

    public Stack Push(Frame frame) => new(frame, this);

    /// <summary>Whether the bytes so far are a complete value: the end of the generation may come now.</summary>
    public bool IsAccepting => Top is DoneFrame || (Top.CanEnd && Below!.IsAccepting);
}

/// <summary>
/// A frame of a stack: what the automaton expects next at one level. <see cref="Step"/> adds the
/// stacks that follow one byte to the list given (none when the byte is not allowed; several
/// when a union cannot yet tell its alternatives apart).
/// </summary>
internal abstract class Frame
{
    /// <summary>The nesting of unconstrained values stops here: deeper, only scalars.</summary>
    public const int MaxAnyDepth = 32;

    /// <summary>Whether the frame's value is complete without another byte (numbers, literals): it may end and hand the next byte to its parent.</summary>
    public virtual bool CanEnd => false;

    public abstract void Step(byte b, Stack self, List<Stack> next);

    /// <summary>Pops a complete value and lets the frame below take the byte that ended it (a number's delimiter).</summary>
    protected static void EndAndForward(byte b, Stack self, List<Stack> next)
    {
        Stack below = self.Below!;
        below.Top.Step(b, below, next);
    }

    /// <summary>Starts a value of <paramref name="node"/> with its first byte, on top of <paramref name="below"/>.</summary>
    public static void StartValue(GrammarNode node, byte b, Stack below, List<Stack> next)
    {
        switch (node.Kind)
        {
            case GrammarKind.Ref:
                StartValue(node.Resolve(), b, below, next);
                break;
            case GrammarKind.Union:
                foreach (GrammarNode alternative in node.Alternatives)
                {
                    StartValue(alternative, b, below, next);
                }

                break;
            case GrammarKind.Object when b == '{':
                next.Add(below.Push(new ObjectFrame(node, ObjectPhase.AfterOpen, null, null)));
                break;
            case GrammarKind.Array when b == '[':
                next.Add(below.Push(new ArrayFrame(node, ArrayPhase.AfterOpen, 0)));
                break;
            case GrammarKind.String when b == '"':
                next.Add(below.Push(new StringFrame(node.MinLength, node.MaxLength, StringPhase.Content, Utf8State.Start, 0, 0)));
                break;
            case GrammarKind.Number or GrammarKind.Integer:
                if (NumberFrame.Start(node.Kind == GrammarKind.Integer, b) is { } number)
                {
                    next.Add(below.Push(number));
                }

                break;
            case GrammarKind.Literals:
                LiteralFrame.Start(node.Literals, b, below, next);
                break;
            case GrammarKind.Any:
                StartAny(b, below, next);
                break;
        }
    }

    private static readonly GrammarNode AnyObject = new(GrammarKind.Object, "$") { Additional = GrammarNode.AnyValue, Satisfiable = true };
    private static readonly GrammarNode AnyArray = new(GrammarKind.Array, "$") { Items = GrammarNode.AnyValue, Satisfiable = true };
    private static readonly byte[][] Keywords = ["true"u8.ToArray(), "false"u8.ToArray(), "null"u8.ToArray()];

    private static void StartAny(byte b, Stack below, List<Stack> next)
    {
        switch (b)
        {
            case (byte)'{' when below.Depth < MaxAnyDepth:
                next.Add(below.Push(new ObjectFrame(AnyObject, ObjectPhase.AfterOpen, null, null)));
                break;
            case (byte)'[' when below.Depth < MaxAnyDepth:
                next.Add(below.Push(new ArrayFrame(AnyArray, ArrayPhase.AfterOpen, 0)));
                break;
            case (byte)'"':
                next.Add(below.Push(new StringFrame(0, int.MaxValue, StringPhase.Content, Utf8State.Start, 0, 0)));
                break;
            case (byte)'t' or (byte)'f' or (byte)'n':
                LiteralFrame.Start(Keywords, b, below, next);
                break;
            default:
                if (NumberFrame.Start(false, b) is { } number)
                {
                    next.Add(below.Push(number));
                }

                break;
        }
    }
}

/// <summary>The bottom of a stack: the value is complete, only the end of the generation may follow.</summary>
internal sealed class DoneFrame : Frame
{
    public static readonly DoneFrame Instance = new();

    public override void Step(byte b, Stack self, List<Stack> next)
    {
    }
}

/// <summary>A value of a node is expected next (the root, before its first byte).</summary>
internal sealed class ValueFrame(GrammarNode node) : Frame
{
    public override void Step(byte b, Stack self, List<Stack> next) => StartValue(node, b, self.Below!, next);
}

internal enum ObjectPhase : byte
{
    AfterOpen,
    AfterKey,
    AfterColon,
    AfterColonSpace,
    AfterValue,
    AfterComma,
    AfterCommaSpace,
}

/// <summary>Inside an object: which named properties it has, and where in a member it stands.</summary>
internal sealed class ObjectFrame(GrammarNode node, ObjectPhase phase, ulong[]? seen, GrammarNode? value, byte[][]? extraKeys = null) : Frame
{
    public GrammarNode Node => node;

    public ulong[]? Seen => seen;

    /// <summary>Whether an additional key with these bytes was already written (JSON keys must be unique).</summary>
    public bool HasExtraKey(ReadOnlySpan<byte> key)
    {
        foreach (byte[] existing in extraKeys ?? [])
        {
            if (key.SequenceEqual(existing))
            {
                return true;
            }
        }

        return false;
    }

    public override void Step(byte b, Stack self, List<Stack> next)
    {
        switch (phase)
        {
            case ObjectPhase.AfterOpen:
                if (b == '"' && CanAddKey())
                {
                    next.Add(self.Push(KeyFrame.Create(node, seen)));
                }
                else if (b == '}' && RequiredSeen())
                {
                    next.Add(self.Below!);
                }

                break;
            case ObjectPhase.AfterKey:
                if (b == ':')
                {
                    next.Add(self.Replace(new ObjectFrame(node, ObjectPhase.AfterColon, seen, value, extraKeys)));
                }

                break;
            case ObjectPhase.AfterColon or ObjectPhase.AfterColonSpace:
                if (b == ' ' && phase == ObjectPhase.AfterColon)
                {
                    next.Add(self.Replace(new ObjectFrame(node, ObjectPhase.AfterColonSpace, seen, value, extraKeys)));
                }
                else
                {
                    StartValue(value!, b, self.Replace(new ObjectFrame(node, ObjectPhase.AfterValue, seen, null, extraKeys)), next);
                }

                break;
            case ObjectPhase.AfterValue:
                if (b == ',' && CanAddKey())
                {
                    next.Add(self.Replace(new ObjectFrame(node, ObjectPhase.AfterComma, seen, null, extraKeys)));
                }
                else if (b == '}' && RequiredSeen())
                {
                    next.Add(self.Below!);
                }

                break;
            default:
                if (b == ' ' && phase == ObjectPhase.AfterComma)
                {
                    next.Add(self.Replace(new ObjectFrame(node, ObjectPhase.AfterCommaSpace, seen, null, extraKeys)));
                }
                else if (b == '"')
                {
                    next.Add(self.Push(KeyFrame.Create(node, seen)));
                }

                break;
        }
    }

    /// <summary>The frame once a key is read: the named property <paramref name="property"/> (or -1 for the additional one <paramref name="extraKey"/>) and its value schema.</summary>
    public ObjectFrame AfterKey(int property, GrammarNode valueNode, byte[]? extraKey = null)
    {
        if (extraKey is not null)
        {
            return new ObjectFrame(node, ObjectPhase.AfterKey, seen, valueNode, [.. extraKeys ?? [], extraKey]);
        }

        ulong[]? marked = seen;
        if (property >= 0)
        {
            marked = seen is null ? new ulong[(node.PropertyNames.Length + 63) >> 6] : (ulong[])seen.Clone();
            marked[property >> 6] |= 1UL << (property & 63);
        }

        return new ObjectFrame(node, ObjectPhase.AfterKey, marked, valueNode, extraKeys);
    }

    public static bool IsSeen(ulong[]? seen, int property) => seen is not null && (seen[property >> 6] & (1UL << (property & 63))) != 0;

    private bool CanAddKey()
    {
        if (node.Additional is not null)
        {
            return true;
        }

        for (int i = 0; i < node.PropertyNames.Length; i++)
        {
            if (!IsSeen(seen, i) && node.PropertyNodes[i].Satisfiable)
            {
                return true;
            }
        }

        return false;
    }

    private bool RequiredSeen()
    {
        for (int i = 0; i < node.Required.Length; i++)
        {
            if (node.Required[i] && !IsSeen(seen, i))
            {
                return false;
            }
        }

        return true;
    }
}

/// <summary>
/// An object key being read: the named properties it may still become (by prefix) and, when the object
/// takes additional properties, free text (without escapes, so a key cannot spell a named one twice).
/// </summary>
internal sealed class KeyFrame : Frame
{
    private readonly GrammarNode _object;
    private readonly ulong[]? _seen;
    private readonly int[] _candidates;
    private readonly int _position;
    private readonly Utf8State _utf8;

    // Whether the key read so far may still be an additional property: it has no escape.
    private readonly bool _free;

    // The bytes of a free key so far, to keep additional keys unique.
    private readonly byte[] _text;

    private KeyFrame(GrammarNode objectNode, ulong[]? seen, int[] candidates, int position, Utf8State utf8, bool free, byte[] text)
    {
        _text = text;
        _object = objectNode;
        _seen = seen;
        _candidates = candidates;
        _position = position;
        _utf8 = utf8;
        _free = free;
    }

    /// <summary>Whether any text may follow (an additional key) and no character is half written: the state a string-safe token keeps.</summary>
    public bool IsFreeText => _free && _utf8 == Utf8State.Start;

    public static KeyFrame Create(GrammarNode objectNode, ulong[]? seen)
    {
        var candidates = new List<int>(objectNode.PropertyNames.Length);
        for (int i = 0; i < objectNode.PropertyNames.Length; i++)
        {
            // With additional properties a seen name stays a candidate: reading it fully must fail.
            if (objectNode.PropertyNodes[i].Satisfiable && (objectNode.Additional is not null || !ObjectFrame.IsSeen(seen, i)))
            {
                candidates.Add(i);
            }
        }

        return new KeyFrame(objectNode, seen, [.. candidates], 0, Utf8State.Start, objectNode.Additional is not null, []);
    }

    public override void Step(byte b, Stack self, List<Stack> next)
    {
        if (b == '"' && _utf8 == Utf8State.Start)
        {
            // The quote may also continue a name that holds an escaped quote (after its backslash).
            Close(self, next);
        }

        // Candidates that go on with this byte (named keys may hold escapes, written as the schema has them).
        int count = 0;
        foreach (int c in _candidates)
        {
            byte[] name = _object.PropertyNames[c];
            if (_position < name.Length && name[_position] == b)
            {
                count++;
            }
        }

        bool free = _free && b != '"' && b != '\\' && b >= 0x20;
        Utf8State utf8 = free ? Utf8Dfa.Step(_utf8, b) : _utf8;
        if (count == 0 && (!free || utf8 == Utf8State.Invalid))
        {
            return;
        }

        int[] kept;
        if (count == _candidates.Length)
        {
            kept = _candidates;
        }
        else
        {
            kept = new int[count];
            int k = 0;
            foreach (int c in _candidates)
            {
                byte[] name = _object.PropertyNames[c];
                if (_position < name.Length && name[_position] == b)
                {
                    kept[k++] = c;
                }
            }
        }

        // A named key's escape may leave the UTF-8 state of free text behind; only free text tracks it.
        next.Add(self.Replace(new KeyFrame(_object, _seen, kept, _position + 1, free ? utf8 : Utf8State.Start, free, free ? [.. _text, b] : [])));
    }

    private void Close(Stack self, List<Stack> next)
    {
        Stack objectStack = self.Below!;
        var objectFrame = (ObjectFrame)objectStack.Top;
        foreach (int c in _candidates)
        {
            if (_object.PropertyNames[c].Length == _position)
            {
                if (!ObjectFrame.IsSeen(_seen, c))
                {
                    next.Add(objectStack.Replace(objectFrame.AfterKey(c, _object.PropertyNodes[c])));
                }

                // A named key read in full is that property, never an additional one.
                return;
            }
        }

        if (_free && !objectFrame.HasExtraKey(_text))
        {
            next.Add(objectStack.Replace(objectFrame.AfterKey(-1, _object.Additional!, _text)));
        }
    }
}

internal enum ArrayPhase : byte
{
    AfterOpen,
    AfterValue,
    AfterComma,
    AfterCommaSpace,
}

/// <summary>Inside an array: how many items it has.</summary>
internal sealed class ArrayFrame(GrammarNode node, ArrayPhase phase, int count) : Frame
{
    public override void Step(byte b, Stack self, List<Stack> next)
    {
        switch (phase)
        {
            case ArrayPhase.AfterOpen:
                if (b == ']' && node.MinItems == 0)
                {
                    next.Add(self.Below!);
                }
                else if (node.MaxItems > 0)
                {
                    StartValue(node.Items!, b, self.Replace(new ArrayFrame(node, ArrayPhase.AfterValue, 1)), next);
                }

                break;
            case ArrayPhase.AfterValue:
                if (b == ',' && count < node.MaxItems)
                {
                    next.Add(self.Replace(new ArrayFrame(node, ArrayPhase.AfterComma, count)));
                }
                else if (b == ']' && count >= node.MinItems)
                {
                    next.Add(self.Below!);
                }

                break;
            default:
                if (b == ' ' && phase == ArrayPhase.AfterComma)
                {
                    next.Add(self.Replace(new ArrayFrame(node, ArrayPhase.AfterCommaSpace, count)));
                }
                else
                {
                    StartValue(node.Items!, b, self.Replace(new ArrayFrame(node, ArrayPhase.AfterValue, count + 1)), next);
                }

                break;
        }
    }
}

internal enum StringPhase : byte
{
    Content,
    Escape,
    Unicode,
}

/// <summary>Inside a string: escapes, UTF-8 across token boundaries, and the length in characters.</summary>
internal sealed class StringFrame(int minLength, int maxLength, StringPhase phase, Utf8State utf8, int length, int hexDigits) : Frame
{
    /// <summary>
    /// How many more characters a string-safe token may add here (plain content, no half-written
    /// character), or -1 when such a token does not simply extend the content.
    /// </summary>
    public int FreeCharacters => phase == StringPhase.Content && utf8 == Utf8State.Start ? (maxLength == int.MaxValue ? int.MaxValue : maxLength - length) : -1;

    public override void Step(byte b, Stack self, List<Stack> next)
    {
        switch (phase)
        {
            case StringPhase.Content when utf8 != Utf8State.Start:
                Utf8State continued = Utf8Dfa.Step(utf8, b);
                if (continued != Utf8State.Invalid)
                {
                    next.Add(self.Replace(new StringFrame(minLength, maxLength, phase, continued, length, 0)));
                }

                break;
            case StringPhase.Content:
                if (b == '"')
                {
                    if (length >= minLength)
                    {
                        next.Add(self.Below!);
                    }
                }
                else if (length < maxLength && b >= 0x20)
                {
                    // A character starts here (a lead byte or ASCII, or an escape): it counts once.
                    if (b == '\\')
                    {
                        next.Add(self.Replace(new StringFrame(minLength, maxLength, StringPhase.Escape, Utf8State.Start, length + 1, 0)));
                    }
                    else if (Utf8Dfa.Step(Utf8State.Start, b) is var started and not Utf8State.Invalid)
                    {
                        next.Add(self.Replace(new StringFrame(minLength, maxLength, phase, started, length + 1, 0)));
                    }
                }

                break;
            case StringPhase.Escape:
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                {
                    next.Add(self.Replace(new StringFrame(minLength, maxLength, StringPhase.Content, Utf8State.Start, length, 0)));
                }
                else if (b == 'u')
                {
                    next.Add(self.Replace(new StringFrame(minLength, maxLength, StringPhase.Unicode, Utf8State.Start, length, 0)));
                }

                break;
            default:
                // \uXXXX outside the surrogates: a lone surrogate is not a character, and a pair would
                // count as two. hexDigits holds the count, plus 8 once the first digit is 'd'.
                int digits = hexDigits & 7;
                bool afterD = (hexDigits & 8) != 0;
                if (!IsHex(b) || (digits == 1 && afterD && !(b is >= (byte)'0' and <= (byte)'7')))
                {
                    break;
                }

                int state = digits + 1 | (digits == 0 && (b | 0x20) == 'd' ? 8 : hexDigits & 8);
                next.Add(self.Replace(digits == 3
                    ? new StringFrame(minLength, maxLength, StringPhase.Content, Utf8State.Start, length, 0)
                    : new StringFrame(minLength, maxLength, StringPhase.Unicode, Utf8State.Start, length, state)));
                break;
        }
    }

    private static bool IsHex(byte b) => b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';
}

internal enum NumberPhase : byte
{
    Minus,
    Zero,
    Integer,
    Dot,
    Fraction,
    Exponent,
    ExponentSign,
    ExponentDigits,
}

/// <summary>Inside a number (RFC 8259's grammar), with a bound on its digits so a number always ends.</summary>
internal sealed class NumberFrame(bool integerOnly, NumberPhase phase, int digits) : Frame
{
    private const int MaxIntegerDigits = 15;
    private const int MaxFractionDigits = 15;
    // Two digits keep every number within a double's range (1e99 < 1.8e308).
    private const int MaxExponentDigits = 2;

    public override bool CanEnd => phase is NumberPhase.Zero or NumberPhase.Integer or NumberPhase.Fraction or NumberPhase.ExponentDigits;

    public static NumberFrame? Start(bool integerOnly, byte b) => b switch
    {
        (byte)'-' => new NumberFrame(integerOnly, NumberPhase.Minus, 0),
        (byte)'0' => new NumberFrame(integerOnly, NumberPhase.Zero, 1),
        >= (byte)'1' and <= (byte)'9' => new NumberFrame(integerOnly, NumberPhase.Integer, 1),
        _ => null,
    };

    public override void Step(byte b, Stack self, List<Stack> next)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        NumberFrame? continued = phase switch
        {
            NumberPhase.Minus when b == '0' => new(integerOnly, NumberPhase.Zero, 1),
            NumberPhase.Minus when digit => new(integerOnly, NumberPhase.Integer, 1),
            NumberPhase.Integer when digit && digits < MaxIntegerDigits => new(integerOnly, NumberPhase.Integer, digits + 1),
            NumberPhase.Zero or NumberPhase.Integer when b == '.' && !integerOnly => new(integerOnly, NumberPhase.Dot, 0),
            NumberPhase.Zero or NumberPhase.Integer or NumberPhase.Fraction when (b | 0x20) == 'e' && !integerOnly => new(integerOnly, NumberPhase.Exponent, 0),
            NumberPhase.Dot when digit => new(integerOnly, NumberPhase.Fraction, 1),
            NumberPhase.Fraction when digit && digits < MaxFractionDigits => new(integerOnly, NumberPhase.Fraction, digits + 1),
            NumberPhase.Exponent when b is (byte)'+' or (byte)'-' => new(integerOnly, NumberPhase.ExponentSign, 0),
            NumberPhase.Exponent or NumberPhase.ExponentSign when digit => new(integerOnly, NumberPhase.ExponentDigits, 1),
            NumberPhase.ExponentDigits when digit && digits < MaxExponentDigits => new(integerOnly, NumberPhase.ExponentDigits, digits + 1),
            _ => null,
        };
        if (continued is not null)
        {
            next.Add(self.Replace(continued));
        }
        else if (CanEnd)
        {
            EndAndForward(b, self, next);
        }
    }
}

/// <summary>One of a fixed set of byte strings, matched by prefix (enum and const values, keywords, tool names).</summary>
internal sealed class LiteralFrame(byte[][] candidates, int position) : Frame
{
    public override bool CanEnd
    {
        get
        {
            foreach (byte[] candidate in candidates)
            {
                if (candidate.Length == position)
                {
                    return true;
                }
            }

            return false;
        }
    }

    public static void Start(byte[][] literals, byte b, Stack below, List<Stack> next)
    {
        var frame = new LiteralFrame(literals, 0);
        frame.Step(b, below.Push(frame), next);
    }

    public override void Step(byte b, Stack self, List<Stack> next)
    {
        int count = 0;
        foreach (byte[] candidate in candidates)
        {
            if (position < candidate.Length && candidate[position] == b)
            {
                count++;
            }
        }

        if (count > 0)
        {
            byte[][] kept = new byte[count][];
            int k = 0;
            foreach (byte[] candidate in candidates)
            {
                if (position < candidate.Length && candidate[position] == b)
                {
                    kept[k++] = candidate;
                }
            }

            next.Add(self.Replace(new LiteralFrame(kept, position + 1)));
        }

        // A complete literal (a number, or true) ends at the byte that does not continue it.
        if (CanEnd)
        {
            EndAndForward(b, self, next);
        }
    }
}
