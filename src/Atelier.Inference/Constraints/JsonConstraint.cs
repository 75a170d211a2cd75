using System.Diagnostics.CodeAnalysis;

namespace Atelier.Inference.Constraints;

/// <summary>
/// Constrained decoding to JSON: masks every token that would make the output leave
/// <see cref="JsonGrammar"/>, and once the value is complete allows only the stop tokens, so a
/// generation that ends with a stop token always parses and validates. One instance per request.
/// </summary>
public sealed class JsonConstraint : ILogitsProcessor
{
    private readonly TokenVocabulary _vocabulary;
    private readonly ByteMatcher _matcher;
    private readonly TokenMask _mask;
    private int _consumed;
    private bool _stopped;

    /// <summary>Creates the constraint of one request.</summary>
    /// <param name="vocabulary">The model's vocabulary (shared between requests).</param>
    /// <param name="grammar">What the output must be: <see cref="JsonGrammar.AnyObject"/> for <c>json_object</c>, <see cref="JsonGrammar.FromSchema(System.Text.Json.JsonElement, bool, string)"/> for <c>json_schema</c>.</param>
    public JsonConstraint(TokenVocabulary vocabulary, JsonGrammar grammar)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(grammar);
        _vocabulary = vocabulary;
        _matcher = new ByteMatcher(grammar.Root);
        _mask = new TokenMask(vocabulary.Size);
    }

    /// <summary>Whether the tokens accepted so far form a complete value.</summary>
    public bool IsComplete => _matcher.IsComplete;

    /// <inheritdoc />
    public void Process(ReadOnlySpan<int> generated, Span<float> logits)
    {
        for (; _consumed < generated.Length; _consumed++)
        {
            Accept(generated[_consumed]);
        }

        _mask.Clear();
        AddAllowed(_mask);
        _mask.Apply(logits);
    }

    /// <summary>Feeds one generated token.</summary>
    /// <exception cref="InvalidOperationException">The token is not one the constraint allowed.</exception>
    internal void Accept(int token)
    {
        if (_stopped || (_vocabulary.IsStop(token) && !_matcher.IsComplete))
        {
            ThrowNotAllowed(token);
        }

        if (_vocabulary.IsStop(token))
        {
            _stopped = true;
            return;
        }

        if (_vocabulary.BytesOf(token) is not { } bytes || !_matcher.TryAdvance(bytes))
        {
            ThrowNotAllowed(token);
        }
    }

    /// <summary>Adds the tokens allowed next.</summary>
    internal void AddAllowed(TokenMask mask)
    {
        if (_stopped)
        {
            return;
        }

        if (_matcher.IsComplete)
        {
            mask.AddAll(_vocabulary.StopTokens);
        }

        if (!_matcher.IsClosed)
        {
            _matcher.AddAllowed(_vocabulary, mask);
        }
    }

    [DoesNotReturn]
    internal static void ThrowNotAllowed(int token) =>
        throw new InvalidOperationException($"Token {token} was generated although the grammar did not allow it: the logits processor's mask was not applied.");
}
