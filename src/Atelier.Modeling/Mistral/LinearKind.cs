namespace Atelier.Modeling.Mistral;

/// <summary>The seven linear projections of a Mistral block, the places LoRA can attach.</summary>
public enum LinearKind
{
    /// <summary>Query projection <c>attention.wq</c>.</summary>
    Wq,
    /// <summary>Key projection <c>attention.wk</c>.</summary>
    Wk,
    /// <summary>Value projection <c>attention.wv</c>.</summary>
    Wv,
    /// <summary>Output projection <c>attention.wo</c>.</summary>
    Wo,
    /// <summary>Gate projection <c>feed_forward.w1</c>.</summary>
    W1,
    /// <summary>Down projection <c>feed_forward.w2</c>.</summary>
    W2,
    /// <summary>Up projection <c>feed_forward.w3</c>.</summary>
    W3,
}

/// <summary>Names and shapes of the linear projections.</summary>
public static class LinearKinds
{
    /// <summary>All seven, in checkpoint order.</summary>
    public static IReadOnlyList<LinearKind> All { get; } = [LinearKind.Wq, LinearKind.Wk, LinearKind.Wv, LinearKind.Wo, LinearKind.W1, LinearKind.W2, LinearKind.W3];

    /// <summary>The module path inside a layer, e.g. <c>attention.wq</c>.</summary>
    public static string ModulePath(LinearKind kind) => kind switch
    {
        LinearKind.Wq => "attention.wq",
        LinearKind.Wk => "attention.wk",
        LinearKind.Wv => "attention.wv",
        LinearKind.Wo => "attention.wo",
        LinearKind.W1 => "feed_forward.w1",
        LinearKind.W2 => "feed_forward.w2",
        _ => "feed_forward.w3",
    };

    /// <summary>(out, in) features of a projection.</summary>
    public static (int Out, int In) Dims(MistralArgs a, LinearKind kind) => kind switch
    {
        LinearKind.Wq => (a.QueryWidth, a.Dim),
        LinearKind.Wk or LinearKind.Wv => (a.KvWidth, a.Dim),
        LinearKind.Wo => (a.Dim, a.QueryWidth),
        LinearKind.W1 or LinearKind.W3 => (a.HiddenDim, a.Dim),
        _ => (a.Dim, a.HiddenDim),
    };
}
