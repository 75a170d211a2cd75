#!/usr/bin/env bash
# Hot catalog operations on PostgreSQL against SQLite, in one run on this machine: file inserts,
# job transitions, online feature upserts and lookups; operations per second with one client and
# with eight, and p50/p99 latency. PostgreSQL is Debian's, started here in a temporary directory
# (as the postgres user when run as root) with its default durability (fsync on, synchronous
# commit), on a loopback port; SQLite is the embedded catalog (WAL, synchronous=FULL).
# Usage: bench/catalog.sh [operations]   (default 2000 per measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
operations=${1:-2000}
port=${BENCH_PG_PORT:-55433}
work=$(mktemp -d "${TMPDIR:-/tmp}/atelier-bench-catalog.XXXXXX")
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "no PostgreSQL server binaries (apt-get install postgresql)"; exit 1; }

as=""
if [ "$(id -u)" -eq 0 ]; then
  chmod o+x "$work"
  mkdir "$work/pg" && chown postgres:postgres "$work/pg"
  as="setpriv --reuid=postgres --regid=postgres --clear-groups --"
else
  mkdir "$work/pg"
fi
cleanup() {
  $as "$bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== machine"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), cores: $(nproc), memory: $(free -g | awk '/Mem:/{print $2}') GiB"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "postgresql: $("$bin/postgres" --version)"

$as "$bin/initdb" -D "$work/pg/data" -U atelier --auth=trust --locale=C -E UTF8 >/dev/null
$as "$bin/pg_ctl" -D "$work/pg/data" -w -l "$work/pg/log" -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
"$bin/psql" -h 127.0.0.1 -p "$port" -U atelier -d postgres -qc "CREATE DATABASE bench" >/dev/null

echo "== build (Release)"
[ "${NO_BUILD:-0}" = 1 ] || dotnet build bench/Atelier.Catalog.Bench -c Release -v q -nologo | tail -1
mkdir "$work/sqlite"
dotnet bench/Atelier.Catalog.Bench/bin/Release/net10.0/Atelier.Catalog.Bench.dll \
  "Host=127.0.0.1;Port=$port;Username=atelier;Database=bench" "$work/sqlite" "$operations"
