using System.Text;

namespace Atelier.Inference.Constraints;

/// <summary>How a model writes its tool calls, by Mistral tokeniser version.</summary>
public enum ToolCallSyntax
{
    /// <summary>v2, v3, v7: <c>[TOOL_CALLS]</c> then a JSON list <c>[{"name": ..., "arguments": {...}}, ...]</c>.</summary>
    JsonList,

    /// <summary>v11, v13: <c>[TOOL_CALLS]name[ARGS]{json}</c> per call.</summary>
    NameThenArguments,
}

/// <summary>The control token ids of the tool-call syntax.</summary>
/// <param name="ToolCalls">The id of <c>[TOOL_CALLS]</c>.</param>
/// <param name="Args">The id of <c>[ARGS]</c>; required by <see cref="ToolCallSyntax.NameThenArguments"/>.</param>
public sealed record ToolCallTokens(int ToolCalls, int? Args = null);

/// <summary>A function the model may call, and the grammar of its arguments.</summary>
/// <param name="Name">The function's name.</param>
/// <param name="Arguments">Its <c>parameters</c> schema compiled (<see cref="JsonGrammar.FromSchema(System.Text.Json.JsonElement, bool, string)"/>), or <see cref="JsonGrammar.AnyObject"/> when it has none.</param>
public sealed record ToolCallFunction(string Name, JsonGrammar Arguments);

/// <summary>
/// Constrained decoding of tool calls (<c>tool_choice</c> <c>any</c>, <c>required</c> or a named
/// function): the output is the model's tool-call syntax, naming only the given functions, with
/// arguments valid for each one's schema, then a stop token. Call ids are not generated: the parser
/// gives each call one. One instance per request.
/// </summary>
public sealed class ToolCallConstraint : ILogitsProcessor
{
    private enum Phase
    {
        Text,
        Start,
        Name,
        Arguments,
        List,
        Stopped,
    }

    private readonly TokenVocabulary _vocabulary;
    private readonly ToolCallSyntax _syntax;
    private readonly ToolCallTokens _tokens;
    private readonly IReadOnlyList<ToolCallFunction> _functions;
    private readonly GrammarNode _names;
    private readonly GrammarNode? _list;
    private readonly bool _parallel;
    private readonly TokenMask _mask;
    private Phase _phase;
    private ByteMatcher? _matcher;
    private List<byte>? _name;
    private int _consumed;

    /// <summary>Creates the constraint of one request.</summary>
    /// <param name="vocabulary">The model's vocabulary; <see cref="ToolCallTokens"/>' ids must be control tokens in it (null bytes).</param>
    /// <param name="syntax">The model's tool-call syntax.</param>
    /// <param name="tokens">The control token ids.</param>
    /// <param name="functions">The functions that may be called (one for a named <c>tool_choice</c>).</param>
    /// <param name="parallel">Whether several calls may follow one another (<c>parallel_tool_calls</c>).</param>
    /// <param name="textFirst">
    /// Whether text may come before the first call, unconstrained (<c>tool_choice</c> <c>auto</c>, with the
    /// calls still made valid once <c>[TOOL_CALLS]</c> is generated); false forces a call right away.
    /// </param>
    public ToolCallConstraint(TokenVocabulary vocabulary, ToolCallSyntax syntax, ToolCallTokens tokens, IReadOnlyList<ToolCallFunction> functions, bool parallel = true, bool textFirst = false)
    {
        ArgumentNullException.ThrowIfNull(vocabulary);
        ArgumentNullException.ThrowIfNull(tokens);
        ArgumentNullException.ThrowIfNull(functions);
        if (functions.Count == 0)
        {
            throw new ArgumentException("A forced tool call needs at least one function.", nameof(functions));
        }

        if (syntax == ToolCallSyntax.NameThenArguments && tokens.Args is null)
        {
            throw new ArgumentException("The name-then-arguments syntax needs the [ARGS] token id.", nameof(tokens));
        }

        foreach (int id in (ReadOnlySpan<int>)[tokens.ToolCalls, tokens.Args ?? tokens.ToolCalls])
        {
            if ((uint)id >= (uint)vocabulary.Size || vocabulary.BytesOf(id) is not null || vocabulary.IsStop(id))
            {
                throw new ArgumentException($"Token {id} is not a control token of the vocabulary.", nameof(tokens));
            }
        }

        _vocabulary = vocabulary;
        _syntax = syntax;
        _tokens = tokens;
        _functions = functions;
        _parallel = parallel;
        _mask = new TokenMask(vocabulary.Size);
        _phase = textFirst ? Phase.Text : Phase.Start;
        _names = new GrammarNode(GrammarKind.Literals, "$.name")
        {
            Literals = [.. functions.Select(f => Encoding.UTF8.GetBytes(f.Name))],
            Satisfiable = true,
        };
        if (syntax == ToolCallSyntax.JsonList)
        {
            _list = ListGrammar(functions, parallel);
        }
    }

    /// <summary>Whether the calls generated so far are complete (a stop token may come).</summary>
    public bool IsComplete => _phase switch
    {
        Phase.Arguments or Phase.List => _matcher!.IsComplete,
        Phase.Text => true,
        _ => false,
    };

    /// <inheritdoc />
    public void Process(ReadOnlySpan<int> generated, Span<float> logits)
    {
        for (; _consumed < generated.Length; _consumed++)
        {
            Accept(generated[_consumed]);
        }

        if (_phase == Phase.Text)
        {
            // Free text until the model opens a call.
            return;
        }

        _mask.Clear();
        AddAllowed(_mask);
        _mask.Apply(logits);
    }

    /// <summary>Feeds one generated token.</summary>
    /// <exception cref="InvalidOperationException">The token is not one the constraint allowed.</exception>
    internal void Accept(int token)
    {
        switch (_phase)
        {
            case Phase.Text:
                if (token == _tokens.ToolCalls)
                {
                    Open();
                }
                else if (_vocabulary.IsStop(token))
                {
                    _phase = Phase.Stopped;
                }

                return;
            case Phase.Start when token == _tokens.ToolCalls:
                Open();
                return;
            case Phase.Name when token == _tokens.Args && _matcher!.IsComplete:
                string name = Encoding.UTF8.GetString([.. _name!]);
                _matcher = new ByteMatcher(_functions.First(f => f.Name == name).Arguments.Root);
                _phase = Phase.Arguments;
                return;
            case Phase.Name when _vocabulary.BytesOf(token) is { } bytes && _matcher!.TryAdvance(bytes):
                _name!.AddRange(bytes);
                return;
            case Phase.Arguments or Phase.List when _vocabulary.IsStop(token) && _matcher!.IsComplete:
                _phase = Phase.Stopped;
                return;
            case Phase.Arguments when token == _tokens.ToolCalls && _parallel && _matcher!.IsComplete:
                Open();
                return;
            case Phase.Arguments or Phase.List when _vocabulary.BytesOf(token) is { } bytes && _matcher!.TryAdvance(bytes):
                return;
        }

        JsonConstraint.ThrowNotAllowed(token);
    }

    /// <summary>Adds the tokens allowed next.</summary>
    internal void AddAllowed(TokenMask mask)
    {
        switch (_phase)
        {
            case Phase.Start:
                mask.Add(_tokens.ToolCalls);
                break;
            case Phase.Name:
                if (_matcher!.IsComplete)
                {
                    mask.Add(_tokens.Args!.Value);
                }

                _matcher.AddAllowed(_vocabulary, mask);
                break;
            case Phase.Arguments or Phase.List:
                if (_matcher!.IsComplete)
                {
                    mask.AddAll(_vocabulary.StopTokens);
                    if (_phase == Phase.Arguments && _parallel)
                    {
                        mask.Add(_tokens.ToolCalls);
                    }
                }

                if (!_matcher.IsClosed)
                {
                    _matcher.AddAllowed(_vocabulary, mask);
                }

                break;
        }
    }

    private void Open()
    {
        if (_syntax == ToolCallSyntax.JsonList)
        {
            _matcher = new ByteMatcher(_list!);
            _phase = Phase.List;
        }
        else
        {
            _matcher = new ByteMatcher(_names);
            _name = [];
            _phase = Phase.Name;
        }
    }

    /// <summary><c>[{"name": "f", "arguments": {...}}, ...]</c>: at least one call, each naming a function with its arguments.</summary>
    private static GrammarNode ListGrammar(IReadOnlyList<ToolCallFunction> functions, bool parallel)
    {
        byte[][] keys = ["name"u8.ToArray(), "arguments"u8.ToArray()];
        var calls = new GrammarNode[functions.Count];
        for (int i = 0; i < functions.Count; i++)
        {
            var name = new StringBuilder();
            JsonGrammar.WriteString(name, functions[i].Name);
            calls[i] = new GrammarNode(GrammarKind.Object, $"$[{i}]")
            {
                PropertyNames = keys,
                PropertyNodes =
                [
                    new GrammarNode(GrammarKind.Literals, $"$[{i}].name") { Literals = [Encoding.UTF8.GetBytes(name.ToString())], Satisfiable = true },
                    functions[i].Arguments.Root,
                ],
                Required = [true, true],
                Satisfiable = true,
            };
        }

        return new GrammarNode(GrammarKind.Array, "$")
        {
            Items = new GrammarNode(GrammarKind.Union, "$[]") { Alternatives = calls, Satisfiable = true },
            MinItems = 1,
            MaxItems = parallel ? int.MaxValue : 1,
            Satisfiable = true,
        };
    }
}
