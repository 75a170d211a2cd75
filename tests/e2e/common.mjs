// What every SDK scenario script shares: the client from the environment, JSONL helpers, and the
// check that a call fails the way Mistral's API would.
import assert from "node:assert/strict";
import { Mistral } from "@mistralai/mistralai";
import { MistralError } from "@mistralai/mistralai/models/errors/mistralerror.js";

/** The environment variables a script needs; fails naming the missing ones. */
export function env(...names) {
  const missing = ["ATELIER_URL", "ATELIER_API_KEY", ...names].filter((n) => !process.env[n]);
  assert.equal(missing.length, 0, `${missing.join(", ")} required`);
  return Object.fromEntries(names.map((n) => [n, process.env[n]]));
}

/** A client of the server under test, with the admin key or another. */
export const connect = (apiKey = process.env.ATELIER_API_KEY) => new Mistral({ apiKey, serverURL: process.env.ATELIER_URL });

const encoder = new TextEncoder();
export const jsonl = (...rows) => encoder.encode(rows.flat().map((r) => (typeof r === "string" ? r : JSON.stringify(r))).join("\n") + "\n");
export const chat = (q, a) => ({ messages: [{ role: "user", content: q }, { role: "assistant", content: a }] });

/** Awaits a call that must fail with HTTP `status`, its body in Mistral's error shape naming each fragment. */
export async function expectError(promise, status, ...fragments) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof MistralError, `expected a MistralError, got ${e?.constructor?.name}: ${e?.message}`);
    assert.equal(e.statusCode, status, `status of: ${e.body}`);
    for (const f of fragments) assert.ok(e.body.includes(f), `error body should mention ${JSON.stringify(f)}: ${e.body}`);
    const body = JSON.parse(e.body);
    assert.equal(body.object, "error");
    console.log(`ok: ${status} ${e.body.slice(0, 160)}`);
    return body;
  }
  assert.fail(`expected HTTP ${status}, but the call succeeded`);
}

/** Runs the scenario named on the command line. */
export async function run(scenarios) {
  const name = process.argv[2];
  assert.ok(scenarios[name], `unknown scenario ${name}; one of ${Object.keys(scenarios).join(", ")}`);
  await scenarios[name]();
  console.log(`scenario ${name} passed`);
}
