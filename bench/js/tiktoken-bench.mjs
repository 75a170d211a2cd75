// Encodes every document of a corpus (documents separated by blank lines) with tiktoken's
// o200k_base on one thread, reading ~64 MB chunks as the Atelier benchmark does; only encoding is timed.
import { get_encoding } from "tiktoken";
import { openSync, readSync } from "node:fs";

const CHUNK = 64 << 20;
const fd = openSync(process.argv[2], "r");
const buffer = Buffer.alloc(CHUNK + (1 << 20));
const decoder = new TextDecoder("utf-8");
const encoding = get_encoding("o200k_base");
let carried = 0;
let bytes = 0, tokens = 0, docs = 0, seconds = 0, cpuSeconds = 0;
let warm = false;
const separator = Buffer.from("\n\n");
for (;;) {
  let read = 0;
  while (read < CHUNK) {
    const n = readSync(fd, buffer, carried + read, CHUNK - read, null);
    if (n === 0) break;
    read += n;
  }
  const length = carried + read;
  if (length === 0) break;
  const last = read < CHUNK;
  let cut = last ? length : buffer.subarray(0, length).lastIndexOf(separator);
  if (cut < 0) cut = length;
  const documents = decoder.decode(buffer.subarray(0, cut)).split("\n\n").filter((d) => d.length > 0);
  if (!warm) {
    for (let i = 0; i < documents.length / 50; i++) encoding.encode(documents[i], [], []);
    warm = true;
  }
  const cpuBefore = process.cpuUsage();
  const start = process.hrtime.bigint();
  for (const d of documents) tokens += encoding.encode(d, [], []).length;
  seconds += Number(process.hrtime.bigint() - start) / 1e9;
  const cpu = process.cpuUsage(cpuBefore);
  cpuSeconds += (cpu.user + cpu.system) / 1e6;
  for (const d of documents) bytes += Buffer.byteLength(d, "utf8");
  docs += documents.length;
  buffer.copy(buffer, 0, cut, length);
  carried = length - cut;
  if (last) break;
}
const mb = bytes / 1048576;
console.log(`tiktoken 1.0.22 o200k_base (npm, wasm): ${mb.toFixed(1)} MB, ${docs} docs, ${tokens} tokens, ${seconds.toFixed(2)} s wall, ${cpuSeconds.toFixed(2)} s cpu: ${(mb / seconds).toFixed(2)} MB/s wall, ${(mb / cpuSeconds).toFixed(2)} MB/s per cpu-second`);
encoding.free();
