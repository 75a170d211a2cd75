#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with a RADOS Gateway (S3) on loopback, for tests and
# benchmarks: one monitor, one bluestore OSD backed by a sparse file, one radosgw, no systemd,
# no manager, cephx off (everything listens on 127.0.0.1 only). Debian's ceph-mon, ceph-osd,
# radosgw and ceph-common (16.2.15) must be installed; eng/test.sh installs them.
#
#   eng/ceph-rgw.sh start [DIR] [--watch-pid PID]
#       Creates DIR (a new directory under $TMPDIR when not given), starts the cluster there and
#       prints, one per line:  endpoint=http://127.0.0.1:PORT  credentials=DIR/s3.credentials
#       dir=DIR  seconds=N. The credentials file (mode 0600) holds the S3 user's
#       access_key_id and secret_access_key. With --watch-pid, a watcher stops the cluster and
#       removes DIR when PID exits, even if it is killed: a test host that dies leaves nothing.
#   eng/ceph-rgw.sh stop DIR
#       Kills every daemon of the cluster in DIR (and its watcher) and removes DIR.
#
# The daemons run as the invoking user (root included: no --setuser is given, so nothing needs
# the ceph user). Ports are free ones picked at start. Logs are in DIR/log while it runs.
set -euo pipefail

die() { echo "ceph-rgw: $*" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Every process whose command line names this cluster's configuration file (its daemons and its
# watcher), by pid, never by a broad name.
# Never this script itself: the watcher execs it to stop the cluster, keeping its pid.
cluster_pids() {
  local dir=$1
  local pid
  {
    pgrep -f -- "$dir/ceph.conf" || true
    if [ -f "$dir/watcher.pid" ]; then cat "$dir/watcher.pid"; fi
  } | while read -r pid; do
    if [ "$pid" != "$$" ]; then echo "$pid"; fi
  done
}

stop_cluster() {
  local dir=$1
  if [ -d "$dir" ] && [ ! -f "$dir/ceph.conf" ]; then
    die "$dir is not a cluster made by this script (no ceph.conf)"
  fi
  # The daemons are found by their command lines, so they are stopped even when their directory
  # is already gone (a test process's exit sweep may remove it before the watcher runs).
  local pids
  pids=$(cluster_pids "$dir" | sort -u)
  if [ -n "$pids" ]; then
    # SIGKILL at once: the cluster is thrown away with its directory, so a clean shutdown buys nothing.
    kill -KILL $pids 2>/dev/null || true
    local i
    for i in $(seq 1 50); do
      local alive=0 pid
      for pid in $pids; do kill -0 "$pid" 2>/dev/null && alive=1; done
      [ $alive -eq 0 ] && break
      sleep 0.1
    done
  fi
  rm -rf -- "$dir"
  return 0
}

wait_for() {
  # wait_for SECONDS DESCRIPTION COMMAND...: retries COMMAND until it succeeds.
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "ceph-rgw: $what did not happen within ${limit}s; last log lines:" >&2
      tail -n 20 "$dir"/log/*.log >&2 2>/dev/null || true
      return 1
    fi
    sleep 0.2
  done
}

start_cluster() {
  local dir=$1 watch_pid=$2
  for tool in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph ceph-authtool; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install ceph-mon ceph-osd radosgw ceph-common"
  done
  local began=$SECONDS
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ -z "$(ls -A "$dir")" ] || die "$dir is not empty"
  mkdir -p "$dir"/{mon,osd/ceph-0,run,log,rgw}
  # If anything below fails or the script is interrupted, nothing is left running.
  trap 'stop_cluster "$dir"' ERR
  trap 'stop_cluster "$dir"; exit 1' INT TERM

  local fsid mon_port rgw_port
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  mon_port=$(free_port)
  rgw_port=$(free_port)
  cat > "$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
mon initial members = a
public network = 127.0.0.1/32
ms bind ipv6 = false
ms bind msgr1 = false
# Loopback only, thrown away after the run: no cephx.
auth cluster required = none
auth service required = none
auth client required = none
# Without cephx there is no session key, so connections are checked with CRCs; daemons
# default to secure mode towards the monitor, which would refuse them.
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
# One OSD: one copy of everything, and placement groups that fit on it.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.pid
log file = $dir/log/\$name.log
mon cluster log file = $dir/log/cluster.log
log to stderr = false
err to stderr = false
mon data = $dir/mon/\$name
osd data = $dir/osd/\$cluster-\$id
keyring = $dir/keyring
# Small footprint: the OSD's caches are capped instead of sized to a server's memory.
osd objectstore = bluestore
bluestore block path = $dir/osd/\$cluster-\$id/block.file
bluestore block create = true
bluestore block size = 4294967296
bluestore block db create = false
bluestore block wal create = false
bluestore cache autotune = false
bluestore cache size = 67108864
osd memory target = 939524096
bluestore fsck on mount = false
osd op num shards = 1
osd op num threads per shard = 2

[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
rgw enable usage log = false
rgw thread pool size = 32
EOF

  touch "$dir/keyring"
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon --mkfs -i a --monmap "$dir/monmap" -c "$dir/ceph.conf" >/dev/null
  ceph-mon -i a -c "$dir/ceph.conf"
  wait_for 30 "the monitor answering" ceph -c "$dir/ceph.conf" --connect-timeout 2 mon stat

  local osd_uuid osd_id
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  osd_id=$(ceph -c "$dir/ceph.conf" osd new "$osd_uuid")
  [ "$osd_id" = 0 ] || die "expected osd id 0, got $osd_id"
  ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" -c "$dir/ceph.conf" >/dev/null 2>&1 \
    || { tail -n 20 "$dir/log/osd.0.log" >&2; die "ceph-osd --mkfs failed"; }
  ceph-osd -i 0 -c "$dir/ceph.conf"
  wait_for 60 "osd.0 coming up" bash -c "ceph -c '$dir/ceph.conf' osd dump | grep -q '^osd.0 up'"

  radosgw -c "$dir/ceph.conf" -n client.rgw.a
  wait_for 90 "the gateway answering on 127.0.0.1:$rgw_port" \
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$rgw_port/', timeout=2)"

  # The S3 user, with keys made here so that they never pass through a command's output.
  local access secret
  access=$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(20)))')
  secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(30))')
  (umask 077 && printf 'access_key_id = %s\nsecret_access_key = %s\n' "$access" "$secret" > "$dir/s3.credentials")
  chmod 600 "$dir/s3.credentials"
  radosgw-admin -c "$dir/ceph.conf" -n client.admin user create --uid=atelier --display-name=Atelier \
    --access-key="$access" --secret-key="$secret" >/dev/null

  if [ -n "$watch_pid" ]; then
    # The watcher names the configuration file on its command line, so stop finds it like a daemon.
    # It looks for the process in /proc rather than signalling it: kill -0 fails on another user's process.
    nohup bash -c 'conf=$1; pid=$2; script=$3; while [ -d "/proc/$pid" ]; do sleep 1; done; "$script" stop "$(dirname "$conf")"' \
      ceph-rgw-watcher "$dir/ceph.conf" "$watch_pid" "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" \
      >/dev/null 2>&1 < /dev/null &
    echo $! > "$dir/watcher.pid"
  fi
  trap - ERR INT TERM

  echo "endpoint=http://127.0.0.1:$rgw_port"
  echo "credentials=$dir/s3.credentials"
  echo "dir=$dir"
  echo "seconds=$((SECONDS - began))"
}

case "${1:-}" in
  start)
    shift
    dir="" watch_pid=""
    while [ $# -gt 0 ]; do
      case "$1" in
        --watch-pid) watch_pid=$2; shift 2 ;;
        *) dir=$1; shift ;;
      esac
    done
    if [ -z "$dir" ]; then dir=$(mktemp -d "${TMPDIR:-/tmp}/atelier-ceph.XXXXXX"); fi
    start_cluster "$dir" "$watch_pid"
    ;;
  stop)
    [ $# -eq 2 ] || die "usage: $0 stop DIR"
    stop_cluster "$2"
    ;;
  *)
    echo "usage: $0 start [DIR] [--watch-pid PID] | stop DIR" >&2
    exit 2
    ;;
esac
