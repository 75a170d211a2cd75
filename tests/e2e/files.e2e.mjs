// End-to-end scenarios of the Files API, driven by the official Mistral TypeScript SDK.
// Usage: ATELIER_URL=... ATELIER_API_KEY=... [ATELIER_OTHER_KEY=...] node files.e2e.mjs <scenario>
// Prints what it checked; exits non-zero with the failing assertion.
import assert from "node:assert/strict";
import { Mistral } from "@mistralai/mistralai";
import { chat, expectError, jsonl, run } from "./common.mjs";

const serverURL = process.env.ATELIER_URL;
const apiKey = process.env.ATELIER_API_KEY;
assert.ok(serverURL && apiKey, "ATELIER_URL and ATELIER_API_KEY are required");
const client = new Mistral({ apiKey, serverURL });



async function readAll(stream) {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

const scenarios = {
  async lifecycle() {
    const content = jsonl(
      chat("What is the capital of France?", "Paris."),
      { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Héllo, 世界" }, { role: "assistant", content: "Bonjour 🌍", weight: 1 }] },
      {
        messages: [
          { role: "user", content: "Weather in Paris?" },
          { role: "assistant", tool_calls: [{ id: "abc123XYZ", type: "function", function: { name: "get_weather", arguments: "{\"city\":\"Paris\"}" } }] },
          { role: "tool", tool_call_id: "abc123XYZ", content: "{\"temp\": 21}" },
          { role: "assistant", content: "21 degrees." },
        ],
        tools: [{ type: "function", function: { name: "get_weather", description: "weather", parameters: { type: "object" } } }],
      },
    );
    const uploaded = await client.files.upload({ file: { fileName: "train.jsonl", content }, purpose: "fine-tune" });
    assert.equal(uploaded.object, "file");
    assert.equal(uploaded.filename, "train.jsonl");
    assert.equal(uploaded.purpose, "fine-tune");
    assert.equal(uploaded.sizeBytes, content.length);
    assert.equal(uploaded.numLines, 3);
    assert.equal(uploaded.sampleType, "instruct");
    assert.equal(uploaded.source, "upload");
    const { createHash } = await import("node:crypto");
    assert.equal(uploaded.signature, createHash("sha256").update(content).digest("hex"));
    console.log(`ok: uploaded ${uploaded.id}`);

    const pretrain = await client.files.upload({ file: { fileName: "corpus.jsonl", content: jsonl({ text: "Some raw text." }, { text: "More text." }) }, purpose: "fine-tune" });
    assert.equal(pretrain.sampleType, "pretrain");
    const batch = await client.files.upload({ file: { fileName: "requests.jsonl", content: jsonl({ custom_id: "1", body: { messages: [] } }) }, purpose: "batch" });
    assert.equal(batch.purpose, "batch");
    assert.equal(batch.sampleType, "batch_request");

    const all = await client.files.list({});
    assert.equal(all.object, "list");
    assert.equal(all.total, 3);
    assert.deepEqual(all.data.map((f) => f.id), [batch.id, pretrain.id, uploaded.id], "newest first");

    const onlyBatch = await client.files.list({ purpose: "batch" });
    assert.deepEqual(onlyBatch.data.map((f) => f.id), [batch.id]);
    const searched = await client.files.list({ search: "train" });
    assert.deepEqual(searched.data.map((f) => f.id), [uploaded.id]);
    const bySample = await client.files.list({ sampleType: ["pretrain", "batch_request"] });
    assert.deepEqual(bySample.data.map((f) => f.id).sort(), [batch.id, pretrain.id].sort());
    const paged = await client.files.list({ page: 1, pageSize: 2 });
    assert.deepEqual(paged.data.map((f) => f.id), [uploaded.id]);
    assert.equal(paged.total, 3);
    console.log("ok: list with purpose, search, sample_type and paging");

    const retrieved = await client.files.retrieve({ fileId: uploaded.id });
    assert.equal(retrieved.id, uploaded.id);
    assert.equal(retrieved.deleted, false);
    assert.equal(retrieved.signature, uploaded.signature);

    const downloaded = await readAll(await client.files.download({ fileId: uploaded.id }));
    assert.ok(Buffer.from(content).equals(downloaded), "downloaded bytes are identical");
    console.log("ok: download is byte-identical");

    const signed = await client.files.getSignedUrl({ fileId: uploaded.id, expiry: 1 });
    const viaUrl = Buffer.from(await (await fetch(signed.url)).arrayBuffer());
    assert.ok(Buffer.from(content).equals(viaUrl), "signed URL serves the same bytes without a key");
    const tampered = signed.url.replace(/signature=([A-Za-z0-9_-])/, (m, c) => `signature=${c === "A" ? "B" : "A"}`);
    assert.equal((await fetch(tampered)).status, 401, "a tampered signature is refused");
    console.log("ok: signed URL");

    const deleted = await client.files.delete({ fileId: uploaded.id });
    assert.deepEqual({ id: deleted.id, deleted: deleted.deleted }, { id: uploaded.id, deleted: true });
    await expectError(client.files.retrieve({ fileId: uploaded.id }), 404, uploaded.id);
    await expectError(client.files.download({ fileId: uploaded.id }), 404);
    assert.equal((await client.files.list({})).total, 2);
    console.log("ok: delete");
  },

  async badInputs() {
    const before = (await client.files.list({})).total;
    const bad = jsonl(
      chat("fine", "line"),
      "{not json",
      { messages: [{ role: "assistant", content: "starts wrong" }] },
      { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a", tool_calls: [{ id: "abc123XYZ", function: { name: "f", arguments: "{}" } }] }] },
      { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a", weight: 0.5 }] },
      { messages: [{ role: "user", content: "q" }, { role: "assistant", tool_calls: [{ id: "short", function: { name: "bad name!", arguments: "{" } }] }, { role: "assistant", content: "x" }] },
      { messages: [{ role: "robot", content: "?" }, { role: "assistant", content: "a" }] },
    );
    const body = await expectError(client.files.upload({ file: { fileName: "bad.jsonl", content: bad }, purpose: "fine-tune" }), 422, "bad.jsonl");
    const lines = [...new Set(body.problems.map((p) => p.line))];
    assert.deepEqual(lines, [2, 3, 4, 5, 6, 7], "every bad line, and only those, is named");
    assert.ok(body.total_problems >= 6);
    assert.ok(body.detail.every((d) => Array.isArray(d.loc) && d.loc.includes("line")), "FastAPI-style detail entries");
    const messages = body.problems.map((p) => p.message).join("\n");
    for (const fragment of ["not valid JSON", "start with a system or user", "not both", "'weight' must be 0 or 1", "9 letters or digits", "^[a-zA-Z0-9_-]{1,64}$", "not valid JSON", "unknown role 'robot'"]) {
      assert.ok(messages.includes(fragment), `problems mention ${fragment}`);
    }

    const many = jsonl(...Array.from({ length: 150 }, () => "[]"));
    const manyBody = await expectError(client.files.upload({ file: { fileName: "many.jsonl", content: many }, purpose: "fine-tune" }), 422);
    assert.equal(manyBody.problems.length, 100, "the first 100 problems");
    assert.equal(manyBody.total_problems, 150, "and the total count");

    await expectError(client.files.upload({ file: { fileName: "empty.jsonl", content: new Uint8Array(0) }, purpose: "fine-tune" }), 400, "empty");
    await expectError(client.files.upload({ file: { fileName: "latin1.jsonl", content: new Uint8Array([0x7b, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3a, 0x22, 0xe9, 0x22, 0x7d, 0x0a]) }, purpose: "fine-tune" }), 422, "UTF-8");
    await expectError(client.files.upload({ file: { fileName: "../../etc/passwd", content: jsonl(chat("a", "b")) }, purpose: "fine-tune" }), 400, "path separator");
    await expectError(client.files.upload({ file: { fileName: "x.jsonl", content: jsonl(chat("a", "b")) }, purpose: "pretraining" }), 400, "Unknown purpose");
    const longLine = jsonl({ text: "x".repeat(Number(process.env.ATELIER_MAX_LINE ?? 4096) + 10) });
    await expectError(client.files.upload({ file: { fileName: "long.jsonl", content: longLine }, purpose: "fine-tune" }), 422, "longer than the limit");
    await expectError(client.files.upload({ file: { fileName: "mixed.jsonl", content: jsonl(chat("a", "b"), { text: "c" }) }, purpose: "fine-tune" }), 422, "mixes instruct lines");
    await expectError(client.files.retrieve({ fileId: "00000000-0000-0000-0000-000000000000" }), 404);

    assert.equal((await client.files.list({})).total, before, "no bad upload left a file behind");
    console.log("ok: nothing stored");
  },

  async isolation() {
    const other = new Mistral({ apiKey: process.env.ATELIER_OTHER_KEY, serverURL });
    const mine = await client.files.upload({ file: { fileName: "private.jsonl", content: jsonl(chat("secret", "data")) }, purpose: "fine-tune" });
    await expectError(other.files.retrieve({ fileId: mine.id }), 404);
    await expectError(other.files.download({ fileId: mine.id }), 404);
    await expectError(other.files.delete({ fileId: mine.id }), 404);
    assert.ok(!(await other.files.list({})).data.some((f) => f.id === mine.id), "another workspace's listing does not show it");
    assert.equal((await client.files.retrieve({ fileId: mine.id })).id, mine.id, "still there for its owner");
    const stranger = new Mistral({ apiKey: "atl_0000000000000000_" + "A".repeat(43), serverURL });
    await expectError(stranger.files.list({}), 401);
  },
};

await run(scenarios);
