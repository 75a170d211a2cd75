// Sums the outcome counters of every TRX file under a directory and prints
// "N passed, N failed" as the last line. Exits 1 when no test ran or any failed.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";

const root = process.argv[2] ?? "artifacts/test-results";
const files = [];
const walk = (dir) => {
  let entries = [];
  try { entries = readdirSync(dir); } catch { return; }
  for (const name of entries) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith(".trx")) files.push(path);
  }
};
walk(root);

let passed = 0, failed = 0, total = 0;
for (const file of files) {
  const xml = readFileSync(file, "utf8");
  const counters = xml.match(/<Counters\b[^>]*>/);
  if (!counters) continue;
  const attr = (name) => Number((counters[0].match(new RegExp(`\\b${name}="(\\d+)"`)) ?? [0, 0])[1]);
  total += attr("total");
  passed += attr("passed");
  // Errors and timeouts are failures too.
  failed += attr("failed") + attr("error") + attr("timeout") + attr("aborted");
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
