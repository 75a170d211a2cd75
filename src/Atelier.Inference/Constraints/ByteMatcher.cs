namespace Atelier.Inference.Constraints;

/// <summary>
/// The state of a grammar's byte automaton over the text generated so far: the set of pushdown stacks
/// still alive (one, except while a union's alternatives share a prefix). Feeds accepted tokens and
/// computes which tokens may come next by one walk of the vocabulary's trie.
/// </summary>
internal sealed class ByteMatcher
{
    private readonly List<Stack> _scratch = new(4);
    private Stack[] _states;

    public ByteMatcher(GrammarNode root)
    {
        _states = [new Stack(DoneFrame.Instance, null).Push(new ValueFrame(root))];
    }

    /// <summary>Whether the text so far is a complete value (the generation may end here).</summary>
    public bool IsComplete
    {
        get
        {
            foreach (Stack state in _states)
            {
                if (state.IsAccepting)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Whether the text so far is complete and nothing may follow it.</summary>
    public bool IsClosed
    {
        get
        {
            foreach (Stack state in _states)
            {
                if (state.Top is not DoneFrame)
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>Advances over <paramref name="bytes"/>; false (and no change) when the grammar does not allow them.</summary>
    public bool TryAdvance(ReadOnlySpan<byte> bytes)
    {
        Stack[] states = _states;
        foreach (byte b in bytes)
        {
            states = Step(states, b, _scratch);
            if (states.Length == 0)
            {
                return false;
            }
        }

        _states = states;
        return true;
    }

    /// <summary>Adds to <paramref name="mask"/> every text token of <paramref name="vocabulary"/> the grammar allows next.</summary>
    public void AddAllowed(TokenVocabulary vocabulary, TokenMask mask)
    {
        // In a string's plain content, a token whose bytes are all string-safe keeps the state as it is:
        // such subtrees are allowed whole, without stepping the automaton through them.
        int freeCharacters = _states.Length != 1 ? -1 : _states[0].Top switch
        {
            StringFrame s => s.FreeCharacters,
            KeyFrame { IsFreeText: true } => int.MaxValue,
            _ => -1,
        };
        Walk(vocabulary, 0, _states, freeCharacters, mask, new List<Stack>(4));
    }

    private static void Walk(TokenVocabulary vocabulary, int node, Stack[] states, int freeCharacters, TokenMask mask, List<Stack> scratch)
    {
        int start = vocabulary.ChildStart(node);
        int end = start + vocabulary.ChildCount(node);
        for (int child = start; child < end; child++)
        {
            if (freeCharacters >= 0 && vocabulary.IsStringSafe(child) && vocabulary.MaxCharsUnder(child) <= freeCharacters)
            {
                mask.AddAll(vocabulary.TokensUnder(child));
                continue;
            }

            Stack[] next = Step(states, vocabulary.Edge(child), scratch);
            if (next.Length == 0)
            {
                continue;
            }

            // The grammar allows no dead end: every live state can still be completed, so a token that
            // leaves one alive is allowed.
            mask.AddAll(vocabulary.TokensEndingAt(child));
            if (vocabulary.ChildCount(child) > 0)
            {
                Walk(vocabulary, child, next, freeCharacters, mask, scratch);
            }
        }
    }

    private static Stack[] Step(Stack[] states, byte b, List<Stack> scratch)
    {
        scratch.Clear();
        foreach (Stack state in states)
        {
            state.Top.Step(b, state, scratch);
        }

        return scratch.Count == 0 ? [] : [.. scratch];
    }
}
