#!/usr/bin/env bash
# The cluster benchmarks of issue 16 in one run, with their summary lines at the end:
#   1. bench/catalog.sh: catalog operations per second and p99 on PostgreSQL against SQLite;
#   2. bench/cluster-s3.sh: S3 put/get MiB/s through S3BlobStore on a Ceph RGW against dd;
#   3. the loader (bench/loader.sh --runs-only): how long the trainer waits for data, as a share of
#      its step time, with 0, 2 and 10 ms injected per remote range read (a shard on another rack
#      or in an object store), with the reference LoRA trainer's real step on a tiny model and a
#      modeled 10 ms step (a fast accelerator's); goal under 5%.
# Usage: bench/cluster.sh   (run it under the shared lock on a shared machine:
#        flock -o /tmp/atelier-build.lock bench/cluster.sh)
# Environment: NO_BUILD=1 skips the builds; CATALOG_OPS (2000), S3_TOTAL_MIB (256), LOADER_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp -d "${TMPDIR:-/tmp}/atelier-bench-cluster.XXXXXX")
trap 'rm -rf "$log"' EXIT

echo "== machine"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "disk: $(df -h . | awk 'NR==2{print $1, $2, $6}')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ "${NO_BUILD:-0}" != 1 ]; then
  echo "== build (Release)"
  for project in Atelier.Catalog.Bench Atelier.Storage.Bench Atelier.Loader.Bench; do
    dotnet build "bench/$project" -c Release -v q -nologo | tail -1
  done
fi

echo "== 1. catalog: PostgreSQL against SQLite"
NO_BUILD=1 bench/catalog.sh "${CATALOG_OPS:-2000}" | tee "$log/catalog"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 2. S3 on Ceph RGW against dd"
NO_BUILD=1 bench/cluster-s3.sh --total-mib "${S3_TOTAL_MIB:-256}" | tee "$log/s3"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "== 3. loader: trainer wait with latency injected per remote read"
# shellcheck disable=SC2086 # LOADER_ARGS is a list of arguments.
NO_BUILD=1 bench/loader.sh --runs-only --latency-ms 0,2,10 --modeled-step-ms 10 --steps 16 ${LOADER_ARGS:-} | tee "$log/loader"

echo "== summary"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# Catalog: each operation and client count, PostgreSQL's ops/s and p99 next to SQLite's.
awk '
  $0 ~ / (postgresql|sqlite) +[0-9]+ +[0-9]+ / {
    n = NF; p99 = $n; p50 = $(n-1); ops = $(n-2); clients = $(n-3); provider = $(n-4)
    op = $1; for (i = 2; i < n - 4; i++) op = op " " $i
    key = op " / " clients " client(s)"
    if (!(key in seen)) { seen[key] = 1; order[++count] = key }
    rate[key, provider] = ops; tail[key, provider] = p99
  }
  END {
    for (i = 1; i <= count; i++) {
      k = order[i]
      printf "catalog %s: postgresql %s ops/s (p99 %s ms), sqlite %s ops/s (p99 %s ms), postgresql/sqlite %.2fx\n",
        k, rate[k, "postgresql"], tail[k, "postgresql"], rate[k, "sqlite"], tail[k, "sqlite"],
        (rate[k, "sqlite"] > 0 ? rate[k, "postgresql"] / rate[k, "sqlite"] : 0)
    }
  }' "$log/catalog"
sed -n '/^== summary/,$p' "$log/s3" | grep -v '^==' | sed 's/^/S3 on Ceph RGW, /'
sed -n '/^== summary/,$p' "$log/loader" | grep '^loader wait'
