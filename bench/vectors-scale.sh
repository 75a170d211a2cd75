#!/usr/bin/env bash
# The scale part of bench/vectors.sh (issue 14, part 3b): a collection larger than memory.
#
#   PARTS=scale bench/vectors.sh                       10M x 384, 4 GiB budget, 2 directories (an hour or more on 2 cores, ~55 GB of disk)
#   PARTS=scale SCALE_N=1000000 bench/vectors.sh       a smaller run
#   bench/vectors-scale.sh                             the same, run on its own
# On a machine shared with other jobs, ATELIER_BUILD_LOCK=/path/to/lockfile makes it take that lock (flock) for the
# search (and for the build unless SCALE_BUILD_LOCK=0, which runs the build at nice 19 outside the lock so that
# other builds go first: its time is then inflated); a caller already holding the lock sets SCALE_LOCKED=1.
# Without ATELIER_BUILD_LOCK no lock is taken and no lock file is left behind.
#
# Generates SCALE_N x 384 seeded vectors and exact ground truth for SCALE_NQ queries (streamed: the data never has
# to fit in memory). SCALE_GEN=embed (default, gen_embed.py): embedding-like unit-norm vectors (topics > subtopics >
# points on a low-dimensional local manifold), whose local intrinsic dimensionality and neighbour contrast are
# measured and printed; SCALE_GEN=clusters: gen_scale.py's 10000 gaussian islands of the first runs. Then builds an int8 + PQ collection over two segment
# directories through the collection store (log, snapshot, saved graph), drops the page cache, then opens
# and searches it one query at a time in a fresh process inside a memory cgroup limited to the budget (so
# the page cache counts too), and prints build time, open time, resident memory, recall@10 and latency.
# Scratch goes to $SCALE_DIR (default /work/scratch-vec, not /tmp: 15 GB of data at 10M) and is deleted
# at the end unless SCALE_KEEP=1. Writes $SCALE_OUT (default bench/results/vectors-scale.md).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SCALE_N=${SCALE_N:-10000000}
SCALE_NQ=${SCALE_NQ:-1000}
SCALE_GEN=${SCALE_GEN:-embed}
SCALE_CLUSTERS=${SCALE_CLUSTERS:-$(( SCALE_N / 1000 ))}
SCALE_BUILD_LOCK=${SCALE_BUILD_LOCK:-1}
SCALE_PQ=${SCALE_PQ:-96}
SCALE_M=${SCALE_M:-16}
SCALE_EFC=${SCALE_EFC:-100}
SCALE_SHARDS=${SCALE_SHARDS:-2}
SCALE_BUDGET=${SCALE_BUDGET:-$((4 << 30))}
SCALE_EFS=${SCALE_EFS:-64,128,256}
SCALE_RERANK=${SCALE_RERANK:-4}
SCALE_DIR=${SCALE_DIR:-/work/scratch-vec}
SCALE_OUT=${SCALE_OUT:-bench/results/vectors-scale.md}
SRC=bench/Atelier.Vectors.Bench
PY=/usr/bin/python3
CGROUP=/sys/fs/cgroup/memory/atelier-bench

data="$SCALE_DIR/data-$SCALE_GEN-$SCALE_N"
store="$SCALE_DIR/store-$SCALE_N"
dirs=("$SCALE_DIR/drive0-$SCALE_N" "$SCALE_DIR/drive1-$SCALE_N")
mkdir -p "$SCALE_DIR" "$(dirname "$SCALE_OUT")"
"$PY" -c 'import numpy' 2>/dev/null || apt-get install -y python3-numpy >/dev/null
# numpy's matrix products (the ground truth) on OpenBLAS, not the reference BLAS.
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || apt-get install -y libopenblas0-pthread >/dev/null
if [ ! -f "$data/meta.json" ]; then
  # Generation needs no lock (it is not measured).
  if [ "$SCALE_GEN" = clusters ]; then
    nice -n 19 "$PY" $SRC/gen_scale.py "$data" "$SCALE_N" "$SCALE_NQ" 384 "$SCALE_CLUSTERS" | tail -1
  else
    nice -n 19 "$PY" $SRC/gen_embed.py "$data" "$SCALE_N" "$SCALE_NQ" 384 | tail -1
  fi
fi

locked() {  # runs its command under the shared build lock, if one is named and the caller does not already hold it
  if [ -n "${SCALE_LOCKED:-}" ] || [ -z "${ATELIER_BUILD_LOCK:-}" ]; then "$@"; else flock -o "$ATELIER_BUILD_LOCK" "$@"; fi
}
[ -n "${SCALE_NO_BUILD:-}" ] || locked dotnet build -c Release "$SRC" -v q -nologo >/dev/null  # SCALE_NO_BUILD=1: already built
BENCH="dotnet $SRC/bin/Release/net10.0/Atelier.Vectors.Bench.dll"
log() { echo "$*" | tee -a "$SCALE_OUT"; }

: > "$SCALE_OUT"
log "# Vectors at scale: $SCALE_N x 384, budget $((SCALE_BUDGET >> 20)) MiB, ${#dirs[@]} directories"
log ""
log "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') ($(nproc) cores); memory $(free -g | awk '/Mem:/ {print $2}') GiB; disk $(df -h "$SCALE_DIR" | awk 'NR==2 {print $2" ("$4" free)"}'); .NET $(dotnet --version)"
log "Started $(date -u '+%Y-%m-%d %H:%M UTC'); N=$SCALE_N NQ=$SCALE_NQ data=$SCALE_GEN PQ=$SCALE_PQ M=$SCALE_M efC=$SCALE_EFC shards=$SCALE_SHARDS efs=$SCALE_EFS rerank=${SCALE_RERANK}k build lock=$SCALE_BUILD_LOCK"
log "Anchor (published, not run here): DiskANN, 95% recall@1 under 3 ms mean latency at a billion points, 64 GB RAM, 16 cores."
log ""
log '```'

log "Data: $(cat "$data/meta.json")"
log "$("$PY" $SRC/data_line.py "$data/meta.json")"
if [ ! -f "$store/catalog.json" ]; then
  # base.f32 is dropped before the compaction (1): data, log, segments and snapshot would not fit together at 10M.
  if [ "$SCALE_BUILD_LOCK" = 0 ]; then
    log "build: at nice 19 outside the shared lock (other builds and benchmarks go first: the build time below is inflated by them); load at start $(cut -d' ' -f1-3 /proc/loadavg)"
    nice -n 19 $BENCH scale-build "$data" "$store" "$SCALE_PQ" "$SCALE_M" "$SCALE_EFC" "$SCALE_SHARDS" 1 "${dirs[@]}" | tee -a "$SCALE_OUT"
  else
    log "build: ${ATELIER_BUILD_LOCK:+in the shared lock; }load at start $(cut -d' ' -f1-3 /proc/loadavg)"
    locked $BENCH scale-build "$data" "$store" "$SCALE_PQ" "$SCALE_M" "$SCALE_EFC" "$SCALE_SHARDS" 1 "${dirs[@]}" | tee -a "$SCALE_OUT"
  fi
  log "build: load at end $(cut -d' ' -f1-3 /proc/loadavg); on disk: store $(du -sh "$store" | cut -f1), segments $(du -shc "${dirs[@]}" | tail -1 | cut -f1)"
fi

search() {  # label, then the command runs in the cgroup when one was made; under the shared lock (a quiet machine)
  locked bash -c "sync; echo 3 > /proc/sys/vm/drop_caches || echo '(could not drop the page cache)'
    echo \"search ($1): load at start \$(cut -d' ' -f1-3 /proc/loadavg)\"
    $2 $BENCH scale-search '$data' '$store' $SCALE_BUDGET $SCALE_EFS $SCALE_RERANK '$SCALE_DIR/search-$SCALE_N.json' ${dirs[*]}
    echo \"search ($1): load at end \$(cut -d' ' -f1-3 /proc/loadavg)\"" | tee -a "$SCALE_OUT"
}

if mkdir -p "$CGROUP" 2>/dev/null && echo "$SCALE_BUDGET" > "$CGROUP/memory.limit_in_bytes"; then
  echo 0 > "$CGROUP/memory.max_usage_in_bytes" || true
  search "in a memory cgroup limited to $((SCALE_BUDGET >> 20)) MiB, page cache included" "echo \$\$ > $CGROUP/cgroup.procs &&"
  log "cgroup: peak usage $(( $(cat $CGROUP/memory.max_usage_in_bytes) >> 20 )) MiB, limit hits (failcnt) $(cat $CGROUP/memory.failcnt)"
  rmdir "$CGROUP" || true
else
  search "no memory cgroup available: the budget is the collection's own accounting only" ""
fi

log '```'
log "Finished $(date -u '+%H:%M UTC')"
if [ "${SCALE_KEEP:-0}" != 1 ]; then rm -rf "$data" "$store" "${dirs[@]}"; fi
