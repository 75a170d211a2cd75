#!/usr/bin/env bash
# Upload throughput of a large JSONL file through HTTP (POST /v1/files, multipart, as the SDKs
# send it) against raw `dd` write bandwidth to the same disk, in the same run, and the server's
# memory growth and CPU time while it streams. Both part orders: the file part before the purpose
# (the order of the Mistral TypeScript SDK's FormData) and after it (form fields first, as
# httpx-based clients such as the Python SDK send them). The client is curl (about 0.5 CPU-s/GiB).
# Also, just before each upload, the same curl into a discard sink (bench/upload-sink.py): the
# transport alone, no server work, the most this client and loopback can move at that moment.
# Prints, per order: upload MiB/s, dd MiB/s, the ratio (and the share of the transport's rate),
# server CPU-s/GiB, peak RSS growth, and
# the goal verdict (>= 70% of dd, growth < 100 MB); then the CPU-seconds per GiB of each party
# while the upload ran: the server, curl, the rest of the machine at normal priority (kernel
# writeback threads, loopback softirq, and any other job), and niced user time apart (the
# server's own hash and validation threads run at nice 10, so it is counted there too).
# Usage: bench/upload.sh [size_in_MiB]   (default 2048)
# BENCH_PERF=DIR: also record `perf record -a -g` of each measured upload into DIR (with the
# runtime's perf map, so JIT frames are named) and print the top of each profile.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-2048}
work=${BENCH_DIR:-$PWD/artifacts/bench-upload}
port=${BENCH_PORT:-18181}
rm -rf "$work"; mkdir -p "$work/data"

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "disk: $(df -h "$work" | awk 'NR==2{print $1, $2}')"

echo "== build (Release)"
dotnet build src/Atelier.Cli -c Release -v q -nologo | tail -1

echo "== generate ${size_mib} MiB of fine-tune JSONL"
line='{"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Translate to French: The quick brown fox jumps over the lazy dog, and the data never leaves the EU."},{"role":"assistant","content":"Le renard brun rapide saute par-dessus le chien paresseux, et les données ne quittent jamais l UE."}]}'
lines=$(( size_mib * 1048576 / (${#line} + 1) ))
# `yes` ends with SIGPIPE when head has enough; that is expected, not an error.
(yes "$line" || true) | head -n "$lines" > "$work/train.jsonl"
bytes=$(stat -c %s "$work/train.jsonl")
echo "file: $bytes bytes, $lines lines"

measure_dd() { # raw write bandwidth to the same disk, two ways; the faster is the peer
  # Buffered with fdatasync at the end (as the server fsyncs at commit), and direct I/O in 8 MiB
  # blocks (no page cache: the device's own write rate). On this virtio disk either can be the
  # faster one from run to run, so the ratio is taken against whichever was faster just now.
  sync
  local out secs dbytes buffered direct
  out=$(dd if=/dev/zero of="$work/dd.bin" bs=1M count=$(( bytes / 1048576 )) conv=fdatasync 2>&1 | tail -1)
  rm -f "$work/dd.bin"
  echo "dd buffered+fdatasync: $out" >&2
  secs=$(echo "$out" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
  dbytes=$(echo "$out" | awk '{print $1}')
  buffered=$(awk -v b="$dbytes" -v s="$secs" 'BEGIN{printf "%.1f", b/1048576/s}')
  sync
  out=$(dd if=/dev/zero of="$work/dd.bin" bs=8M count=$(( bytes / 8388608 )) oflag=direct conv=fdatasync 2>&1 | tail -1)
  rm -f "$work/dd.bin"
  echo "dd direct: $out" >&2
  secs=$(echo "$out" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
  dbytes=$(echo "$out" | awk '{print $1}')
  direct=$(awk -v b="$dbytes" -v s="$secs" 'BEGIN{printf "%.1f", b/1048576/s}')
  dd_mbs=$(awk -v a="$buffered" -v b="$direct" 'BEGIN{printf "%.1f", (a > b) ? a : b}')
  dd_which=$(awk -v a="$buffered" -v b="$direct" 'BEGIN{print (a > b) ? "buffered" : "direct"}')
  echo "dd: buffered $buffered MiB/s, direct $direct MiB/s; the peer is the $dd_which one" >&2
}

measure_transport() { # the upload's curl, same parts, into a discard sink (bench/upload-sink.py)
  # No server work at all: the client's file reads and the loopback's copies are all that is
  # left, so this is the most any upload through this client and socket could reach right now.
  local sport=$((port + 1)) tt
  python3 bench/upload-sink.py "$sport" > "$work/sink.log" 2>&1 &
  local spid=$!
  for _ in $(seq 1 100); do grep -q ready "$work/sink.log" 2>/dev/null && break; sleep 0.1; done
  tt=$(/usr/bin/time -f '%U %S' -o "$work/sink-curl-cpu" curl -s -o /dev/null -w '%{time_total}' "$@" "http://127.0.0.1:$sport/v1/files")
  wait "$spid"
  sink_mbs=$(awk -v b="$bytes" -v s="$tt" 'BEGIN{printf "%.1f", b/1048576/s}')
  echo "transport: the same curl into a discard sink: $sink_mbs MiB/s in $tt s (curl CPU $(awk '{printf "%.2f", $1 + $2}' "$work/sink-curl-cpu") s; $(grep 'sink:' "$work/sink.log"))" >&2
}

# First start writes the default configuration; then raise the upload limit in it.
dotnet src/Atelier.Cli/bin/Release/net10.0/atelier.dll serve --data "$work/data" --port "$port" > "$work/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
kill $pid; wait $pid 2>/dev/null || true
# Raise the upload limit for the benchmark, keeping the generated defaults.
node -e '
const fs=require("fs"); const p=process.argv[1]; const c=JSON.parse(fs.readFileSync(p));
c.files={...(c.files||{}), max_upload_bytes: Number(process.argv[2])}; fs.writeFileSync(p, JSON.stringify(c,null,2));' "$work/data/atelier.json" $(( bytes * 2 ))
if [ -n "${BENCH_PERF:-}" ]; then export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0; mkdir -p "$BENCH_PERF"; fi
dotnet src/Atelier.Cli/bin/Release/net10.0/atelier.dll serve --data "$work/data" --port "$port" >> "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
key=$(cat "$work/data/admin.key")

kernel_threads_cpu() { # jiffies (user+system) of all kernel threads: the children of kthreadd (PID 2)
  cat /proc/[0-9]*/stat 2>/dev/null | awk '{ # the command may hold spaces: fields counted from the closing parenthesis
    i = index($0, ") "); split(substr($0, i + 2), f, " "); if (f[2] == 2) s += f[12] + f[13] } END { print s + 0 }'
}

upload() { # label order(file-first|purpose-first)
  # Warm the server (JIT up to its optimised tier, pools) with an upload in each part order,
  # as a server that has been up a while is, then sample its RSS while the big one streams. (With
  # one file-first warm-up only, whichever order was measured first paid ~0.3-0.8 CPU-s more than
  # the same order measured second: a first-run cost, not a part-order one.)
  # 256 MiB each: with 64 MiB ones the first measured upload still spent 15% of the server's CPU
  # in the JIT (perf), the second 3%.
  head -c 268435456 "$work/train.jsonl" | head -n -1 > "$work/warm.jsonl"
  curl -sf -H "Authorization: Bearer $key" -F "file=@$work/warm.jsonl" -F "purpose=fine-tune" "http://127.0.0.1:$port/v1/files" > /dev/null
  curl -sf -H "Authorization: Bearer $key" -F "purpose=fine-tune" -F "file=@$work/warm.jsonl" "http://127.0.0.1:$port/v1/files" > /dev/null
  local parts
  if [ "$2" = file-first ]; then
    # The order the Mistral TypeScript SDK sends: the purpose is unknown while the file streams.
    parts=(-F "file=@$work/train.jsonl;type=application/jsonl" -F "purpose=fine-tune")
  else
    parts=(-F "purpose=fine-tune" -F "file=@$work/train.jsonl;type=application/jsonl")
  fi
  # dd just before each upload, so that each ratio compares the disk as it was at that moment;
  # then the same curl into a discard sink: what the client and the loopback alone move.
  measure_dd
  measure_transport "${parts[@]}"
  sleep 1
  local before peak=0 rss
  before=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  # The sampler uses shell builtins only (no awk or sleep process per sample): forking twice every
  # 0.1 s took 5-7% of the two cores from the parties being measured.
  ( exec 3<> <(:)
    while [ -e /proc/$pid/status ]; do
      while read -r k v _; do [ "$k" = VmRSS: ] && { echo "$v"; break; }; done < /proc/$pid/status
      read -r -t 0.1 -u 3 || true
    done ) > "$work/rss.$1" &
  local sampler=$!
  local t
  local cpu0 cpu1 sys0 sys1 perf_pid=""
  if [ -n "${BENCH_PERF:-}" ]; then
    perf record -a -g -F 499 -o "$BENCH_PERF/perf.$1.data" > "$BENCH_PERF/perf.$1.log" 2>&1 &
    perf_pid=$!
    sleep 1
  fi
  # Machine-wide jiffies by kind (user nice system idle iowait irq softirq steal), for the parties' shares.
  sys0=$(awk '/^cpu /{print $2, $3, $4, $5, $6, $7, $8, $9}' /proc/stat)
  kthreads0=$(kernel_threads_cpu)
  cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
  # /usr/bin/time gives curl's own user+system CPU seconds.
  /usr/bin/time -f '%U %S' -o "$work/curl-cpu.$1" curl -s -o "$work/resp.$1" -w '%{time_total}' -H "Authorization: Bearer $key" "${parts[@]}" "http://127.0.0.1:$port/v1/files" > "$work/time.$1"
  t=$(cat "$work/time.$1")
  cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
  sys1=$(awk '/^cpu /{print $2, $3, $4, $5, $6, $7, $8, $9}' /proc/stat)
  kthreads1=$(kernel_threads_cpu)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; fi
  kill $sampler 2>/dev/null || true
  peak=$(sort -n "$work/rss.$1" | tail -1)
  grep -q '"object":"file"' "$work/resp.$1" || { echo "upload failed: $(head -c 500 "$work/resp.$1")"; exit 1; }
  local mbs ratio growth cpu cpu_gib verdict
  mbs=$(awk -v b="$bytes" -v s="$t" 'BEGIN{printf "%.1f", b/1048576/s}')
  ratio=$(awk -v a="$mbs" -v d="$dd_mbs" 'BEGIN{printf "%.0f", 100*a/d}')
  local of_transport
  of_transport=$(awk -v a="$mbs" -v d="$sink_mbs" 'BEGIN{printf "%.0f", 100*a/d}')
  growth=$(awk -v p="$peak" -v b="$before" 'BEGIN{printf "%.1f", (p-b)/1024}')
  cpu=$(awk -v c=$((cpu1 - cpu0)) -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", c/hz}')
  cpu_gib=$(awk -v c="$cpu" -v b="$bytes" 'BEGIN{printf "%.2f", c/(b/1073741824)}')
  local ratio_ok memory_ok
  ratio_ok=$(awk -v r="$ratio" 'BEGIN{print (r >= 70) ? "yes" : "no"}')
  memory_ok=$(awk -v g="$growth" 'BEGIN{print (g * 1048576 < 100000000) ? "yes" : "no"}')
  if [ "$ratio_ok" = yes ] && [ "$memory_ok" = yes ]; then verdict="MET"; else verdict="NOT MET"; fi
  verdict="$verdict (>= 70% of dd: $ratio_ok, growth < 100 MB: $memory_ok)"
  printf '%-14s %8.1f MiB/s  dd %6.1f MiB/s  %4s%% of dd  (%s%% of the %s MiB/s transport)  %6.2f s  server CPU %5.2f s = %4.2f CPU-s/GiB  RSS before %6.1f MiB, peak %6.1f MiB, growth %6.1f MiB  goal: %s\n' \
    "$1" "$mbs" "$dd_mbs" "$ratio" "$of_transport" "$sink_mbs" "$t" "$cpu" "$cpu_gib" "$(awk -v b="$before" 'BEGIN{print b/1024}')" "$(awk -v p="$peak" 'BEGIN{print p/1024}')" "$growth" "$verdict"
  # Per party, CPU-s per GiB: the server and curl measured on themselves (user+system, as the
  # kernel charges them: their system calls, and loopback softirq work done in their context);
  # kernel threads (writeback, block completions, ksoftirqd, jbd2) summed over PPid 2; "others" is
  # the rest of the machine's busy time: the bench's own sampler, and other sessions' jobs (their
  # niced user time shown apart). The budget is cores x wall; "idle" is what nobody used.
  awk -v s0="$sys0" -v s1="$sys1" -v server="$cpu" -v curlcpu="$(awk '{print $1 + $2}' "$work/curl-cpu.$1")" \
      -v k0="$kthreads0" -v k1="$kthreads1" \
      -v hz="$(getconf CLK_TCK)" -v gib="$(awk -v b="$bytes" 'BEGIN{print b/1073741824}')" -v wall="$t" -v cores="$(nproc)" 'BEGIN{
    split(s0, a, " "); split(s1, b, " ");
    for (i = 1; i <= 8; i++) d[i] = (b[i] - a[i]) / hz;
    busy = d[1] + d[2] + d[3] + d[6] + d[7];
    kt = (k1 - k0) / hz;
    printf "  CPU-s/GiB: server %.2f, curl %.2f, kernel threads %.2f, others %.2f (of which niced user time %.2f); machine busy %.2f, idle %.2f, of %.2f (%d cores x %.2f s); softirq %.2f, iowait %.2f machine-wide\n",
      server / gib, curlcpu / gib, kt / gib, (busy - server - curlcpu - kt) / gib, d[2] / gib,
      busy / gib, d[4] / gib, cores * wall / gib, cores, wall, d[7] / gib, d[5] / gib }'
  local sig blob blob_sha
  sig=$(sed -E 's/.*"signature":"([0-9a-f]+)".*/\1/' "$work/resp.$1")
  blob=$(find "$work/data" -type f -size "${bytes}c" -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)
  blob_sha=$(sha256sum "$blob" | cut -c1-64)
  echo "  SHA-256: source ${src_sha:0:8}...${src_sha: -4}, receipt $([ "$sig" = "$src_sha" ] && echo same || echo "DIFFERS ($sig)"), stored blob read back $([ "$blob_sha" = "$src_sha" ] && echo same || echo "DIFFERS ($blob_sha)")"
  if [ -n "${BENCH_PERF:-}" ]; then
    perf report -i "$BENCH_PERF/perf.$1.data" --no-children --sort comm,dso -g none --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25 > "$BENCH_PERF/comm-dso.$1.txt" || true
    perf report -i "$BENCH_PERF/perf.$1.data" --no-children --sort comm,symbol --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -60 > "$BENCH_PERF/symbols.$1.txt" || true
    echo "  perf (comm, dso):"; sed 's/^/    /' "$BENCH_PERF/comm-dso.$1.txt"
  fi
}

# The stored bytes are checked after each upload, outside the timed part: the receipt's SHA-256
# (the server hashes what it writes) and the blob read back from disk against the source's.
src_sha=$(sha256sum "$work/train.jsonl" | cut -c1-64)

echo "== results (dd measured just before each upload, same size, same disk; buffered+fdatasync and direct I/O, the faster is the peer)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# Both: streamed, hashed (SHA-256), validated line by line against Mistral's rules, fsynced, renamed.
upload file-first file-first        # as the TypeScript SDK sends it: both rule sets judged in one pass until the purpose arrives
upload purpose-first purpose-first  # purpose part first (form fields before files): only the fine-tune rules
kill $pid; wait $pid 2>/dev/null || true
rm -rf "$work"
