using System.Diagnostics;
using System.Text;
using System.Text.Json;

namespace Atelier.Data.Tests.Support;

/// <summary>
/// Google's sentencepiece (Debian's python3-sentencepiece, under /usr/bin/python3, which
/// eng/test.sh installs) as the reference SentencePiece tokeniser: trains models and encodes texts
/// through py/sentencepiece_reference.py. A missing module fails the test that needs it.
/// </summary>
internal static class SentencePieceReference
{
    private const string Python = "/usr/bin/python3";

    /// <summary>
    /// Trains a BPE model configured as Mistral's v1 tokenizer.model on <paramref name="sentences"/> (one
    /// a line), with <paramref name="options"/> (a JSON object of trainer options) overriding that
    /// configuration; returns the .model path.
    /// </summary>
    public static string Train(string directory, IEnumerable<string> sentences, int vocabularySize, string options = "{}")
    {
        string corpus = Path.Combine(directory, "corpus.txt");
        File.WriteAllLines(corpus, sentences, new UTF8Encoding(false));
        string prefix = Path.Combine(directory, "reference");
        Run(["train", corpus, prefix, vocabularySize.ToString(System.Globalization.CultureInfo.InvariantCulture), options], input: null);
        return prefix + ".model";
    }

    /// <summary>The ids sentencepiece gives each text (no BOS or EOS).</summary>
    public static int[][] Encode(string model, IReadOnlyList<string> texts) =>
        JsonSerializer.Deserialize<int[][]>(Run(["encode", model], JsonSerializer.Serialize(texts)))!;

    private static string Run(IEnumerable<string> arguments, string? input)
    {
        string script = FindScript();
        Assert.True(
            File.Exists(Python) && RunProcess(["-c", "import sentencepiece"], null, out _, out _) == 0,
            $"The reference tokeniser is missing: {Python} cannot import sentencepiece. Install it with 'apt-get install -y python3-sentencepiece' (eng/test.sh does).");
        int exitCode = RunProcess([script, .. arguments], input, out string output, out string error);
        Assert.True(exitCode == 0, $"sentencepiece_reference.py {string.Join(' ', arguments)} failed ({exitCode}): {error}");
        return output;
    }

    private static int RunProcess(IEnumerable<string> arguments, string? input, out string output, out string error)
    {
        var start = new ProcessStartInfo(Python, arguments)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
        };
        using Process process = Process.Start(start)!;
        Task<string> errorTask = process.StandardError.ReadToEndAsync();
        Task<string> outputTask = process.StandardOutput.ReadToEndAsync();
        if (input is not null)
        {
            process.StandardInput.Write(input);
        }

        process.StandardInput.Close();
        process.WaitForExit();
        output = outputTask.Result;
        error = errorTask.Result;
        return process.ExitCode;
    }

    private static string FindScript()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Atelier.Data.Tests", "py", "sentencepiece_reference.py");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException("tests/Atelier.Data.Tests/py/sentencepiece_reference.py not found above " + AppContext.BaseDirectory);
    }
}
