using System.Text;

namespace Atelier.Data.Bench;

/// <summary>
/// Writes a deterministic multi-language plain-text corpus: documents of sentences drawn from word
/// lists of English, French, German, Spanish, Russian, Chinese, Japanese, Arabic, Hindi, plus code,
/// separated by blank lines; about 4% exact and 2% near duplicates are planted.
/// </summary>
internal static class CorpusGenerator
{
    private static readonly string[][] Languages =
    [
        "the of and to in is was that for it with as his on be at by had are but from or have an they which one you were her all she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through back years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three".Split(' '),
        "le la les de des du et en un une est que qui dans pour pas sur au avec ce il elle nous vous ils sont mais comme plus par tout fait été être avoir cette entre leur aussi bien sans peut deux même très donc après depuis encore alors ainsi toujours déjà où chez leurs français société histoire période économie été ville première grâce république communauté développement".Split(' '),
        "der die das und ist nicht ein eine zu den von mit sich des auf für im dem nicht auch es an werden aus er hat dass sie nach wird bei einer um am sind noch wie einem über einen so zum war haben nur oder aber vor zur bis mehr durch man sehr Straße größer Übersetzung Gemeinschaft Wirtschaft Entwicklung Bundesrepublik".Split(' '),
        "el la de que y en un ser se no haber por con su para como estar tener le lo todo pero más hacer o poder decir este ir otro ese si me ya ver porque dar cuando muy sin vez mucho saber qué sobre mi alguno mismo también año niño señor corazón información económico".Split(' '),
        "и в не на я быть он с что а по это она этот к но они мы как из у который то за свой что весь год от так о для ты же все тот мочь вы человек такой его сказать только или ещё бы себя один как уже до время если сам когда другой вот говорить наш мой знать стать при чтобы дело жизнь первый день тут во ничто потом очень".Split(' '),
        "的 一 是 不 了 人 我 在 有 他 这 中 大 来 上 国 个 到 说 们 为 子 和 你 地 出 道 也 时 年 得 就 那 要 下 以 生 会 自 着 去 之 过 家 学 对 可 她 里 后 小 么 心 多 天 而 能 好 都 然 没 日 于 起 还 发 成 事 只 作 当 想 看 文 无 开 手 十 用 主 行 方 又 如 前 所 本 见 经 头 面 公 同 三 已 老 从 动 两 长 知 民 样 现 分 将 外 但 身 些 与 高 意 进 把 法 此 实 回 二 理 美 点 月 明 其 种 声 全 工 己 话".Split(' '),
        "私 は が の を に で と も です ます した する いる ある こと これ それ あの 日本 東京 学校 先生 今日 明日 時間 仕事 会社 電車 新しい 大きい 小さい カタカナ ひらがな コンピューター プログラム データ ありがとう こんにちは".Split(' '),
        "في من على إلى أن عن مع هذا هذه التي الذي كان قد لا ما كل بين بعد عند حتى ثم أو لكن العربية المدينة الحكومة التعليم الثقافة الاقتصاد التاريخ الجامعة".Split(' '),
        "है के में की और का को से एक यह पर हैं कि भी नहीं था लिए तो ही या जो कर गया हो रहा वह साथ अपने भारत सरकार दुनिया हिंदी शिक्षा विकास".Split(' '),
    ];

    private static readonly bool[] NoSpaces = [false, false, false, false, false, true, true, false, false];

    private static readonly string[] CodeSnippets =
    [
        "def compute(x, y):\n    return x * y + 42\n",
        "for (int i = 0; i < n; i++) {\n    total += values[i];\n}\n",
        "const result = await fetch(url, { method: \"POST\" });\n",
        "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days';\n",
        "if err != nil {\n\treturn fmt.Errorf(\"failed: %w\", err)\n}\n",
    ];

    public static long Generate(string path, long targetBytes, int seed)
    {
        var random = new Random(seed);
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20) { NewLine = "\n" };
        var recent = new List<string>();
        var document = new StringBuilder();
        long written = 0;
        long documents = 0;
        while (written < targetBytes)
        {
            string text;
            double roll = random.NextDouble();
            if (roll < 0.04 && recent.Count > 0)
            {
                text = recent[random.Next(recent.Count)];
            }
            else if (roll < 0.06 && recent.Count > 0)
            {
                string[] words = recent[random.Next(recent.Count)].Split(' ');
                words[random.Next(words.Length)] = "modified";
                text = string.Join(' ', words);
            }
            else
            {
                document.Clear();
                int language = random.Next(Languages.Length + 1);
                int sentences = 5 + random.Next(40);
                for (int s = 0; s < sentences; s++)
                {
                    if (language == Languages.Length)
                    {
                        document.Append(CodeSnippets[random.Next(CodeSnippets.Length)]);
                        continue;
                    }

                    string[] vocabulary = Languages[language];
                    int words = 6 + random.Next(18);
                    for (int w = 0; w < words; w++)
                    {
                        if (w > 0 && !NoSpaces[language])
                        {
                            document.Append(' ');
                        }

                        string word = vocabulary[random.Next(vocabulary.Length)];
                        if (w == 0 && char.IsLower(word[0]))
                        {
                            word = char.ToUpperInvariant(word[0]) + word[1..];
                        }

                        document.Append(word);
                        if (random.Next(50) == 0)
                        {
                            document.Append(' ').Append(random.Next(100000));
                        }
                    }

                    document.Append(NoSpaces[language] ? "。" : random.Next(10) == 0 ? "?" : ".");
                    document.Append(random.Next(6) == 0 ? "\n" : NoSpaces[language] ? string.Empty : " ");
                }

                text = document.ToString().Trim().Replace("\n\n", "\n", StringComparison.Ordinal);
                if (recent.Count < 2000)
                {
                    recent.Add(text);
                }
                else
                {
                    recent[random.Next(recent.Count)] = text;
                }
            }

            writer.Write(text);
            writer.Write("\n\n");
            written += Encoding.UTF8.GetByteCount(text) + 2;
            documents++;
        }

        return documents;
    }
}
