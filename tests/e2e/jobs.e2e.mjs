// End-to-end scenarios of fine-tuning jobs, driven by the official Mistral TypeScript SDK 2.4.0.
// Usage: ATELIER_URL=... ATELIER_API_KEY=... ATELIER_BASE_MODEL=... node jobs.e2e.mjs <scenario>
// Prints what it checked; exits non-zero with the failing assertion. Every wait is bounded.
import assert from "node:assert/strict";
import { Mistral } from "@mistralai/mistralai";
import { chat, expectError, jsonl, run } from "./common.mjs";

const serverURL = process.env.ATELIER_URL;
const apiKey = process.env.ATELIER_API_KEY;
const baseModel = process.env.ATELIER_BASE_MODEL;
assert.ok(serverURL && apiKey && baseModel, "ATELIER_URL, ATELIER_API_KEY and ATELIER_BASE_MODEL are required");
const client = new Mistral({ apiKey, serverURL });

const words = ["apple", "river", "stone", "cloud", "ember", "maple", "frost", "amber", "coral", "delta", "lumen", "orbit"];
const trainRows = (n) => Array.from({ length: n }, (_, i) => chat(`Say ${words[i % words.length]} ${i}.`, `${words[i % words.length]} ${i} ${words[i % words.length]}.`));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const final = ["SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"];

async function upload(name, rows, purpose = "fine-tune") {
  const file = await client.files.upload({ file: { fileName: name, content: jsonl(rows) }, purpose });
  return file.id;
}

async function waitFor(jobId, statuses, seconds = 240) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const job = await client.fineTuning.jobs.get({ jobId });
    if (statuses.includes(job.status)) return job;
    assert.ok(!final.includes(job.status), `job ${jobId} ended ${job.status} while waiting for ${statuses}: ${JSON.stringify(job.events?.slice(-3))}`);
    assert.ok(Date.now() < deadline, `job ${jobId} not ${statuses} within ${seconds} s (status ${job.status})`);
    await sleep(200);
  }
}


const scenarios = {
  // The commonest real dataset: training and validation files share one system prompt and one tool
  // schema. That is not contamination: every example is trained on, and the job says so.
  async sharedSystemPrompt() {
    const system = "You are the assistant of the Atelier municipal library. Answer in one short sentence, quote the catalogue when you can, never invent opening hours, and send questions about fines or lost cards to the front desk staff.";
    const tools = [{ type: "function", function: { name: "search_catalogue", description: "Search the library catalogue by title, author or subject and return the matching books with their shelf marks", parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] } } }];
    const subjects = ["astronomy", "botany", "cooking", "geology", "history", "music", "poetry", "sailing"];
    const row = (prefix, i) => ({
      messages: [
        { role: "system", content: system },
        { role: "user", content: `${prefix} ${i}: a book about ${subjects[i % 8]}?` },
        { role: "assistant", content: `Try shelf ${subjects[i % 8][0]}${i} for ${subjects[i % 8]} volume ${i}.` },
      ],
      tools,
    });
    const trainingFile = await upload("train.jsonl", Array.from({ length: 80 }, (_, i) => row("Question", i)));
    const validationFile = await upload("valid.jsonl", Array.from({ length: 8 }, (_, i) => row("Eval question", 1000 + i)));
    const created = await client.fineTuning.jobs.create({
      model: baseModel,
      trainingFiles: [{ fileId: trainingFile, weight: 1 }],
      validationFiles: [validationFile],
      hyperparameters: { trainingSteps: 4, learningRate: 0.001, seqLen: 128 },
      autoStart: false,
    });
    const validated = await waitFor(created.id, ["VALIDATED"]);
    const curated = validated.events.find((e) => e.name === "data-curated");
    assert.ok(curated, `no data-curated event: ${JSON.stringify(validated.events)}`);
    assert.equal(curated.data.examples_read, 80);
    assert.equal(curated.data.examples_kept, 80);
    assert.deepEqual(curated.data.dropped_by_reason, {});
    assert.ok(validated.metadata.dataTokens > 0);
    console.log(`ok: VALIDATED keeping 80 of 80 examples that share a system prompt and tools with the validation file`);
    await client.fineTuning.jobs.cancel({ jobId: created.id });
  },

  async train() {
    const trainingFile = await upload("train.jsonl", trainRows(48));
    const validationFile = await upload("valid.jsonl", trainRows(12).map((r) => chat(`Please ${r.messages[0].content}`, r.messages[1].content)));
    const created = await client.fineTuning.jobs.create({
      model: baseModel,
      trainingFiles: [{ fileId: trainingFile, weight: 1 }],
      validationFiles: [validationFile],
      hyperparameters: { trainingSteps: 20, learningRate: 0.003, seqLen: 64 },
      autoStart: true,
      suffix: "sdk-echo",
    });
    assert.equal(created.object, "job");
    assert.equal(created.jobType, "completion");
    assert.equal(created.status, "QUEUED");
    assert.equal(created.model, baseModel);
    assert.deepEqual(created.trainingFiles, [trainingFile]);
    assert.equal(created.hyperparameters.trainingSteps, 20);
    console.log(`ok: created ${created.id} (${created.status})`);

    const done = await waitFor(created.id, ["SUCCESS"]);
    const statuses = done.events.filter((e) => e.name === "status-updated").map((e) => e.data.status);
    assert.deepEqual(statuses, ["QUEUED", "VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "SUCCESS"]);
    assert.equal(done.metadata.trainTokensPerStep, 64);
    assert.equal(done.metadata.trainTokens, 20 * 64);
    assert.ok(done.metadata.dataTokens > 0);
    assert.equal(done.trainedTokens, 20 * 64);
    console.log(`ok: SUCCESS after ${statuses.join(" -> ")}; metadata ${JSON.stringify(done.metadata)}`);

    const checkpoints = [...done.checkpoints].sort((a, b) => a.stepNumber - b.stepNumber);
    assert.deepEqual(checkpoints.map((c) => c.stepNumber), [2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
    for (const c of checkpoints) {
      assert.equal(typeof c.metrics.trainLoss, "number");
      assert.equal(typeof c.metrics.validLoss, "number");
      assert.ok(c.metrics.validMeanTokenAccuracy >= 0 && c.metrics.validMeanTokenAccuracy <= 1);
    }
    const losses = checkpoints.map((c) => c.metrics.trainLoss);
    assert.ok(losses.at(-1) < losses[0], `train loss should fall: ${losses}`);
    console.log(`ok: train loss ${losses.map((l) => l.toFixed(3)).join(" ")}`);

    const modelId = done.fineTunedModel;
    assert.ok(modelId.startsWith(`ft:${baseModel}:`), modelId);
    const card = await client.models.retrieve({ modelId });
    assert.equal(card.type, "fine-tuned");
    assert.equal(card.job, created.id);
    assert.equal(card.root, baseModel);
    const list = await client.models.list();
    assert.ok(list.data.some((m) => m.id === modelId), "the fine-tuned model is listed");
    console.log(`ok: ${modelId} listed with job ${card.job}, root ${card.root}`);

    const jobs = await client.fineTuning.jobs.list({ status: "SUCCESS", model: baseModel, createdAfter: new Date(Date.now() - 3600_000) });
    assert.equal(jobs.object, "list");
    assert.ok(jobs.total >= 1 && jobs.data.some((j) => j.id === created.id));
    const none = await client.fineTuning.jobs.list({ status: "RUNNING", suffix: "no-such-suffix" });
    assert.equal(none.total, 0);
    console.log(`ok: list with filters (${jobs.total} SUCCESS)`);
  },

  async cancel() {
    const trainingFile = await upload("train.jsonl", trainRows(48));
    // Long enough that it is still training when the cancel arrives.
    const job = await client.fineTuning.jobs.create({
      model: baseModel,
      trainingFiles: [{ fileId: trainingFile, weight: 1 }],
      hyperparameters: { trainingSteps: 100000, learningRate: 0.001, seqLen: 64 },
      autoStart: true,
    });
    await waitFor(job.id, ["RUNNING"]);
    const cancelling = await client.fineTuning.jobs.cancel({ jobId: job.id });
    assert.ok(["CANCELLATION_REQUESTED", "CANCELLED"].includes(cancelling.status), cancelling.status);
    const cancelled = await waitFor(job.id, ["CANCELLED"]);
    assert.equal(cancelled.fineTunedModel ?? null, null);
    console.log(`ok: running job ${job.id} cancelled (${cancelling.status} -> CANCELLED)`);

    // A job created without auto_start waits VALIDATED until started.
    const manual = await client.fineTuning.jobs.create({
      model: baseModel,
      trainingFiles: [{ fileId: trainingFile, weight: 1 }],
      hyperparameters: { trainingSteps: 4, learningRate: 0.001, seqLen: 64 },
      autoStart: false,
    });
    await waitFor(manual.id, ["VALIDATED"]);
    const started = await client.fineTuning.jobs.start({ jobId: manual.id });
    assert.ok(["QUEUED", "RUNNING", "SUCCESS"].includes(started.status), started.status);
    await waitFor(manual.id, ["SUCCESS"]);
    console.log(`ok: manual job ${manual.id} started and succeeded`);
  },

  async badInputs() {
    const trainingFile = await upload("train.jsonl", trainRows(8));
    const batchFile = await upload("batch.jsonl", [{ custom_id: "1", body: {} }], "batch");
    const base = { trainingFiles: [{ fileId: trainingFile, weight: 1 }], hyperparameters: { trainingSteps: 2, learningRate: 0.001 } };
    await expectError(client.fineTuning.jobs.create({ ...base, model: "no-such-model" }), 404, "no-such-model");
    await expectError(client.fineTuning.jobs.create({ ...base, model: baseModel, trainingFiles: [{ fileId: "00000000-0000-4000-8000-000000000000", weight: 1 }] }), 404, "00000000-0000-4000-8000-000000000000");
    await expectError(client.fineTuning.jobs.create({ ...base, model: baseModel, trainingFiles: [{ fileId: batchFile, weight: 1 }] }), 422, "training_files[0].file_id", "purpose");
    await expectError(client.fineTuning.jobs.create({ ...base, model: baseModel, hyperparameters: { trainingSteps: 0, learningRate: 3 } }), 422, "hyperparameters.training_steps", "hyperparameters.learning_rate");
    await expectError(client.fineTuning.jobs.get({ jobId: "00000000-0000-4000-8000-000000000001" }), 404);
    const jobs = await client.fineTuning.jobs.list();
    assert.equal(jobs.total, 0, "no bad request created a job");
    console.log("ok: no job was created");
  },
};

await run(scenarios);
