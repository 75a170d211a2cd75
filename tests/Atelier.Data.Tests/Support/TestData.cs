using System.Text;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Tests.Support;

internal static class TestData
{
    private static readonly Lazy<TiktokenTextTokenizer> LazyO200k = new(TiktokenTextTokenizer.CreateO200kBase);

    public static TiktokenTextTokenizer O200k => LazyO200k.Value;

    /// <summary>A temporary directory removed at dispose.</summary>
    public sealed class TempDirectory : IDisposable
    {
        public TempDirectory()
        {
            Path = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-data-tests");
        }

        public string Path { get; }

        public void Dispose()
        {
            try
            {
                Directory.Delete(Path, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>Random words from a fixed-seed generator, each distinct with overwhelming probability.</summary>
    public static string[] RandomWords(Random random, int count)
    {
        var words = new string[count];
        for (int i = 0; i < count; i++)
        {
            var builder = new StringBuilder();
            int length = random.Next(4, 9);
            for (int j = 0; j < length; j++)
            {
                builder.Append((char)('a' + random.Next(26)));
            }

            words[i] = builder.ToString();
        }

        return words;
    }

    public static string Chat(string user, string assistant) =>
        "{\"messages\":[{\"role\":\"user\",\"content\":" + Json(user) + "},{\"role\":\"assistant\",\"content\":" + Json(assistant) + "}]}";

    public static string Json(string value) => System.Text.Json.JsonSerializer.Serialize(value);
}
