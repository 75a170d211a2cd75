// Prints the token ids of stdin (UTF-8) under the given tiktoken encoding, as JSON.
import { get_encoding } from "tiktoken";
import { readFileSync } from "node:fs";

const encoding = get_encoding(process.argv[2] ?? "o200k_base");
const text = readFileSync(0, "utf8");
const ids = encoding.encode(text, [], []);
process.stdout.write(JSON.stringify(Array.from(ids)));
encoding.free();
