// End-to-end scenarios of the Models API, driven by the official Mistral TypeScript SDK.
// Usage: ATELIER_URL=... ATELIER_API_KEY=... ATELIER_BASE_MODEL=... ATELIER_FT_MODEL=... [ATELIER_OTHER_KEY=...]
//        node models.e2e.mjs <scenario>
// Prints what it checked; exits non-zero with the failing assertion.
import assert from "node:assert/strict";
import { Mistral } from "@mistralai/mistralai";
import { expectError, run } from "./common.mjs";

const serverURL = process.env.ATELIER_URL;
const apiKey = process.env.ATELIER_API_KEY;
const baseModel = process.env.ATELIER_BASE_MODEL;
const ftModel = process.env.ATELIER_FT_MODEL;
assert.ok(serverURL && apiKey && baseModel && ftModel, "ATELIER_URL, ATELIER_API_KEY, ATELIER_BASE_MODEL and ATELIER_FT_MODEL are required");
const client = new Mistral({ apiKey, serverURL });


const scenarios = {
  async lifecycle() {
    const list = await client.models.list();
    assert.equal(list.object, "list");
    assert.deepEqual(list.data.map((m) => m.id), [baseModel, ftModel], "base models first, then fine-tuned");
    const [base, ft] = list.data;
    assert.equal(base.type, "base");
    assert.equal(base.object, "model");
    assert.equal(base.ownedBy, "atelier");
    assert.equal(base.capabilities.completionChat, true);
    assert.equal(base.capabilities.fineTuning, true);
    assert.equal(base.maxContextLength, 32768);
    assert.ok(Number.isInteger(base.created));
    assert.equal(ft.type, "fine-tuned");
    assert.equal(ft.root, baseModel);
    assert.equal(ft.archived, false);
    assert.ok(ft.job.length > 0);
    assert.equal(ft.capabilities.fineTuning, false);
    console.log(`ok: listed ${list.data.length} models`);

    const retrievedBase = await client.models.retrieve({ modelId: baseModel });
    assert.equal(retrievedBase.type, "base");
    assert.equal(retrievedBase.id, baseModel);
    const retrieved = await client.models.retrieve({ modelId: ftModel });
    assert.equal(retrieved.type, "fine-tuned");
    assert.equal(retrieved.id, ftModel);
    assert.equal(retrieved.job, ft.job);
    console.log(`ok: retrieved ${ftModel}`);

    const updated = await client.models.update({ modelId: ftModel, updateModelRequest: { name: "Support bot", description: "trained on tickets" } });
    assert.equal(updated.modelType, "completion");
    assert.equal(updated.id, ftModel);
    assert.equal(updated.name, "Support bot");
    assert.equal(updated.description, "trained on tickets");
    assert.equal(updated.root, baseModel);
    assert.equal(updated.archived, false);
    assert.equal(updated.capabilities.completionChat, true);
    assert.equal((await client.models.retrieve({ modelId: ftModel })).name, "Support bot");
    console.log("ok: updated name and description");

    const archived = await client.models.archive({ modelId: ftModel });
    assert.deepEqual(archived, { id: ftModel, object: "model", archived: true });
    assert.equal((await client.models.retrieve({ modelId: ftModel })).archived, true);
    const unarchived = await client.models.unarchive({ modelId: ftModel });
    assert.deepEqual(unarchived, { id: ftModel, object: "model", archived: false });
    assert.equal((await client.models.retrieve({ modelId: ftModel })).archived, false);
    console.log("ok: archived and unarchived");

    const deleted = await client.models.delete({ modelId: ftModel });
    assert.deepEqual(deleted, { id: ftModel, object: "model", deleted: true });
    await expectError(client.models.retrieve({ modelId: ftModel }), 404, ftModel);
    assert.deepEqual((await client.models.list()).data.map((m) => m.id), [baseModel]);
    console.log("ok: deleted");
  },

  async errors() {
    await expectError(client.models.delete({ modelId: baseModel }), 400, "base model");
    await expectError(client.models.archive({ modelId: baseModel }), 400, "base model");
    await expectError(client.models.retrieve({ modelId: "no-such-model" }), 404, "no-such-model");
    await expectError(client.models.delete({ modelId: "ft:no-such:00000000:x:00000000" }), 404);
    await expectError(client.models.update({ modelId: "no-such-model", updateModelRequest: { name: "x" } }), 404);
    assert.equal((await client.models.retrieve({ modelId: baseModel })).type, "base", "a refused delete leaves the model");
  },

  async isolation() {
    const otherKey = process.env.ATELIER_OTHER_KEY;
    assert.ok(otherKey, "ATELIER_OTHER_KEY is required");
    const other = new Mistral({ apiKey: otherKey, serverURL });
    assert.deepEqual((await other.models.list()).data.map((m) => m.id), [baseModel], "other workspaces see base models only");
    assert.equal((await other.models.retrieve({ modelId: baseModel })).type, "base");
    await expectError(other.models.retrieve({ modelId: ftModel }), 404);
    await expectError(other.models.delete({ modelId: ftModel }), 404);
    await expectError(other.models.archive({ modelId: ftModel }), 404);
    await expectError(other.models.update({ modelId: ftModel, updateModelRequest: { name: "stolen" } }), 404);
    const mine = await client.models.retrieve({ modelId: ftModel });
    assert.equal(mine.archived, false);
    assert.notEqual(mine.name, "stolen");
  },
};

await run(scenarios);
