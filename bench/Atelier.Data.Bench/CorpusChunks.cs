using System.Text;

namespace Atelier.Data.Bench;

/// <summary>Reads a blank-line-separated corpus as arrays of documents, about 64 MB at a time.</summary>
internal static class CorpusChunks
{
    public static IEnumerable<string[]> Read(string path, int chunkBytes = 64 << 20)
    {
        using var stream = File.OpenRead(path);
        byte[] buffer = new byte[chunkBytes + (1 << 20)];
        int carried = 0;
        while (true)
        {
            int read = stream.ReadAtLeast(buffer.AsSpan(carried, chunkBytes), chunkBytes, throwOnEndOfStream: false);
            int length = carried + read;
            if (length == 0)
            {
                yield break;
            }

            bool last = read < chunkBytes;
            int cut = last ? length : buffer.AsSpan(0, length).LastIndexOf("\n\n"u8);
            if (cut < 0)
            {
                cut = length;
            }

            string text = Encoding.UTF8.GetString(buffer, 0, cut);
            yield return text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
            carried = length - cut;
            Buffer.BlockCopy(buffer, cut, buffer, 0, carried);
            if (last)
            {
                if (carried > 0)
                {
                    yield return Encoding.UTF8.GetString(buffer, 0, carried).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
                }

                yield break;
            }
        }
    }
}
