// Prints the token ids of stdin (UTF-8) under the given tiktoken encoding, as JSON.
//   node encode.mjs o200k_base                 stdin is one text; prints [ids...]
//   node encode.mjs o200k_base --batch         stdin is a JSON array of texts; prints [[ids...], ...]
//   node encode.mjs o200k_base --batch --pattern P
//                                              the encoding's ranks with the pre-tokenisation pattern P
//                                              (tekken's pattern over o200k_base's ranks)
import { get_encoding, Tiktoken } from "tiktoken";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

const args = process.argv.slice(2);
const name = args[0] ?? "o200k_base";
const batch = args.includes("--batch");
const patternAt = args.indexOf("--pattern");

let encoding;
if (patternAt >= 0) {
  const ranks = createRequire(import.meta.url)(`tiktoken/encoders/${name}.json`);
  encoding = new Tiktoken(ranks.bpe_ranks, ranks.special_tokens, args[patternAt + 1]);
} else {
  encoding = get_encoding(name);
}

const input = readFileSync(0, "utf8");
const texts = batch ? JSON.parse(input) : [input];
const ids = texts.map((text) => Array.from(encoding.encode(text, [], [])));
process.stdout.write(JSON.stringify(batch ? ids : ids[0]));
encoding.free();
