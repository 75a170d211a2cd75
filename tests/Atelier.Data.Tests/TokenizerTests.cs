using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Atelier.Data.Tests.Support;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests;

public class TokenizerTests
{
    internal const string MultilingualText =
        "Hello, world! It's 2026 and we're tokenising 12345678 things.\n" +
        "Le cœur a ses raisons que la raison ne connaît point. Ça va ?\n" +
        "Größenwahn über Straßen — „Anführungszeichen“.\n" +
        "Привет, как дела? Съешь же ещё этих мягких французских булок.\n" +
        "你好，世界！今天天气很好。机器学习很有趣。\n" +
        "日本語のテキストとカタカナ、ひらがな。\n" +
        "مرحبا بالعالم، هذا نص عربي.\n" +
        "नमस्ते दुनिया, यह हिंदी है।\n" +
        "안녕하세요 세계\n" +
        "Emoji: 🌍🚀👩‍💻 and symbols ©®™ ∑∫√.\n" +
        "    def f(x):\n        return x ** 2  # code\n\n\n" +
        "Special text <|endoftext|> stays text. [INST] too.\n" +
        "Tabs\tand   multiple    spaces   \n";

    [Fact]
    [Trait("Category", "Slow")]
    public void O200k_TokenIds_EqualTheTiktokenNpmPackage()
    {
        int[] expected = TiktokenReference.Encode("o200k_base", MultilingualText);
        var actual = new List<int>();

        TestData.O200k.Encode(MultilingualText, actual);

        Assert.Equal(expected, actual);
        Assert.Equal(MultilingualText, TestData.O200k.Decode(actual));
    }

    [Fact]
    [Trait("Category", "Slow")]
    public void Cl100k_TokenIds_EqualTheTiktokenNpmPackage()
    {
        int[] expected = TiktokenReference.Encode("cl100k_base", MultilingualText);
        var actual = new List<int>();

        TiktokenTextTokenizer.CreateCl100kBase().Encode(MultilingualText, actual);

        Assert.Equal(expected, actual);
    }

    [Fact]
    public void O200k_Identity_NamesTheEncodingAndVocabularyHash()
    {
        Assert.StartsWith("tiktoken/o200k_base/sha256:", TestData.O200k.Identity, StringComparison.Ordinal);
        Assert.Equal(200019, TestData.O200k.Control.Bos);
    }

    [Fact]
    public void Tekken_TinyVocabulary_EncodesWithRanksOffsetBySpecialTokens()
    {
        TiktokenTextTokenizer tekken = TiktokenTextTokenizer.LoadTekken(new MemoryStream(TinyTekken.Build()));
        var ids = new List<int>();

        tekken.Encode("hello hex", ids);

        // "hello" is merge rank 259; " " is byte 32; "he" is rank 256; "x" is byte 120; all + 10 specials.
        Assert.Equal([269, 42, 266, 130], ids);
        Assert.Equal("hello hex", tekken.Decode(ids));
        Assert.Equal((1, 2, 3, 4), (tekken.Control.Bos, tekken.Control.Eos, tekken.Control.Inst!.Value, tekken.Control.EndInst!.Value));
        Assert.Equal(9, tekken.Control.ToolCalls);
        Assert.StartsWith("tekken/sha256:", tekken.Identity, StringComparison.Ordinal);
    }
}

/// <summary>A tekken.json with 256 byte tokens, four merges and ten special tokens.</summary>
internal static class TinyTekken
{
    public static byte[] Build()
    {
        var vocab = new List<object>();
        for (int b = 0; b < 256; b++)
        {
            vocab.Add(new { rank = b, token_bytes = Convert.ToBase64String([(byte)b]), token_str = (string?)null });
        }

        string[] merges = ["he", "ll", "hell", "hello"];
        for (int i = 0; i < merges.Length; i++)
        {
            vocab.Add(new { rank = 256 + i, token_bytes = Convert.ToBase64String(Encoding.UTF8.GetBytes(merges[i])), token_str = (string?)merges[i] });
        }

        string[] specials = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]"];
        var document = new
        {
            config = new { pattern = @"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|\s+", num_vocab_tokens = vocab.Count, default_vocab_size = vocab.Count + specials.Length, default_num_special_tokens = specials.Length, version = "v7" },
            vocab,
            special_tokens = specials.Select((s, i) => new { rank = i, token_str = s, is_control = true }),
        };
        return JsonSerializer.SerializeToUtf8Bytes(document);
    }
}

/// <summary>Runs the tiktoken npm package (installed on first use) as the reference tokeniser.</summary>
internal static class TiktokenReference
{
    private static readonly object InstallLock = new();

    public static int[] Encode(string encoding, string text) =>
        JsonSerializer.Deserialize<int[]>(Run([encoding], text))!;

    /// <summary>The ids of every text, from one node process; <paramref name="pattern"/> replaces the encoding's pre-tokenisation pattern.</summary>
    public static int[][] EncodeBatch(string encoding, IReadOnlyList<string> texts, string? pattern = null)
    {
        List<string> arguments = [encoding, "--batch"];
        if (pattern is not null)
        {
            arguments.Add("--pattern");
            arguments.Add(pattern);
        }

        return JsonSerializer.Deserialize<int[][]>(Run(arguments, JsonSerializer.Serialize(texts)))!;
    }

    private static string Run(IEnumerable<string> arguments, string input)
    {
        string js = FindJsDirectory();
        EnsureInstalled(js);
        var start = new ProcessStartInfo("node", ["encode.mjs", .. arguments])
        {
            WorkingDirectory = js,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardInputEncoding = new UTF8Encoding(false),
            StandardOutputEncoding = Encoding.UTF8,
        };
        using Process process = Process.Start(start)!;
        Task<string> error = process.StandardError.ReadToEndAsync();
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        process.StandardInput.Write(input);
        process.StandardInput.Close();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, "node encode.mjs failed: " + error.Result);
        return output.Result;
    }

    private static void EnsureInstalled(string js)
    {
        lock (InstallLock)
        {
            if (Directory.Exists(Path.Combine(js, "node_modules", "tiktoken")))
            {
                return;
            }

            string command = File.Exists(Path.Combine(js, "package-lock.json")) ? "ci" : "install";
            var start = new ProcessStartInfo("npm", [command, "--no-audit", "--no-fund"]) { WorkingDirectory = js, RedirectStandardOutput = true, RedirectStandardError = true };
            using Process process = Process.Start(start)!;
            string error = process.StandardError.ReadToEnd();
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"npm {command} failed in {js}: {error}");
        }
    }

    private static string FindJsDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "tests", "Atelier.Data.Tests", "js");
            if (File.Exists(Path.Combine(candidate, "package.json")))
            {
                return candidate;
            }
        }

        throw new DirectoryNotFoundException("tests/Atelier.Data.Tests/js not found above " + AppContext.BaseDirectory);
    }
}
