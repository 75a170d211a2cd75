// A client of the Files API generated from Atelier's OpenAPI document: openapi-typescript writes
// ./schema.d.ts from the live document, tsc type-checks this file against it, and
// openapi.e2e.mjs (scenario client) runs it. A path, parameter or member the document gets wrong
// fails either the type check or an assertion here.
import createClient from "openapi-fetch";
import type { paths, components } from "./schema";

type FileObject = components["schemas"]["FileObject"];

function check(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new Error(message);
  }
}

export async function filesLifecycle(options: { baseUrl: string; apiKey: string; content: string }): Promise<void> {
  const client = createClient<paths>({ baseUrl: options.baseUrl, headers: { Authorization: `Bearer ${options.apiKey}` } });

  // Upload: multipart/form-data, as the document's request body says.
  const uploaded = await client.POST("/v1/files", {
    body: { file: options.content, purpose: "fine-tune" },
    bodySerializer(body) {
      const form = new FormData();
      form.append("purpose", body.purpose ?? "fine-tune");
      form.append("file", new Blob([body.file], { type: "application/jsonl" }), "generated-client.jsonl");
      return form;
    },
  });
  check(uploaded.data, `upload failed: ${uploaded.response.status} ${JSON.stringify(uploaded.error)}`);
  const file: FileObject = uploaded.data;
  check(file.object === "file" && file.filename === "generated-client.jsonl", `upload answered ${JSON.stringify(file)}`);
  check(file.bytes === new TextEncoder().encode(options.content).length, `bytes ${file.bytes}`);
  check(file.num_lines === options.content.trim().split("\n").length, `num_lines ${file.num_lines}`);
  console.log(`ok: uploaded ${file.id} (${file.bytes} bytes, ${file.num_lines} lines)`);

  const listed = await client.GET("/v1/files", { params: { query: { page_size: 100, purpose: "fine-tune" } } });
  check(listed.data, `list failed: ${listed.response.status}`);
  check(listed.data.data.some((f) => f.id === file.id), "the list holds the upload");
  console.log(`ok: listed ${listed.data.data.length} files (total ${listed.data.total})`);

  const retrieved = await client.GET("/v1/files/{fileId}", { params: { path: { fileId: file.id } } });
  check(retrieved.data, `retrieve failed: ${retrieved.response.status}`);
  check(retrieved.data.id === file.id && retrieved.data.deleted === false && retrieved.data.sample_type === file.sample_type, `retrieved ${JSON.stringify(retrieved.data)}`);
  console.log(`ok: retrieved ${retrieved.data.id}`);

  const downloaded = await client.GET("/v1/files/{fileId}/content", { params: { path: { fileId: file.id } }, parseAs: "text" });
  check(downloaded.data !== undefined, `download failed: ${downloaded.response.status}`);
  check(downloaded.data === options.content, "the download is the uploaded bytes");
  check(downloaded.response.headers.get("content-type") === "application/octet-stream", `content type ${downloaded.response.headers.get("content-type")}`);
  console.log(`ok: downloaded ${downloaded.data.length} characters, identical`);

  const deleted = await client.DELETE("/v1/files/{fileId}", { params: { path: { fileId: file.id } } });
  check(deleted.data, `delete failed: ${deleted.response.status}`);
  check(deleted.data.deleted === true && deleted.data.id === file.id, `deleted ${JSON.stringify(deleted.data)}`);
  console.log(`ok: deleted ${file.id}`);

  // The typed error: Mistral's shape, as the document's MistralError says.
  const gone = await client.GET("/v1/files/{fileId}", { params: { path: { fileId: file.id } } });
  check(gone.data === undefined && gone.error, "the deleted file is gone");
  check(gone.response.status === 404 && gone.error.object === "error" && gone.error.code === "404", `after delete: ${gone.response.status} ${JSON.stringify(gone.error)}`);
  console.log(`ok: then 404 ${gone.error.type}: ${gone.error.message}`);
}
