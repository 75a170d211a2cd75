// End-to-end scenarios of chat, FIM and embeddings, driven by the latest official Mistral TypeScript
// SDK (2.7.x, installed as "mistralai-latest"; 2.4.0 stays for fine-tuning jobs).
// Usage: ATELIER_URL=... ATELIER_API_KEY=... ATELIER_BASE_MODEL=... [ATELIER_FT_MODEL=... ATELIER_EXPECTED=...]
//        node inference.e2e.mjs <scenario>
// Prints what it checked; exits non-zero with the failing assertion.
import assert from "node:assert/strict";
import { Mistral } from "mistralai-latest";
import { MistralError } from "mistralai-latest/models/errors/mistralerror.js";
import { HTTPValidationError } from "mistralai-latest/models/errors/httpvalidationerror.js";
import { env, run } from "./common.mjs";

const { ATELIER_BASE_MODEL: model } = env("ATELIER_BASE_MODEL");
const client = new Mistral({ apiKey: process.env.ATELIER_API_KEY, serverURL: process.env.ATELIER_URL });
const conversation = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say something." },
];

/** Awaits a call that must fail with HTTP `status`; returns the parsed body, which must name each fragment. */
async function expectFailure(promise, status, ...fragments) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof MistralError || e instanceof HTTPValidationError, `expected an SDK error, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.statusCode, status, `status of: ${e.body}`);
    assert.ok(e.body && e.body.length > 0, "never an empty body");
    for (const f of fragments) assert.ok(e.body.includes(f), `error body should mention ${JSON.stringify(f)}: ${e.body}`);
    console.log(`ok: ${status} ${e.body.slice(0, 200)}`);
    return JSON.parse(e.body);
  }
  assert.fail(`expected HTTP ${status}, but the call succeeded`);
}

const scenarios = {
  async chat() {
    const request = { model, messages: conversation, maxTokens: 12, temperature: 0.8, randomSeed: 42 };
    const first = await client.chat.complete(request);
    assert.equal(first.object, "chat.completion");
    assert.equal(first.model, model);
    assert.ok(first.id.length > 0 && Number.isInteger(first.created));
    assert.equal(first.choices.length, 1);
    const [choice] = first.choices;
    assert.equal(choice.index, 0);
    assert.equal(choice.message.role, "assistant");
    assert.equal(typeof choice.message.content, "string");
    assert.equal(choice.finishReason, "length", "a random tiny model runs to max_tokens");
    assert.equal(first.usage.completionTokens, 12);
    assert.ok(first.usage.promptTokens > 5);
    assert.equal(first.usage.totalTokens, first.usage.promptTokens + 12);
    console.log(`ok: chat.complete: ${first.usage.promptTokens} prompt tokens, ${JSON.stringify(choice.message.content)}`);

    const again = await client.chat.complete(request);
    assert.equal(again.choices[0].message.content, choice.message.content, "the same random_seed gives the same answer");
    const other = await client.chat.complete({ ...request, randomSeed: 7 });
    assert.notEqual(other.choices[0].message.content, choice.message.content, "another seed, another answer");
    console.log("ok: random_seed makes sampling repeatable");

    // stream: the deltas add up to the same answer, the last chunk says why it ended and the usage.
    const stream = await client.chat.stream(request);
    let text = "";
    let chunks = 0;
    let last;
    for await (const event of stream) {
      const chunk = event.data;
      assert.equal(chunk.model, model);
      chunks++;
      const c = chunk.choices[0];
      if (chunks === 1) assert.equal(c.delta.role, "assistant");
      if (typeof c.delta.content === "string") text += c.delta.content;
      last = chunk;
    }
    assert.ok(chunks >= 2, `several chunks, got ${chunks}`);
    assert.equal(text, choice.message.content, "the streamed deltas equal the whole answer");
    assert.equal(last.choices[0].finishReason, "length");
    assert.equal(last.usage.completionTokens, 12);
    console.log(`ok: chat.stream: ${chunks} chunks add up to the same answer`);

    // n choices, each its own seed; stop strings cut the text.
    const many = await client.chat.complete({ ...request, n: 3 });
    assert.equal(many.choices.length, 3);
    assert.deepEqual(many.choices.map((c) => c.index), [0, 1, 2]);
    assert.equal(many.choices[0].message.content, choice.message.content, "choice 0 uses the request's seed");
    assert.equal(many.usage.completionTokens, 36);
    // A stop string taken from the answer itself (two whole characters, never half a surrogate pair).
    const characters = [...choice.message.content];
    assert.ok(characters.length >= 5, `12 tokens decode to at least 5 characters: ${JSON.stringify(choice.message.content)}`);
    const stopAt = characters.slice(3, 5).join("");
    const stopped = await client.chat.complete({ ...request, stop: [stopAt] });
    assert.equal(stopped.choices[0].finishReason, "stop");
    assert.equal(stopped.choices[0].message.content, choice.message.content.slice(0, choice.message.content.indexOf(stopAt)));
    console.log(`ok: stop ${JSON.stringify(stopAt)} ends the answer before it`);

    // An assistant prefix is continued, and penalties change what is sampled.
    const prefixed = await client.chat.complete({ model, maxTokens: 4, temperature: 0, messages: [...conversation, { role: "assistant", content: "Sure:", prefix: true }] });
    assert.equal(prefixed.usage.completionTokens, 4);
    const greedy = await client.chat.complete({ model, maxTokens: 16, temperature: 0, messages: conversation });
    const penalised = await client.chat.complete({ model, maxTokens: 16, temperature: 0, messages: conversation, frequencyPenalty: 2, presencePenalty: 2 });
    assert.notEqual(penalised.choices[0].message.content, greedy.choices[0].message.content, "penalties change a greedy answer");
    console.log("ok: prefix continued; penalties applied");

    // The same long prompt twice: the second reuses the first's cached blocks.
    const long = [{ role: "user", content: "x".repeat(200) + " then answer." }];
    const cold = await client.chat.complete({ model, maxTokens: 2, temperature: 0, messages: long });
    const warm = await client.chat.complete({ model, maxTokens: 2, temperature: 0, messages: long });
    assert.equal(warm.choices[0].message.content, cold.choices[0].message.content);
    const raw = await fetch(`${process.env.ATELIER_URL}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${process.env.ATELIER_API_KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ model, max_tokens: 2, temperature: 0, messages: long }),
    }).then((r) => r.json());
    assert.ok(raw.usage.prompt_tokens_details.cached_tokens >= 192, `cached tokens: ${JSON.stringify(raw.usage)}`);
    console.log(`ok: prefix cache: ${raw.usage.prompt_tokens_details.cached_tokens} of ${raw.usage.prompt_tokens} prompt tokens cached`);
  },

  async fim() {
    const response = await client.fim.complete({ model, prompt: "def add(a, b):\n    return ", suffix: "\n\nprint(add(1, 2))\n", maxTokens: 6, temperature: 0 });
    assert.equal(response.object, "fim.completion");
    assert.equal(response.choices[0].finishReason, "length");
    assert.equal(typeof response.choices[0].message.content, "string");
    assert.equal(response.usage.completionTokens, 6);
    let streamed = "";
    for await (const event of await client.fim.stream({ model, prompt: "def add(a, b):\n    return ", suffix: "\n\nprint(add(1, 2))\n", maxTokens: 6, temperature: 0 })) {
      streamed += event.data.choices[0].delta.content ?? "";
    }
    assert.equal(streamed, response.choices[0].message.content);
    console.log(`ok: fim.complete and fim.stream agree: ${JSON.stringify(streamed)}`);
  },

  async embeddings() {
    const inputs = ["the cat sat", "a dog ran", "the cat sat"];
    const response = await client.embeddings.create({ model, inputs });
    assert.equal(response.object, "list");
    assert.equal(response.data.length, 3);
    const vectors = response.data.map((d) => d.embedding);
    const dim = vectors[0].length;
    assert.ok(dim >= 8);
    const norm = Math.hypot(...vectors[0]);
    assert.ok(Math.abs(norm - 1) < 1e-4, `unit length, got ${norm}`);
    assert.deepEqual(vectors[2], vectors[0], "equal texts embed equally");
    assert.notDeepEqual(vectors[1], vectors[0]);
    assert.ok(response.usage.promptTokens > 0);
    console.log(`ok: ${vectors.length} float embeddings of ${dim} dims`);

    const half = await client.embeddings.create({ model, inputs: "the cat sat", outputDimension: dim / 2 });
    assert.equal(half.data[0].embedding.length, dim / 2);
    assert.ok(Math.abs(Math.hypot(...half.data[0].embedding) - 1) < 1e-4, "a cut embedding is normalised again");
    for (const [outputDtype, length, min, max] of [["int8", dim, -128, 127], ["uint8", dim, 0, 255], ["binary", dim / 8, -128, 127], ["ubinary", dim / 8, 0, 255]]) {
      const typed = await client.embeddings.create({ model, inputs: "the cat sat", outputDtype });
      const values = typed.data[0].embedding;
      assert.equal(values.length, length, outputDtype);
      assert.ok(values.every((v) => Number.isInteger(v) && v >= min && v <= max), `${outputDtype} values in [${min}, ${max}]`);
      if (outputDtype === "int8") {
        values.forEach((v, i) => assert.equal(v, Math.max(-128, Math.min(127, Math.round(vectors[0][i] * 127))) + 0));
      }
      if (outputDtype === "ubinary") {
        const bits = vectors[0].map((v) => (v > 0 ? 1 : 0));
        values.forEach((byte, b) => assert.equal(byte, parseInt(bits.slice(b * 8, b * 8 + 8).join(""), 2)));
      }
      console.log(`ok: ${outputDtype}: ${length} values`);
    }
  },

  async structured() {
    const card = await client.models.retrieve({ modelId: model });
    assert.equal(card.capabilities.functionCalling, true, "a v7 tokeniser calls tools");
    assert.equal(card.capabilities.completionFim, true, "a tekken tokeniser with [PREFIX]/[SUFFIX] fills in the middle");

    // json_schema: whatever a random model wants, the answer parses and validates.
    const schema = {
      type: "object",
      properties: { city: { type: "string", maxLength: 8 }, population: { type: "integer" }, capital: { type: "boolean" } },
      required: ["city", "population", "capital"],
      additionalProperties: false,
    };
    for (const randomSeed of [1, 2, 3]) {
      const answer = await client.chat.complete({ model, messages: conversation, maxTokens: 200, temperature: 1, randomSeed, responseFormat: { type: "json_schema", jsonSchema: { name: "city", schemaDefinition: schema, strict: true } } });
      assert.equal(answer.choices[0].finishReason, "stop", "a bounded schema always completes");
      const value = JSON.parse(answer.choices[0].message.content);
      assert.deepEqual(Object.keys(value).sort(), ["capital", "city", "population"]);
      assert.equal(typeof value.city, "string");
      assert.ok([...value.city].length <= 8, `maxLength 8 counts code points: ${JSON.stringify(value.city)}`);
      assert.ok(Number.isInteger(value.population));
      assert.equal(typeof value.capital, "boolean");
      console.log(`ok: json_schema (seed ${randomSeed}): ${answer.choices[0].message.content}`);
    }

    const object = await client.chat.complete({ model, messages: conversation, maxTokens: 64, temperature: 0.7, randomSeed: 5, responseFormat: { type: "json_object" } });
    const text = object.choices[0].message.content;
    assert.ok(text.startsWith("{"), `json_object starts an object: ${text}`);
    if (object.choices[0].finishReason === "stop") assert.equal(typeof JSON.parse(text), "object");
    console.log(`ok: json_object (${object.choices[0].finishReason}): ${text.slice(0, 80)}`);

    // Tools: a forced call names a tool and its arguments validate against the tool's parameters.
    const tools = [
      { type: "function", function: { name: "get_weather", description: "Weather in a city", parameters: { type: "object", properties: { city: { type: "string", maxLength: 10 }, unit: { type: "string", enum: ["c", "f"] } }, required: ["city", "unit"], additionalProperties: false } } },
      { type: "function", function: { name: "get_time", parameters: { type: "object", properties: { zone: { type: "string", maxLength: 6 } }, required: ["zone"], additionalProperties: false } } },
    ];
    const forced = await client.chat.complete({ model, messages: conversation, tools, toolChoice: "any", parallelToolCalls: false, maxTokens: 150, temperature: 0.8, randomSeed: 11 });
    const choice = forced.choices[0];
    assert.equal(choice.finishReason, "tool_calls");
    assert.equal(choice.message.toolCalls.length, 1, "parallel_tool_calls false: one call");
    const [call] = choice.message.toolCalls;
    assert.ok(["get_weather", "get_time"].includes(call.function.name));
    assert.match(call.id, /^[A-Za-z0-9]{9}$/);
    const args = typeof call.function.arguments === "string" ? JSON.parse(call.function.arguments) : call.function.arguments;
    if (call.function.name === "get_weather") {
      assert.deepEqual(Object.keys(args).sort(), ["city", "unit"]);
      assert.ok(["c", "f"].includes(args.unit));
    } else {
      assert.deepEqual(Object.keys(args), ["zone"]);
    }
    console.log(`ok: tool_choice any: ${call.function.name}(${JSON.stringify(args)})`);

    const named = await client.chat.complete({ model, messages: conversation, tools, toolChoice: { type: "function", function: { name: "get_time" } }, parallelToolCalls: false, maxTokens: 200, temperature: 0.8, randomSeed: 12 });
    assert.equal(named.choices[0].finishReason, "tool_calls");
    assert.equal(named.choices[0].message.toolCalls.length, 1);
    assert.ok(named.choices[0].message.toolCalls.every((c) => c.function.name === "get_time"), "a named tool_choice calls only that tool");
    console.log(`ok: named tool_choice: ${named.choices[0].message.toolCalls.length} call(s) of get_time`);

    // The answer goes back as a tool message, and the conversation goes on.
    const followUp = await client.chat.complete({ model, maxTokens: 4, temperature: 0, tools, messages: [...conversation, { role: "assistant", content: "", toolCalls: [{ id: call.id, type: "function", function: { name: call.function.name, arguments: JSON.stringify(args) } }] }, { role: "tool", toolCallId: call.id, name: call.function.name, content: "{\"result\": 21}" }], toolChoice: "none" });
    assert.equal(followUp.choices[0].message.toolCalls ?? null, null, "tool_choice none makes no call");
    console.log("ok: tool results are rendered and tool_choice none answers in text");

    await expectFailure(client.chat.complete({ model, messages: conversation, responseFormat: { type: "json_schema", jsonSchema: { name: "x", schemaDefinition: { type: "string", pattern: "^a+$" } } } }), 422, "pattern", "response_format.json_schema.schema");
  },

  async errors() {
    await expectFailure(client.chat.complete({ model: "no-such-model", messages: conversation }), 404, "no-such-model");
    const invalid = await expectFailure(client.chat.complete({ model, messages: conversation, temperature: 5 }), 422, "temperature");
    assert.deepEqual(invalid.detail[0].loc, ["body", "temperature"]);
    await expectFailure(client.chat.complete({ model, messages: [{ role: "assistant", content: "hi" }] }), 422, "last message");
    await expectFailure(client.chat.complete({ model, messages: conversation, toolChoice: "any" }), 422, "needs tools");
    await expectFailure(client.chat.complete({ model, messages: [{ role: "user", content: "y".repeat(40000) }] }), 400, "Prompt contains", "maximum context length");
    await expectFailure(client.chat.complete({ model, messages: conversation, maxTokens: 40000 }), 400, "max_tokens is 40000");
    await expectFailure(client.embeddings.create({ model, inputs: "x", outputDimension: 100000 }), 400, "output_dimension");
    await expectFailure(client.embeddings.create({ model: "no-such-model", inputs: "x" }), 404);
    await expectFailure(client.fim.complete({ model: "no-such-model", prompt: "x" }), 404);
  },

  async finetuned() {
    const { ATELIER_FT_MODEL: ft, ATELIER_EXPECTED: expected, ATELIER_PROMPT: prompt } = env("ATELIER_FT_MODEL", "ATELIER_EXPECTED", "ATELIER_PROMPT");
    const ask = (m) => client.chat.complete({ model: m, temperature: 0, maxTokens: expected.length + 4, messages: [{ role: "user", content: prompt }] });
    const tuned = await ask(ft);
    assert.equal(tuned.model, ft);
    assert.ok(tuned.choices[0].message.content.startsWith(expected), `the fine-tuned model answers ${JSON.stringify(expected)}, got ${JSON.stringify(tuned.choices[0].message.content)}`);
    const base = await ask(model);
    assert.ok(!base.choices[0].message.content.startsWith(expected), "the base model does not");
    console.log(`ok: ${ft} answers ${JSON.stringify(tuned.choices[0].message.content)}; ${model} answers ${JSON.stringify(base.choices[0].message.content)}`);
  },
};

await run(scenarios);
