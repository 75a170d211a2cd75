// The served OpenAPI document (/openapi/v1.json) against the server that serves it: linted by Redocly,
// checked against real answers, and turned into a typed client that drives the Files API.
// Usage: ATELIER_URL=... ATELIER_API_KEY=... [ATELIER_BASE_MODEL=...] node openapi.e2e.mjs <lint|conformance|client>
// Prints what it checked; exits non-zero with the failing assertion. Temporary files are removed.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { jsonl, chat, run } from "./common.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const baseUrl = process.env.ATELIER_URL;
const apiKey = process.env.ATELIER_API_KEY;
assert.ok(baseUrl && apiKey, "ATELIER_URL and ATELIER_API_KEY are required");
const auth = { Authorization: `Bearer ${apiKey}` };
const rows = (n) => Array.from({ length: n }, (_, i) => chat(`Say ${i}.`, `${i}.`));

async function documentText() {
  const response = await fetch(`${baseUrl}/openapi/v1.json`);
  assert.equal(response.status, 200);
  return response.text();
}

/** Runs `body` with a fresh temporary directory, removed afterwards whatever happens. */
async function withTempDirectory(body) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "atelier-openapi-"));
  try {
    return await body(dir);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Wraps a JSON Schema 2020-12 validator around the document's component schemas. */
function validatorOf(doc) {
  // Closed world: an object schema that lists its properties gets unevaluatedProperties false, so a
  // member the server sends and the schema does not declare fails too, not only a missing or
  // mistyped one. (The document itself stays open, as OpenAPI schemas usually are.)
  const closed = structuredClone(doc.components.schemas);
  const close = (schema) => {
    if (!schema || typeof schema !== "object") return;
    if (schema.properties && schema.additionalProperties === undefined && schema.unevaluatedProperties === undefined) schema.unevaluatedProperties = false;
    for (const value of Object.values(schema)) {
      if (Array.isArray(value)) value.forEach(close);
      else if (typeof value === "object") close(value);
    }
  };
  Object.values(closed).forEach(close);
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  ajv.addSchema({ $id: "atelier-openapi", components: { schemas: closed } });
  const cache = new Map();
  return (schema, body, where) => {
    const key = JSON.stringify(schema);
    let validate = cache.get(key);
    if (!validate) {
      const rooted = JSON.parse(key.replaceAll('"#/components/', '"atelier-openapi#/components/'));
      close(rooted);
      validate = ajv.compile(rooted);
      cache.set(key, validate);
    }
    if (!validate(body)) {
      const errors = validate.errors.map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`).join("\n");
      assert.fail(`${where}: the body does not match the document's schema:\n${errors}\nbody: ${JSON.stringify(body).slice(0, 2000)}`);
    }
  };
}

/** Checks a real answer against what the document declares for its operation and status. */
function conformance(doc) {
  const validate = validatorOf(doc);
  let checked = 0;
  const check = async (method, template, response) => {
    const where = `${method.toUpperCase()} ${template} ${response.status}`;
    const operation = doc.paths[template]?.[method];
    assert.ok(operation, `${method.toUpperCase()} ${template} is not in the document`);
    const declared = operation.responses[String(response.status)];
    assert.ok(declared, `${where}: the document declares no ${response.status} for it (declared: ${Object.keys(operation.responses).join(", ")})`);
    const mediaType = (response.headers.get("content-type") ?? "").split(";")[0].trim();
    const content = declared.content?.[mediaType];
    assert.ok(content, `${where}: the server answered ${mediaType}, the document declares ${Object.keys(declared.content ?? {}).join(", ")}`);
    if (mediaType.endsWith("json")) {
      const body = await response.json();
      validate(content.schema, body, where);
      checked++;
      console.log(`ok: ${where} matches ${JSON.stringify(content.schema).slice(0, 80)}`);
      return body;
    }
    const bytes = await response.arrayBuffer();
    checked++;
    console.log(`ok: ${where} ${mediaType}, ${bytes.byteLength} bytes`);
    return bytes;
  };
  return { check, count: () => checked };
}

const api = (method, url, init = {}) => fetch(`${baseUrl}${url}`, { method, ...init, headers: { ...auth, ...init.headers } });
const json = (method, url, body) => api(method, url, { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
function uploadForm(name, bytes, purpose = "fine-tune") {
  const form = new FormData();
  form.append("purpose", purpose);
  form.append("file", new Blob([bytes]), name);
  return form;
}

const scenarios = {
  // Redocly's recommended rules (tests/e2e/redocly.yaml says what is turned off and why): no error and
  // no warning on the live document.
  async lint() {
    const text = await documentText();
    await withTempDirectory(async (dir) => {
      const file = path.join(dir, "openapi.json");
      fs.writeFileSync(file, text);
      const cli = path.join(here, "node_modules", "@redocly", "cli", "bin", "cli.js");
      let output;
      try {
        const result = await promisify(execFile)(process.execPath, [cli, "lint", file, "--config", path.join(here, "redocly.yaml"), "--format", "json"], { cwd: dir, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" } });
        output = result.stdout;
      } catch (e) {
        output = e.stdout;
        assert.ok(output, `redocly lint failed without a report: ${e.stderr ?? e.message}`);
      }
      const report = JSON.parse(output.slice(output.indexOf("{")));
      const problems = report.problems.map((p) => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer}`);
      console.log(`redocly: ${report.totals.errors} errors, ${report.totals.warnings} warnings`);
      assert.equal(problems.length, 0, `redocly lint:\n${problems.join("\n")}`);
    });
  },

  // Real answers, captured from this server, validated against the schemas the document declares
  // for their operation and status: the Files API end to end, a job, model cards, and errors in both
  // shapes (Mistral's on /v1, problem details on /api/v1).
  async conformance() {
    const doc = JSON.parse(await documentText());
    const { check, count } = conformance(doc);
    const baseModel = process.env.ATELIER_BASE_MODEL;
    assert.ok(baseModel, "ATELIER_BASE_MODEL is required");

    const uploaded = await check("post", "/v1/files", await api("POST", "/v1/files", { body: uploadForm("train.jsonl", jsonl(rows(24))) }));
    await check("get", "/v1/files", await api("GET", "/v1/files?page_size=5"));
    await check("get", "/v1/files/{fileId}", await api("GET", `/v1/files/${uploaded.id}`));
    await check("get", "/v1/files/{fileId}/content", await api("GET", `/v1/files/${uploaded.id}/content`));
    await check("get", "/v1/files/{fileId}/url", await api("GET", `/v1/files/${uploaded.id}/url`));
    const invalid = await api("POST", "/v1/files", { body: uploadForm("bad.jsonl", jsonl([chat("q", "a"), "{not json", { messages: [] }])) });
    assert.equal(invalid.status, 422);
    const problems = await check("post", "/v1/files", invalid);
    assert.ok(problems.detail.length >= 2, "a 422 lists every bad line");

    const job = await check("post", "/v1/fine_tuning/jobs", await json("POST", "/v1/fine_tuning/jobs", {
      model: baseModel,
      training_files: [{ file_id: uploaded.id, weight: 1 }],
      hyperparameters: { training_steps: 2, learning_rate: 1e-3, seq_len: 64 },
      auto_start: false,
    }));
    await check("get", "/v1/fine_tuning/jobs/{jobId}", await api("GET", `/v1/fine_tuning/jobs/${job.id}`));
    await check("get", "/v1/fine_tuning/jobs", await api("GET", "/v1/fine_tuning/jobs"));
    const badJob = await json("POST", "/v1/fine_tuning/jobs", { model: baseModel, training_files: [], hyperparameters: { learning_rate: -1 } });
    assert.ok([400, 422].includes(badJob.status), `a job without files: ${badJob.status}`);
    await check("post", "/v1/fine_tuning/jobs", badJob);

    await check("get", "/v1/models", await api("GET", "/v1/models"));
    await check("get", "/v1/models/{modelId}", await api("GET", `/v1/models/${encodeURIComponent(baseModel)}`));
    await check("get", "/api/v1/models/{modelId}", await api("GET", `/api/v1/models/${encodeURIComponent(baseModel)}`));
    await check("get", "/api/v1/registry/models", await api("GET", "/api/v1/registry/models"));
    await check("get", "/api/v1/lineage/{kind}/{id}", await api("GET", `/api/v1/lineage/file/${uploaded.id}?direction=downstream`));
    await check("get", "/api/v1/policies", await api("GET", "/api/v1/policies"));
    await check("get", "/api/v1/locations", await api("GET", "/api/v1/locations"));
    await check("get", "/api/v1/workspaces", await api("GET", "/api/v1/workspaces"));
    await check("get", "/api/v1/keys", await api("GET", "/api/v1/keys"));
    await check("get", "/api/v1/nodes", await api("GET", "/api/v1/nodes"));
    await check("get", "/api/v1/audit", await api("GET", "/api/v1/audit?tail=20"));
    await check("get", "/api/v1/checkpoints", await api("GET", "/api/v1/checkpoints"));
    await check("get", "/health", await fetch(`${baseUrl}/health`));

    // Errors: 404 and 422 in both shapes, and 401.
    await check("get", "/v1/files/{fileId}", await api("GET", "/v1/files/file-does-not-exist"));
    await check("get", "/api/v1/datasets/{datasetId}", await api("GET", "/api/v1/datasets/ds-does-not-exist"));
    const badAlias = await json("PUT", `/api/v1/registry/models/${encodeURIComponent(baseModel)}/aliases/production`, { version: "one" });
    assert.ok([403, 422].includes(badAlias.status), `an alias without a version: ${badAlias.status}`);
    await check("put", "/api/v1/registry/models/{name}/aliases/{alias}", badAlias);
    await check("get", "/v1/files", await fetch(`${baseUrl}/v1/files`));

    const refused = await api("DELETE", `/v1/files/${job.training_files[0]}`);
    assert.equal(refused.status, 409, "a job's training file cannot be deleted");
    await check("delete", "/v1/files/{fileId}", refused);
    const spare = await check("post", "/v1/files", await api("POST", "/v1/files", { body: uploadForm("spare.jsonl", jsonl(rows(4))) }));
    await check("delete", "/v1/files/{fileId}", await api("DELETE", `/v1/files/${spare.id}`));
    console.log(`${count()} answers match the document`);
  },

  // A client generated from the live document (openapi-typescript types, openapi-fetch calls),
  // type-checked with tsc, then run: upload a JSONL file (multipart), list, retrieve, download and
  // delete it, and see the typed 404 after.
  async client() {
    const text = await documentText();
    const { default: openapiTS, astToString } = await import("openapi-typescript");
    const ts = (await import("typescript")).default;
    await withTempDirectory(async (dir) => {
      fs.writeFileSync(path.join(dir, "openapi.json"), text);
      const ast = await openapiTS(pathToFileURL(path.join(dir, "openapi.json")));
      fs.writeFileSync(path.join(dir, "schema.d.ts"), astToString(ast));
      fs.copyFileSync(path.join(here, "openapi-client.ts"), path.join(dir, "client.ts"));
      fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ type: "module" }));
      // The generated client resolves openapi-fetch from the test's own packages.
      fs.symlinkSync(path.join(here, "node_modules"), path.join(dir, "node_modules"), "dir");

      const program = ts.createProgram([path.join(dir, "client.ts")], {
        strict: true,
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.ESNext,
        moduleResolution: ts.ModuleResolutionKind.Bundler,
        lib: ["lib.es2022.d.ts", "lib.dom.d.ts"],
        types: [],
        skipLibCheck: true,
        outDir: dir,
      });
      const emitted = program.emit();
      const diagnostics = ts.getPreEmitDiagnostics(program).concat(emitted.diagnostics);
      const messages = diagnostics.map((d) => `${d.file ? path.basename(d.file.fileName) : ""}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
      assert.equal(messages.length, 0, `the generated client does not type-check:\n${messages.join("\n")}`);
      console.log(`ok: generated ${fs.statSync(path.join(dir, "schema.d.ts")).size} bytes of types; the client type-checks`);

      const { filesLifecycle } = await import(pathToFileURL(path.join(dir, "client.js")).href);
      await filesLifecycle({ baseUrl, apiKey, content: new TextDecoder().decode(jsonl(rows(16))) });
    });
  },
};

await run(scenarios);
