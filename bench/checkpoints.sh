#!/usr/bin/env bash
# Checkpoint store benchmark: persist throughput of a ~1.4 GiB checkpoint against raw `dd` write
# bandwidth to the same disk in the same run, training stall per checkpoint against a simulated
# step time, dedup ratio across successive checkpoints where only adapters and optimiser state
# change, and cold restore time (every chunk hash-verified).
# Usage: bench/checkpoints.sh [extra bench args: --checkpoints 3 --steps-between 5 --step-ms 1000 --chunk-mib 4
#                              --write-concurrency 4 --commit-concurrency 8]
# Environment: NO_BUILD=1 skips the build; BENCH_DLL=path runs another build of the driver (e.g. a
# copy of an earlier commit's bin/ folder, for a before/after in the same conditions).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${BENCH_DIR:-$PWD/artifacts/bench-checkpoints}
base_mib=1024
adapter_mib=128
rm -rf "$work"; mkdir -p "$work"

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "disk: $(df -h "$work" | awk 'NR==2{print $1, $2, $6}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (Release)"
[ "${NO_BUILD:-0}" = 1 ] || dotnet build bench/Atelier.Training.Bench -c Release -v q -nologo | tail -1

total_mib=$(( base_mib + 3 * adapter_mib ))
dd_run() {
  sync
  local out
  out=$(dd if=/dev/zero of="$work/dd.bin" bs=1M count="$total_mib" conv=fdatasync 2>&1 | tail -1)
  rm -f "$work/dd.bin"
  echo "$out" >&2
  local secs bytes
  secs=$(echo "$out" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
  bytes=$(echo "$out" | awk '{print $1}')
  awk -v b="$bytes" -v s="$secs" 'BEGIN{printf "%.1f", b/1048576/s}'
}

echo "== dd: raw write bandwidth to the same disk, ${total_mib} MiB, fdatasync at the end"
dd_before=$(dd_run)
echo "dd before: $dd_before MiB/s"

echo "== checkpoint store"
out=$(dotnet "${BENCH_DLL:-bench/Atelier.Training.Bench/bin/Release/net10.0/Atelier.Training.Bench.dll}" --dir "$work/store" --base-mib "$base_mib" --adapter-mib "$adapter_mib" "$@")
echo "$out" | grep -v '^RESULT'
rm -rf "$work/store"

echo "== dd again (the disk's bandwidth can drift on a shared machine)"
dd_after=$(dd_run)
echo "dd after: $dd_after MiB/s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

persist=$(echo "$out" | sed -n -E 's/^RESULT persist_mibs=([0-9.]+).*/\1/p')
stall_line=$(echo "$out" | grep '^RESULT stall_sync_ms')
restore_line=$(echo "$out" | grep '^RESULT restore_s')
dd_mean=$(awk -v a="$dd_before" -v b="$dd_after" 'BEGIN{printf "%.1f", (a+b)/2}')
echo "== summary"
awk -v p="$persist" -v d="$dd_mean" 'BEGIN{printf "persist %.1f MiB/s vs dd %.1f MiB/s (mean of before/after) = %.0f%% (goal >= 80%%)\n", p, d, 100*p/d}'
echo "$stall_line" | sed -E 's/RESULT stall_sync_ms=([0-9.]+) stall_sync_pct=([0-9.]+) stall_overlap_ms=([0-9.]+) stall_overlap_pct=([0-9.]+) dedup_steady=([0-9.]+) dedup_run=([0-9.]+)/stall per checkpoint: SaveAsync \1 ms = \2% of a step, BeginSaveAsync (copy overlapped) \3 ms = \4% (goal < 5%)\ndedup \5x across successive checkpoints, \6x over the run/'
echo "$restore_line" | sed -E 's/RESULT restore_s=([0-9.]+) restore_mibs=([0-9.]+) identical=(.*)/restore \1 s (\2 MiB\/s, cold, verified), bit-identical: \3/'
