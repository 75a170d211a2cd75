#!/usr/bin/env bash
# Data loader benchmark: shuffled, resumable ShardedSequenceLoader over Arrow token shards
# (seq_len 4096) against a sequential ArrowShardReader pass, with 1 and 2 workers, cold and warm
# page cache; the reference LoRA trainer's step time on a tiny model at the same seq_len; the
# supply/demand ratio; and the time the trainer waited in NextAsync during short training runs, with
# latency injected per remote range read (--latency-ms 0,2,10) and, with --modeled-step-ms, a step
# that only sleeps (a fast accelerator's).
# Usage: bench/loader.sh [extra bench args: --shards 4 --windows-per-shard 512 --seq-len 4096 --batch 1 --prefetch 4 --steps 12
#        --latency-ms 0 --modeled-step-ms 0 --runs-only]
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
ratio=$(echo "$out" | grep '^RESULT ratio_' || true)
echo "$ratio" | sed -E 's/RESULT ratio_cold_1w=([0-9.]+) ratio_cold_2w=([0-9.]+) ratio_warm_2w=([0-9.]+)/loader supply \/ trainer demand: \1x (cold, 1 worker), \2x (cold, 2 workers), \3x (warm, 2 workers) (goal > 1x: the trainer never waits)/'
echo "$out" | bench/loader-wait-summary.sh
rm -rf "$work"
