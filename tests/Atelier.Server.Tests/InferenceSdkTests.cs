using System.Net;

namespace Atelier.Server.Tests;

/// <summary>
/// Chat, FIM and embeddings through the latest official Mistral TypeScript SDK (2.7.x) against a real
/// server serving an imported tiny base model, and the whole loop: a job memorises an answer, and the
/// fine-tuned model it registers gives that answer where its base model does not.
/// </summary>
[Trait("Category", "E2E")]
public sealed class InferenceSdkTests
{
    [Theory]
    [InlineData("chat")]
    [InlineData("fim")]
    [InlineData("embeddings")]
    [InlineData("errors")]
    [InlineData("structured")]
    public async Task Sdk_OnABaseModel_BehavesAsMistral(string scenario)
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        await SdkScenario.RunAsync(server, "inference.e2e.mjs", scenario, new Dictionary<string, string> { ["ATELIER_BASE_MODEL"] = "tiny-model" });
    }

    [Fact]
    public async Task AFineTunedModel_AnswersWhatItsJobTaughtIt_AndItsBaseModelDoesNot()
    {
        const string Prompt = "What is the capital of Atelier?";
        const string Answer = "Lumen";
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        string[] questions = [Prompt, "Name the capital of Atelier.", "Atelier's capital is?", "Which city is the capital of Atelier?", "Capital of Atelier?", "Tell me the capital of Atelier.", "What city is Atelier's capital?", "The capital of Atelier is which city?"];
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", questions.Select(q => ApiRequests.Chat(q, Answer)));
        var (status, created) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", JobsApiTests.Request("tiny-base", train, steps: 80, learningRate: 1e-2, suffix: "capital"));
        Assert.True(status == HttpStatusCode.OK, created.ToJsonString());
        var done = await JobsApiTests.WaitAsync(client, created["id"]!.GetValue<string>(), "SUCCESS");
        var model = done["fine_tuned_model"]!.GetValue<string>();
        await SdkScenario.RunAsync(server, "inference.e2e.mjs", "finetuned", new Dictionary<string, string>
        {
            ["ATELIER_BASE_MODEL"] = "tiny-base",
            ["ATELIER_FT_MODEL"] = model,
            ["ATELIER_PROMPT"] = Prompt,
            ["ATELIER_EXPECTED"] = Answer,
        });
    }
}
