#!/usr/bin/env bash
# S3 location benchmark (the S3 part of the cluster benchmarks): put and get MiB/s of whole blobs
# through S3BlobStore on a Ceph RGW started here (eng/ceph-rgw.sh: one bluestore OSD on a sparse
# file), one writer and several, against `dd` writing and reading the same amount on the disk that
# holds the OSD's file, in the same run.
# Usage: bench/cluster-s3.sh [--total-mib 512] [--blob-mib 32] [--concurrency 4] [--part-mib 8]
# Environment: NO_BUILD=1 skips the build. Run under the shared build lock on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
total_mib=512
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [ "${args[$i]}" = --total-mib ]; then total_mib=${args[$((i + 1))]}; fi
done

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== build (Release)"
[ "${NO_BUILD:-0}" = 1 ] || dotnet build bench/Atelier.Storage.Bench -c Release -v q -nologo | tail -1

echo "== Ceph RGW"
started=$(eng/ceph-rgw.sh start --watch-pid $$)
echo "$started"
dir=$(echo "$started" | sed -n 's/^dir=//p')
endpoint=$(echo "$started" | sed -n 's/^endpoint=//p')
credentials=$(echo "$started" | sed -n 's/^credentials=//p')
trap 'eng/ceph-rgw.sh stop "$dir"' EXIT
echo "disk: $(df -h "$dir" | awk 'NR==2{print $1, $2, $6}')"

dd_run() {
  # Writes then reads $total_mib MiB beside the OSD's file; the read drops the page cache first
  # when allowed (root), as the OSD reads through O_DIRECT.
  local file="$dir/dd.bin" out secs w r
  sync
  out=$(dd if=/dev/urandom of="$file" bs=1M count="$total_mib" conv=fdatasync 2>&1 | tail -1)
  secs=$(echo "$out" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
  w=$(awk -v m="$total_mib" -v s="$secs" 'BEGIN{printf "%.1f", m/s}')
  if [ "$(id -u)" -eq 0 ]; then echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; fi
  out=$(dd if="$file" of=/dev/null bs=1M iflag=direct 2>&1 | tail -1)
  secs=$(echo "$out" | sed -E 's/.* copied, ([0-9.]+) s.*/\1/')
  r=$(awk -v m="$total_mib" -v s="$secs" 'BEGIN{printf "%.1f", m/s}')
  rm -f "$file"
  echo "$w $r"
}

echo "== dd: ${total_mib} MiB written (fdatasync) and read (O_DIRECT) on the OSD's disk"
read -r dd_w1 dd_r1 < <(dd_run)
echo "dd before: write $dd_w1 MiB/s, read $dd_r1 MiB/s"

echo "== S3BlobStore on RGW"
out=$(dotnet bench/Atelier.Storage.Bench/bin/Release/net10.0/Atelier.Storage.Bench.dll --endpoint "$endpoint" --credentials "$credentials" "$@")
echo "$out" | grep -v '^RESULT'

read -r dd_w2 dd_r2 < <(dd_run)
echo "dd after: write $dd_w2 MiB/s, read $dd_r2 MiB/s"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
rss=$(for p in $(pgrep -f -- "$dir/ceph.conf"); do ps -o rss= -p "$p"; done | awk '{s+=$1} END{printf "%.0f", s/1024}')
echo "Ceph daemons' resident memory after the run: ${rss} MB"

echo "== summary"
dd_w=$(awk -v a="$dd_w1" -v b="$dd_w2" 'BEGIN{printf "%.1f", (a+b)/2}')
dd_r=$(awk -v a="$dd_r1" -v b="$dd_r2" 'BEGIN{printf "%.1f", (a+b)/2}')
echo "$out" | grep '^RESULT' | while read -r _ writers put get; do
  w=${writers#writers=}; p=${put#put_mibs=}; g=${get#get_mibs=}
  awk -v w="$w" -v p="$p" -v g="$g" -v dw="$dd_w" -v dr="$dd_r" 'BEGIN{printf "%s writer(s): put %.1f MiB/s = %.0f%% of dd write (%.1f), get %.1f MiB/s = %.0f%% of dd read (%.1f)\n", w, p, 100*p/dw, dw, g, 100*g/dr, dr}'
done
