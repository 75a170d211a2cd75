#!/usr/bin/env bash
# Data pipeline benchmark: generates a multi-language corpus, then measures, in the same run,
#   1. tokenisation alone (o200k_base, one thread): Atelier vs the tiktoken npm package (same token count checked by eye),
#   2. the whole dataset build (normalise, exact + near dedup, quality scores, tokenise, pack, write),
# printing MB/s (wall and per CPU-second) and peak memory.
# Usage: bench/data.sh [SIZE_MB]   (default 1024)
set -euo pipefail
SIZE_MB="${1:-1024}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$ROOT/bench/results/tmp"
BIN="$ROOT/bench/Atelier.Data.Bench/bin/Release/net10.0/Atelier.Data.Bench.dll"
mkdir -p "$WORK"

dotnet build -c Release "$ROOT/bench/Atelier.Data.Bench" -v quiet -nologo > "$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
if [ ! -d "$ROOT/bench/js/node_modules/tiktoken" ]; then
  (cd "$ROOT/bench/js" && npm ci --no-audit --no-fund > /dev/null)
fi

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores visible"
echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dotnet $(dotnet --version), node $(node --version)"

CORPUS="$WORK/corpus-${SIZE_MB}mb.txt"
if [ ! -f "$CORPUS" ]; then
  dotnet "$BIN" gen "$CORPUS" "$SIZE_MB"
fi

echo "== tokenisation alone, one thread"
dotnet "$BIN" tokenize "$CORPUS"
node "$ROOT/bench/js/tiktoken-bench.mjs" "$CORPUS"

echo "== whole pipeline ($(nproc) cores)"
rm -rf "$WORK/dataset" "$WORK/dataset.partial"
if [ -x /usr/bin/time ]; then
  /usr/bin/time -f "  process peak RSS (time -v): %M KB, wall %e s, user %U s, sys %S s" dotnet "$BIN" pipeline "$CORPUS" "$WORK/dataset"
else
  dotnet "$BIN" pipeline "$CORPUS" "$WORK/dataset"
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
rm -rf "$WORK/dataset"
