#!/usr/bin/env bash
# Vector search benchmark: Atelier.Vectors side by side with hnswlib on the same generated data.
#
#   bench/vectors.sh            full run: 1M x 128, 200k x 768, 200k x 384 unit norm, table, cache (about an hour on 2 cores)
#   N128=200000 N768=50000 NQ=2000 bench/vectors.sh    a smaller run
#   PARTS=768 OUT=bench/results/vectors-768.md bench/vectors.sh   only some parts (128 768 384 table cache), to another file
#   PARTS="384 cache" OUT=bench/results/vectors-native.md bench/vectors.sh   the unit-norm 384-d part and the cache policies
#   PARTS=scale bench/vectors.sh   a collection larger than memory (bench/vectors-scale.sh; not in the default parts)
#
# The peer is hnswlib compiled here from its headers (Debian's libhnswlib-dev) with g++ -O3 -march=native
# (bench/hnswlib-native); Debian's python3-hnswlib (baseline x86-64 build) runs as a second column unless PY_PEER=0.
#
# The cache part records the re-rank reads of CACHE_QUERIES (50000) queries at CACHE_EF (64) and replays them.
#
# Writes bench/results/vectors.md. Scratch data goes to $VECTORS_BENCH_DIR (default /tmp/atelier-vectors-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
N128=${N128:-1000000}
N768=${N768:-200000}
N384=${N384:-200000}
CACHE_QUERIES=${CACHE_QUERIES:-50000}
CACHE_EF=${CACHE_EF:-64}
PY_PEER=${PY_PEER:-1}
NQ=${NQ:-5000}
M=${M:-16}
EFC=${EFC:-100}
EFS=${EFS:-16,32,64,96,128,192,256,384,512}
TABLE_EFS=${TABLE_EFS:-10,20,40,80}
TABLE_N=${TABLE_N:-$N128}
WORK=${VECTORS_BENCH_DIR:-/tmp/atelier-vectors-bench}
RESULTS=bench/results
PARTS=${PARTS:-128 768 384 table cache}
OUT=${OUT:-$RESULTS/vectors.md}
SRC=bench/Atelier.Vectors.Bench

if ! "$PY" -c 'import hnswlib, numpy' 2>/dev/null; then
  echo "installing python3-hnswlib and python3-numpy" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y python3-hnswlib python3-numpy >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y python3-hnswlib python3-numpy >/dev/null; }
fi

if [ ! -f /usr/include/hnswlib/hnswlib.h ]; then
  echo "installing libhnswlib-dev (hnswlib's headers, for the native peer)" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get install -y libhnswlib-dev >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y libhnswlib-dev >/dev/null; }
fi

mkdir -p "$WORK" "$RESULTS"
# The native peer is compiled for this machine into the scratch directory (never committed).
NATIVE="$WORK/hnswlib_bench"
g++ -O3 -march=native -std=c++17 -pthread bench/hnswlib-native/hnswlib_bench.cpp -o "$NATIVE"
dotnet build -c Release "$SRC" -v q -nologo >/dev/null
BENCH="dotnet $SRC/bin/Release/net10.0/Atelier.Vectors.Bench.dll"

{
  echo "CPU: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p') ($(nproc) cores visible, $(grep -o 'avx512[a-z]*' /proc/cpuinfo | sort -u | head -3 | tr '\n' ' ')...)"
  echo "Memory: $(free -g | awk '/Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo ".NET SDK $(dotnet --version); $(g++ --version | head -1) -O3 -march=native on hnswlib $(dpkg-query -W -f='${Version}' libhnswlib-dev 2>/dev/null || echo '?') headers (Debian libhnswlib-dev); hnswlib $(dpkg-query -W -f='${Version}' python3-hnswlib 2>/dev/null || echo '?') (Debian python3-hnswlib); numpy $("$PY" -c 'import numpy; print(numpy.__version__)')"
  echo "Load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared with other builds)"
  echo "Run started $(date -u '+%Y-%m-%d %H:%M UTC'); PARTS=$PARTS; N128=$N128 N768=$N768 N384=$N384 TABLE_N=$TABLE_N NQ=$NQ M=$M efConstruction=$EFC"
} > "$WORK/machine.txt"

run_ann() {  # name n dim clusters [metric: l2|ip] [unit: unit-norm vectors]
  local name=$1 n=$2 dim=$3 clusters=$4 metric=${5:-l2} unit=${6:-} data="$WORK/data-$1-$2.bin"
  [ -f "$data" ] || "$PY" $SRC/gen_data.py "$data" "$n" "$NQ" "$dim" "$clusters" 1234 $unit
  echo "== load $(cut -d' ' -f1-3 /proc/loadavg): hnswlib native $n x $dim $metric" >&2
  "$NATIVE" "$data" "$M" "$EFC" "$EFS" "$metric" > "$WORK/hnswlib-native-$name.json"
  if [ "$PY_PEER" = 1 ]; then
    echo "== load $(cut -d' ' -f1-3 /proc/loadavg): hnswlib python $n x $dim $metric" >&2
    "$PY" $SRC/run_hnswlib.py "$data" "$M" "$EFC" "$EFS" "$metric" > "$WORK/hnswlib-$name.json"
  fi
  echo "== load $(cut -d' ' -f1-3 /proc/loadavg): atelier $n x $dim $metric" >&2
  $BENCH ann "$data" "$M" "$EFC" "$EFS" "$WORK/atelier-$name.json" "$metric"
  echo "== load $(cut -d' ' -f1-3 /proc/loadavg): $name done" >&2
}

part() { [[ " $PARTS " == *" $1 "* ]]; }

part 128 && run_ann 128 "$N128" 128 1000
part 768 && run_ann 768 "$N768" 768 500
part 384 && run_ann 384 "$N384" 384 500 ip unit

if part table; then
  echo "== int8 collection with its vectors on disk (the former embedding table), cache budget 25% of the vectors" >&2
  TABLE_DATA="$WORK/data-128-$TABLE_N.bin"
  [ -f "$TABLE_DATA" ] || "$PY" $SRC/gen_data.py "$TABLE_DATA" "$TABLE_N" "$NQ" 128 1000
  $BENCH table "$TABLE_DATA" 0.25 "$TABLE_EFS" "$WORK/table.json" "$WORK/nvme0" "$WORK/nvme1"
  rm -rf "$WORK/nvme0" "$WORK/nvme1"
fi

# A collection larger than memory (10M x 384 under a 4 GiB budget): not in the default PARTS, it takes an hour or more.
if part scale; then
  SCALE_OUT=${SCALE_OUT:-$RESULTS/vectors-scale.md} bash bench/vectors-scale.sh
fi

if part cache; then
  echo "== cache hit ratio on a Zipf trace" >&2
  $BENCH cache "$WORK/cache.json"
  # Eviction policies on a recorded re-rank trace: the 384-d unit-norm data of part 384 (generated if missing).
  CACHE_DATA="$WORK/data-384-$N384.bin"
  [ -f "$CACHE_DATA" ] || "$PY" $SRC/gen_data.py "$CACHE_DATA" "$N384" "$NQ" 384 500 1234 unit
  "$PY" $SRC/gen_trace.py "$CACHE_DATA" "$WORK/trace-queries.bin" "$CACHE_QUERIES" 500 1234 unit >&2
  echo "== load $(cut -d' ' -f1-3 /proc/loadavg): cache policies on a recorded re-rank trace" >&2
  $BENCH cachetrace "$CACHE_DATA" "$WORK/trace-queries.bin" "$CACHE_EF" "$WORK/cache-trace.json" "$WORK/cache-collection"
  echo "== load $(cut -d' ' -f1-3 /proc/loadavg): cache done" >&2
fi

echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg); finished $(date -u '+%H:%M UTC')" >> "$WORK/machine.txt"
# Hand-written notes on a results file live next to it (vectors.md: vectors-notes.md).
rm -f "$WORK/notes.md"
[ -f "${OUT%.md}-notes.md" ] && cp "${OUT%.md}-notes.md" "$WORK/notes.md"
"$PY" $SRC/report.py "$WORK" "$OUT" "$WORK/machine.txt"
echo "wrote $OUT" >&2
