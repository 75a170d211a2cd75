// Encodes every document of a corpus (documents separated by blank lines) with tiktoken's
// o200k_base on one thread and prints MB/s, as the Atelier tokeniser benchmark does.
import { get_encoding } from "tiktoken";
import { readFileSync } from "node:fs";

const documents = readFileSync(process.argv[2], "utf8").split("\n\n").filter((d) => d.length > 0);
const encoder = new TextEncoder();
let bytes = 0;
for (const d of documents) bytes += encoder.encode(d).length;
const encoding = get_encoding("o200k_base");
for (let i = 0; i < documents.length / 50; i++) encoding.encode(documents[i], [], []);
const cpuBefore = process.cpuUsage();
const start = process.hrtime.bigint();
let tokens = 0;
for (const d of documents) tokens += encoding.encode(d, [], []).length;
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
const cpu = process.cpuUsage(cpuBefore);
const mb = bytes / 1048576;
console.log(`tiktoken 1.0.22 o200k_base (npm, wasm): ${mb.toFixed(1)} MB, ${documents.length} docs, ${tokens} tokens, ${seconds.toFixed(2)} s, ${(mb / seconds).toFixed(2)} MB/s on 1 thread (cpu ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s)`);
encoding.free();
