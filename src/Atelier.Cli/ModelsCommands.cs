using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;

namespace Atelier.Cli;

/// <summary><c>atelier models init-tiny|generate</c>: local model directories in Mistral's consolidated format.</summary>
internal static class ModelsCommands
{
    public static Command Build()
    {
        var command = new Command("models", "Model directories in Mistral's consolidated format (params.json, consolidated.safetensors, tekken.json).");

        var dir = new Argument<DirectoryInfo>("dir") { Description = "The model directory." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights.", DefaultValueFactory = _ => 0 };
        var init = new Command("init-tiny", "Write a small, valid model directory (random weights, a byte-level tekken tokeniser) for tests and demos.");
        init.Arguments.Add(dir);
        init.Options.Add(seed);
        init.SetAction(parse =>
        {
            var target = parse.GetValue(dir)!;
            if (target.Exists && target.EnumerateFileSystemInfos().Any())
            {
                throw new CliException($"{target.FullName} is not empty; choose a new directory.");
            }

            var args = TinyModelWriter.Write(target.FullName, seed: parse.GetValue(seed));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Wrote a tiny Mistral model to {target.FullName}: dim {args.Dim}, {args.NLayers} layers, {args.NHeads} heads ({args.NKvHeads} kv), vocab {args.VocabSize}."));
            return 0;
        });
        command.Subcommands.Add(init);

        var prompt = new Option<string>("--prompt") { Description = "The text to continue.", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "0 for greedy decoding.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling threshold.", DefaultValueFactory = _ => 1f };
        var generate = new Command("generate", "Load a model directory and continue a prompt (greedy, or sampled with a seed).");
        generate.Arguments.Add(dir);
        generate.Options.Add(prompt);
        generate.Options.Add(maxTokens);
        generate.Options.Add(temperature);
        generate.Options.Add(topP);
        generate.Options.Add(seed);
        generate.SetAction(parse =>
        {
            var model = parse.GetValue(dir)!;
            if (!File.Exists(Path.Combine(model.FullName, "params.json")))
            {
                throw new CliException($"{model.FullName} is not a model directory: it needs params.json, consolidated.safetensors and tekken.json or tokenizer.model.");
            }

            var tokenizer = ModelTokenizers.Load(model);
            using var loaded = MistralModel.Load(model.FullName);
            var ids = new List<int> { tokenizer.Control.Bos };
            tokenizer.Encode(parse.GetValue(prompt)!, ids);
            var clock = Stopwatch.StartNew();
            var output = Generator.Generate(
                loaded,
                ids.ToArray(),
                parse.GetValue(maxTokens),
                new SamplingOptions(parse.GetValue(temperature), parse.GetValue(topP), parse.GetValue(seed)),
                [tokenizer.Control.Eos]);
            var seconds = clock.Elapsed.TotalSeconds;
            Console.WriteLine(tokenizer.Decode(output));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{output.Length} tokens in {seconds:F2} s ({output.Length / Math.Max(seconds, 1e-9):F1} tokens/s)"));
            return 0;
        });
        command.Subcommands.Add(generate);
        command.Subcommands.Add(LocalTrainingCommands.Finetune());
        return command;
    }
}
