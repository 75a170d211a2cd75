#!/usr/bin/env bash
# Data loader benchmark: shuffled, resumable ShardedSequenceLoader over Arrow token shards
# (seq_len 4096) against a sequential ArrowShardReader pass, with 1 and 2 workers, cold and warm
# page cache; the reference LoRA trainer's step time on a tiny model at the same seq_len; the
# supply/demand ratio; and the time the trainer waited in NextAsync during a short training run.
# Usage: bench/loader.sh [extra bench args: --shards 4 --windows-per-shard 512 --seq-len 4096 --batch 1 --prefetch 4 --steps 12]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-$PWD/artifacts/bench-loader}
rm -rf "$work"; mkdir -p "$work"

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "disk: $(df -h "$work" | awk 'NR==2{print $1, $2, $6}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (Release)"
[ "${NO_BUILD:-0}" = 1 ] || dotnet build bench/Atelier.Loader.Bench -c Release -v q -nologo | tail -1

echo "== loader"
out=$(dotnet bench/Atelier.Loader.Bench/bin/Release/net10.0/Atelier.Loader.Bench.dll --dir "$work/data" "$@")
echo "$out" | grep -v '^RESULT'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== summary"
ratio=$(echo "$out" | grep '^RESULT ratio_')
run=$(echo "$out" | grep '^RESULT run_s')
echo "$ratio" | sed -E 's/RESULT ratio_cold_1w=([0-9.]+) ratio_cold_2w=([0-9.]+) ratio_warm_2w=([0-9.]+)/loader supply \/ trainer demand: \1x (cold, 1 worker), \2x (cold, 2 workers), \3x (warm, 2 workers) (goal > 1x: the trainer never waits)/'
echo "$run" | sed -E 's/RESULT run_s=([0-9.]+) first_ms=([0-9.]+) waited_ms=([0-9.]+) waits=([0-9]+) waited_pct=([0-9.]+)/training run \1 s: first batch \2 ms (start-up), then the trainer waited \3 ms in NextAsync = \5% of the run (\4 waiting calls in all)/'
rm -rf "$work"
