namespace Atelier.Inference.Constraints;

/// <summary>What a <see cref="GrammarNode"/> matches.</summary>
internal enum GrammarKind : byte
{
    /// <summary>Any JSON value.</summary>
    Any,

    /// <summary>An object with known properties and maybe additional ones.</summary>
    Object,

    /// <summary>An array of one item schema.</summary>
    Array,

    /// <summary>A string, maybe with a length range.</summary>
    String,

    /// <summary>A number.</summary>
    Number,

    /// <summary>An integer (no fraction, no exponent).</summary>
    Integer,

    /// <summary>One of a fixed set of byte strings (enum, const, true/false/null, tool names).</summary>
    Literals,

    /// <summary>Any of several nodes.</summary>
    Union,

    /// <summary>Another node, resolved after compilation (<c>$ref</c>, which may recurse).</summary>
    Ref,
}

/// <summary>
/// One node of a compiled JSON grammar: the JSON Schema subset lowered to what the byte automaton
/// needs. Built by <see cref="JsonGrammar"/>; immutable once compilation ends.
/// </summary>
internal sealed class GrammarNode
{
    public static readonly GrammarNode AnyValue = new(GrammarKind.Any, "$") { Satisfiable = true };

    public GrammarNode(GrammarKind kind, string path)
    {
        Kind = kind;
        Path = path;
    }

    public GrammarKind Kind { get; }

    /// <summary>The JSON path of the schema this node came from, for error messages.</summary>
    public string Path { get; }

    /// <summary>Whether some finite value matches (computed once compilation ends).</summary>
    public bool Satisfiable { get; set; }

    // Object.
    public byte[][] PropertyNames { get; set; } = [];

    public GrammarNode[] PropertyNodes { get; set; } = [];

    public bool[] Required { get; set; } = [];

    /// <summary>The schema of properties not named, or null when the object is closed.</summary>
    public GrammarNode? Additional { get; set; }

    // Array.
    public GrammarNode? Items { get; set; }

    public int MinItems { get; set; }

    public int MaxItems { get; set; } = int.MaxValue;

    // String.
    public int MinLength { get; set; }

    public int MaxLength { get; set; } = int.MaxValue;

    public bool HasLengthLimits => MinLength > 0 || MaxLength != int.MaxValue;

    // Literals.
    public byte[][] Literals { get; set; } = [];

    // Union.
    public GrammarNode[] Alternatives { get; set; } = [];

    // Ref.
    public GrammarNode? Target { get; set; }

    /// <summary>Follows references to the node that matches.</summary>
    public GrammarNode Resolve()
    {
        GrammarNode node = this;
        while (node.Kind == GrammarKind.Ref)
        {
            node = node.Target!;
        }

        return node;
    }
}
