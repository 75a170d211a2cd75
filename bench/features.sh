#!/usr/bin/env bash
# Feature store benchmark: online lookup latency for batches of 100 keys (in process, over HTTP on
# loopback) and the online cache's hit ratio (ConcurrentLfu vs LRU) on seeded Zipf traces.
#
#   bench/features.sh                      full run (about 5-10 minutes on 2 shared cores)
#   KEYS=20000 BATCHES=2000 CACHE_KEYS=100000 CACHE_REQUESTS=400000 bench/features.sh   a smoke run
#   SERVER_URL=http://127.0.0.1:8080 SERVER_KEY=... bench/features.sh   also measure a running server
#
# Over HTTP it always measures an in-process Kestrel host of the online endpoint; when
# src/Atelier.Server maps the feature endpoints (app.MapFeatures()), it also starts the real
# `atelier serve` on a scratch data directory and measures that (auth, error mapping, metrics included).
# Writes bench/results/features.md.
set -euo pipefail
cd "$(dirname "$0")/.."

KEYS=${KEYS:-100000}
BATCHES=${BATCHES:-20000}
CACHE_KEYS=${CACHE_KEYS:-1000000}
CACHE_REQUESTS=${CACHE_REQUESTS:-4000000}
PORT=${BENCH_PORT:-18292}
WORK=${FEATURES_BENCH_DIR:-/tmp/atelier-features-bench-run}
OUT=bench/results/features.md
SRC=bench/Atelier.Features.Bench

rm -rf "$WORK"; mkdir -p "$WORK" bench/results
dotnet build -c Release "$SRC" -v q -nologo >/dev/null
BENCH="dotnet $SRC/bin/Release/net10.0/Atelier.Features.Bench.dll"
R="$WORK/report.md"

{
  echo "# Feature store benchmark"
  echo
  echo "- CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p'), $(nproc) cores visible; memory $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "- .NET SDK $(dotnet --version); disk of the scratch directory: $(df -h "$WORK" | awk 'NR==2{print $1}')"
  echo "- Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared with other builds and benchmarks; tails are inflated by CPU contention)"
  echo "- Run started $(date -u '+%Y-%m-%d %H:%M UTC'); KEYS=$KEYS BATCHES=$BATCHES CACHE_KEYS=$CACHE_KEYS CACHE_REQUESTS=$CACHE_REQUESTS"
  echo
  echo "## Online lookup, batches of 100 keys, in process"
  echo
} > "$R"
echo "== in process" >&2
$BENCH inproc "$R" "$KEYS" "$BATCHES"

{
  echo
  echo "## Online lookup, batches of 100 keys, over HTTP on loopback"
  echo
  echo "One client, keep-alive, HTTP/1.1, \`POST /api/v1/features/views/{name}/online\` with a JSON body of 100 keys; latency is request sent to response body read. Same data and key trace as in process; the cache holds every key."
  echo
  echo "| server | entities | p50 | p90 | p99 | p99.9 | lookups/s | response |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >> "$R"
echo "== HTTP, in-process Kestrel" >&2
$BENCH http-inproc "$R" "$KEYS" "$BATCHES"

serve_pid=""
if [ -z "${SERVER_URL:-}" ] && grep -q 'MapFeatures()' src/Atelier.Server/Hosting/AtelierServer.cs; then
  echo "== HTTP, atelier serve" >&2
  dotnet build src/Atelier.Cli -c Release -v q -nologo >/dev/null
  dotnet src/Atelier.Cli/bin/Release/net10.0/atelier.dll serve --data "$WORK/data" --port "$PORT" > "$WORK/serve.log" 2>&1 &
  serve_pid=$!
  trap '[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true' EXIT
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.2; done
  SERVER_URL="http://127.0.0.1:$PORT"
  SERVER_KEY=$(cat "$WORK/data/admin.key")
fi
if [ -n "${SERVER_URL:-}" ]; then
  $BENCH http-url "$R" "$SERVER_URL" "$SERVER_KEY" "$KEYS" "$BATCHES"
  curl -sf -H "Authorization: Bearer $SERVER_KEY" "$SERVER_URL/metrics" | grep '^atelier_feature_cache' | sed 's/^/    /' >> "$WORK/metrics.txt" || true
else
  echo "| \`atelier serve\` | not measured: the server does not map the feature endpoints yet (add app.MapFeatures()) | | | | | | |" >> "$R"
fi
[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null || true
if [ -s "$WORK/metrics.txt" ]; then
  { echo; echo "The server's /metrics after the run:"; echo; cat "$WORK/metrics.txt"; } >> "$R"
fi

{
  echo
  echo "## Online cache hit ratio: ConcurrentLfu (W-TinyLFU) vs LRU"
  echo
} >> "$R"
echo "== cache hit ratio" >&2
$BENCH cache "$R" "$CACHE_KEYS" "$CACHE_REQUESTS"

echo >> "$R"
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u '+%H:%M UTC')." >> "$R"
[ -f bench/results/features-notes.md ] && { echo; cat bench/results/features-notes.md; } >> "$R"
cp "$R" "$OUT"
echo "wrote $OUT" >&2
