using System.CommandLine;
using System.Globalization;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Training;

namespace Atelier.Cli;

/// <summary>
/// Offline commands that run the data pipeline and the LoRA trainer on local files, without a
/// server: a dataset tokenised with a model's own tekken tokeniser, then LoRA on its shards.
/// </summary>
internal static class LocalTrainingCommands
{
    /// <summary><c>atelier datasets build-local</c>.</summary>
    public static Command BuildLocal()
    {
        var train = new Option<FileInfo[]>("--train") { Description = "A fine-tune JSONL file to train on (repeat for several).", Required = true, AllowMultipleArgumentsPerToken = true };
        var validation = new Option<FileInfo[]>("--validation") { Description = "An eval file: overlapping training examples are dropped.", AllowMultipleArgumentsPerToken = true };
        var model = new Option<DirectoryInfo?>("--model") { Description = "Tokenise with this model directory's tekken.json or tokenizer.model (else --tokenizer)." };
        var tokenizer = new Option<string>("--tokenizer") { Description = "o200k_base or cl100k_base, when no --model is given.", DefaultValueFactory = _ => "o200k_base" };
        var seqLen = new Option<int>("--seq-len") { Description = "Window length of the packed shards.", DefaultValueFactory = _ => 4096 };
        var output = new Option<DirectoryInfo>("--out") { Description = "The dataset version directory to create (must not exist).", Required = true };
        var command = new Command("build-local", "Build a dataset version from local files into a directory, without a server.");
        foreach (var option in new Option[] { train, validation, model, tokenizer, seqLen, output })
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancel) =>
        {
            var target = parse.GetValue(output)!;
            if (target.Exists)
            {
                throw new CliException($"{target.FullName} exists; a dataset version is immutable, choose a new --out.");
            }

            ITextTokenizer textTokenizer;
            if (parse.GetValue(model) is { } modelDir)
            {
                textTokenizer = ModelTokenizerLoader.Load(modelDir);
            }
            else
            {
                textTokenizer = parse.GetValue(tokenizer) switch
                {
                    "o200k_base" => TiktokenTextTokenizer.CreateO200kBase(),
                    "cl100k_base" => TiktokenTextTokenizer.CreateCl100kBase(),
                    var other => throw new CliException($"Unknown tokenizer '{other}'; expected o200k_base or cl100k_base."),
                };
            }

            var request = new DatasetBuildRequest
            {
                Training = [.. parse.GetValue(train)!.Select(Input)],
                Eval = [.. (parse.GetValue(validation) ?? []).Select(Input)],
                Tokenizer = textTokenizer,
                Options = new DatasetBuildOptions { SequenceLength = parse.GetValue(seqLen) },
            };
            var result = await DatasetBuilder.BuildAsync(request, target.FullName, cancellationToken: cancel).ConfigureAwait(false);
            var c = result.Manifest.Counters;
            Console.WriteLine($"Built {target.FullName}: {c.ExamplesKept} of {c.ExamplesRead} examples kept ({c.ExactDuplicates} exact and {c.NearDuplicates} near duplicates, {c.Contaminated} contaminated, {c.Issues} invalid), {c.Tokens} tokens ({c.TrainedTokens} trained) in {c.Windows} windows, {result.Manifest.Shards.Count} shard(s), tokeniser {textTokenizer.Name}.");
            return 0;
        });
        return command;
    }

    /// <summary><c>atelier models finetune</c>.</summary>
    public static Command Finetune()
    {
        var modelDir = new Argument<DirectoryInfo>("model") { Description = "The base model directory (Mistral consolidated format)." };
        var dataset = new Option<DirectoryInfo>("--dataset") { Description = "A dataset version directory (from datasets build-local, or downloaded).", Required = true };
        var steps = new Option<int>("--steps") { Description = "Optimiser steps.", DefaultValueFactory = _ => 20 };
        var batch = new Option<int>("--batch") { Description = "Windows per step (gradient accumulation).", DefaultValueFactory = _ => 1 };
        var learningRate = new Option<float>("--learning-rate") { Description = "Peak learning rate (warmup 10%, then cosine).", DefaultValueFactory = _ => 1e-3f };
        var weightDecay = new Option<float>("--weight-decay") { Description = "AdamW weight decay.", DefaultValueFactory = _ => 0.1f };
        var rank = new Option<int>("--rank") { Description = "LoRA rank.", DefaultValueFactory = _ => 8 };
        var alpha = new Option<float>("--alpha") { Description = "LoRA alpha (scaling = alpha / rank).", DefaultValueFactory = _ => 16f };
        var seed = new Option<ulong>("--seed") { Description = "Seeds the adapter's initialisation and dropout.", DefaultValueFactory = _ => 0 };
        var output = new Option<FileInfo>("--out") { Description = "Where to write the adapter (safetensors, mistral-finetune names; never overwritten).", Required = true };
        var command = new Command("finetune", "Train a LoRA adapter on a dataset version's shards, deterministically for a given seed.");
        command.Arguments.Add(modelDir);
        foreach (var option in new Option[] { dataset, steps, batch, learningRate, weightDecay, rank, alpha, seed, output })
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancel) =>
        {
            var target = parse.GetValue(output)!;
            if (target.Exists)
            {
                throw new CliException($"{target.FullName} exists; choose another --out.");
            }

            var shardDir = new DirectoryInfo(Path.Combine(parse.GetValue(dataset)!.FullName, "shards"));
            var shards = shardDir.Exists ? shardDir.GetFiles("*.arrow").OrderBy(f => f.Name, StringComparer.Ordinal).ToArray() : [];
            if (shards.Length == 0)
            {
                throw new CliException($"{shardDir.FullName} holds no .arrow shards; is {parse.GetValue(dataset)!.FullName} a dataset version?");
            }

            var windows = new List<ShardWindow>();
            foreach (var shard in shards)
            {
                await using var stream = shard.OpenRead();
                await foreach (var window in ArrowShardReader.ReadAsync(stream, shard.Name, cancel).ConfigureAwait(false))
                {
                    windows.Add(window);
                }
            }

            var config = new LoraConfig(parse.GetValue(rank), parse.GetValue(alpha));
            using var model = MistralModel.Load(parse.GetValue(modelDir)!.FullName);
            var vocab = model.Args.VocabSize;
            var tooLarge = windows.SelectMany(w => w.InputIds).FirstOrDefault(id => id >= vocab, -1);
            if (tooLarge >= 0)
            {
                throw new CliException($"The dataset holds token id {tooLarge}, beyond the model's vocabulary of {vocab}: build it with this model's tokeniser (datasets build-local --model).");
            }

            model.Adapter = LoraAdapter.Create(model.Args, config, parse.GetValue(seed));
            var totalSteps = parse.GetValue(steps);
            var options = new LoraTrainingOptions(
                new WarmupCosineSchedule(parse.GetValue(learningRate), Math.Max(1, totalSteps / 10), totalSteps),
                new AdamWOptions(WeightDecay: parse.GetValue(weightDecay)),
                MaxGradNorm: 1f,
                Seed: parse.GetValue(seed));
            using var trainer = new LoraTrainer(model, options);
            var perStep = parse.GetValue(batch);
            var next = 0;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            long tokens = 0;
            for (var step = 0; step < totalSteps; step++)
            {
                var micro = new List<TrainingBatch>(perStep);
                for (var i = 0; i < perStep; i++)
                {
                    // Windows in shard order, wrapping around for further epochs.
                    var w = windows[next++ % windows.Count];
                    micro.Add(Atelier.Training.Jobs.FineTuningRunner.ToBatch(w));
                    tokens += w.InputIds.Length;
                }

                var result = trainer.Step(micro, cancel);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"step {result.Step + 1}/{totalSteps}  loss {result.Loss:F4}  grad-norm {result.GradNorm:F3}  lr {result.LearningRate:E2}"));
            }

            model.SaveAdapter(target.FullName);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Wrote adapter {target.FullName} ({model.Adapter.ParameterCount} parameters, rank {config.Rank}); {tokens / Math.Max(clock.Elapsed.TotalSeconds, 1e-9):F0} training tokens/s."));
            return 0;
        });
        return command;
    }

    private static DatasetInput Input(FileInfo file) =>
        file.Exists ? new DatasetInput(file.Name, file.OpenRead) : throw new CliException($"No such file: {file.FullName}");
}
