#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with a RADOS Gateway, the S3 server Strata's tests use.
#
#   scripts/rgw.sh start DIR PORT   start mon + memstore OSD + radosgw on 127.0.0.1:PORT, all state
#                                   in DIR; prints endpoint=, region=, access_key=, secret_key= lines
#   scripts/rgw.sh stop DIR         kill every daemon started from DIR and drop its data; safe to
#                                   call twice and on a DIR that never started
#
# Nothing outside DIR is touched: no systemd, no /etc/ceph, no /var/lib/ceph. The cluster has its
# own fsid and monitor port, so several instances can run side by side with different DIR/PORT.
# There is no ceph-mgr: RGW needs only the monitor and one OSD; a mgr would add its Python modules'
# memory and CPU on a two-core machine for nothing the tests use. Start-up takes about 1.5 s.
#
# Environment:
#   RGW_MEMSTORE_GIB       capacity of the in-memory OSD in GiB (default 6). Memory is only used for
#                          the bytes stored, but writes fail once the OSD is 95% full.
#   RGW_START_TIMEOUT      seconds to wait for the gateway to answer (default 120)
#   RGW_ACCESS_KEY, RGW_SECRET_KEY   keys of the S3 test user (fixed test defaults)
#   RGW_OWNER_PID          if set, a watchdog stops the cluster once that process has exited, so a
#                          killed test run leaves no daemons behind
set -euo pipefail

readonly SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
readonly REGION="us-east-1"   # RGW's default zonegroup accepts any SigV4 region; use the SDK default.
readonly TEST_UID="strata-test"
readonly ACCESS_KEY="${RGW_ACCESS_KEY:-STRATATESTACCESSKEY0}"
readonly SECRET_KEY="${RGW_SECRET_KEY:-strata-test-secret-key-do-not-use-in-production}"
readonly MEMSTORE_GIB="${RGW_MEMSTORE_GIB:-6}"
readonly START_TIMEOUT="${RGW_START_TIMEOUT:-120}"
# Daemons started by this script, in start order; stop kills them in reverse.
readonly DAEMONS=(mon.a osd.0 client.rgw.gw)

die() {
  echo "rgw.sh: $*" >&2
  exit 1
}

usage() {
  echo "usage: $0 start DIR PORT | stop DIR" >&2
  exit 2
}

require_binaries() {
  local missing=() bin
  for bin in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool python3; do
    command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
  done
  if [[ ${#missing[@]} -gt 0 ]]; then
    die "missing ${missing[*]}: run scripts/install-deps.sh (as root)"
  fi
}

# A TCP port nobody listens on right now, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# True when PID is alive and was started from DIR (a daemon reading DIR/ceph.conf, or the watchdog
# with DIR as an argument), so a recycled pid or another instance's process is never killed.
owned_pid() {
  local pid="$1" dir="$2"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [[ -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -e "$dir/ceph.conf" -e " $dir "
}

# Prints the last lines of a daemon's log and of its captured stderr, for failure reports.
log_tail() {
  local dir="$1" name="$2" f
  for f in "$dir/log/$name.log" "$dir/log/$name.stderr"; do
    if [[ -s "$f" ]]; then
      echo "--- last lines of $f ---" >&2
      tail -n 25 "$f" >&2
    fi
  done
}

fail_start() {
  local dir="$1" name="$2"
  shift 2
  echo "rgw.sh: $*" >&2
  log_tail "$dir" "$name"
  cmd_stop "$dir" >/dev/null 2>&1 || true
  exit 1
}

write_conf() {
  local dir="$1" port="$2" mon_port="$3" fsid="$4" memstore_bytes="$5"
  cat >"$dir/ceph.conf" <<EOF
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
cluster addr = 127.0.0.1
# One process tree on loopback, torn down after the tests: no cephx.
auth cluster required = none
auth service required = none
auth client required = none
# msgr2 only, so each instance needs just one monitor port.
ms bind msgr1 = false
ms bind msgr2 = true
# Daemons such as radosgw default to "secure" connections to the monitor, which needs cephx.
ms mon client mode = crc
run dir = $dir/run
admin socket = $dir/run/\$name.asok
pid file = $dir/run/\$name.ceph-pid
log file = $dir/log/\$name.log
keyring = $dir/keyring
mon data = $dir/mon/\$name
osd data = $dir/osd/\$name
rgw data = $dir/rgw/\$name
# A single OSD: pools of size 1 and placement across OSDs, not hosts.
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
# RGW creates about eight pools; eight PGs each keep the OSD's thread and memory use small.
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
# Every pool the gateway creates waits for a map commit; the default 1 s batching window made
# start-up take about 12 s. One monitor has nothing to batch, so commit almost at once.
paxos propose interval = 0.05
paxos min wait = 0.01
# Tests run on shared CI disks; do not let the monitor stop when the disk is nearly full.
mon data avail crit = 0

[osd]
osd objectstore = memstore
memstore device bytes = $memstore_bytes

[client.rgw.gw]
# tcp_nodelay: without it the gateway's last segment of an answer waits for the client's delayed
# ACK, and one GET or LIST in ten took 45-50 ms instead of 2-5 (measured on loopback). S3 itself
# answers without that stall, so tests and benchmarks should see a gateway that does too.
rgw frontends = beast endpoint=127.0.0.1:$port tcp_nodelay=1
rgw enable usage log = false
rgw enable ops log = false
# Per-request log lines would cost disk bandwidth during benchmarks; errors are still logged.
debug rgw = 0/5
debug rgw access = 0/5
EOF
}

# Starts one daemon in the foreground, detached from the caller, and records its pid.
spawn() {
  local dir="$1" name="$2"
  shift 2
  setsid "$@" </dev/null >>"$dir/log/$name.stderr" 2>&1 &
  echo $! >"$dir/run/$name.pid"
}

alive() {
  local dir="$1" name="$2" pid
  pid="$(cat "$dir/run/$name.pid" 2>/dev/null || true)"
  owned_pid "$pid" "$dir"
}

ceph_cli() {
  local dir="$1"
  shift
  # The CLI retries forever on an unreachable monitor; bound it.
  timeout 30 ceph -c "$dir/ceph.conf" --connect-timeout 20 "$@"
}

cmd_start() {
  local dir="$1" port="$2"
  [[ "$port" =~ ^[0-9]+$ ]] || die "PORT must be a number, got '$port'"
  [[ "$MEMSTORE_GIB" =~ ^[0-9]+$ ]] || die "RGW_MEMSTORE_GIB must be a whole number, got '$MEMSTORE_GIB'"
  require_binaries
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"

  local name
  for name in "${DAEMONS[@]}"; do
    if alive "$dir" "$name"; then
      die "a cluster is already running from $dir ($name); run: $0 stop $dir"
    fi
  done
  if python3 -c 'import socket,sys; s=socket.socket(); s.connect(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
    die "port $port on 127.0.0.1 is already in use"
  fi

  local started=$SECONDS
  rm -rf "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/run" "$dir/log"
  mkdir -p "$dir/mon/mon.a" "$dir/osd/osd.0" "$dir/rgw/client.rgw.gw" "$dir/run" "$dir/log"

  local fsid mon_port
  fsid="$(cat /proc/sys/kernel/random/uuid)"
  mon_port="$(free_port)"
  write_conf "$dir" "$port" "$mon_port" "$fsid" "$((MEMSTORE_GIB * 1024 * 1024 * 1024))"

  local conf="$dir/ceph.conf"
  # Monitor: a one-member monmap, then mkfs. The mon. key is required by mkfs even without cephx.
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$dir/monmap" >/dev/null
  ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" --keyring "$dir/keyring" \
    >>"$dir/log/mon.a.stderr" 2>&1 || fail_start "$dir" mon.a "ceph-mon --mkfs failed"
  spawn "$dir" mon.a ceph-mon -c "$conf" -i a -f

  if [[ -n "${RGW_OWNER_PID:-}" ]]; then
    [[ "$RGW_OWNER_PID" =~ ^[0-9]+$ ]] || die "RGW_OWNER_PID must be a pid, got '$RGW_OWNER_PID'"
    # Polls once a second: a dead test run is cleaned up within about a second.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec bash "$2" stop "$3"' \
      rgw-watchdog "$RGW_OWNER_PID" "$SELF" "$dir" </dev/null >/dev/null 2>&1 &
    echo $! >"$dir/run/watchdog.pid"
  fi

  # OSD: register it with the monitor (this also waits for the monitor to answer), then mkfs.
  local osd_uuid osd_id
  osd_uuid="$(cat /proc/sys/kernel/random/uuid)"
  osd_id="$(ceph_cli "$dir" osd new "$osd_uuid" 2>>"$dir/log/ceph-cli.stderr")" ||
    fail_start "$dir" mon.a "the monitor did not answer on 127.0.0.1:$mon_port"
  [[ "$osd_id" == "0" ]] || fail_start "$dir" mon.a "expected OSD id 0, the monitor gave '$osd_id'"
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$dir/log/osd.0.stderr" 2>&1 ||
    fail_start "$dir" osd.0 "ceph-osd --mkfs failed"
  spawn "$dir" osd.0 ceph-osd -c "$conf" -i 0 -f

  # The gateway creates its pools at start and blocks until the OSD is up, so start it at once.
  spawn "$dir" client.rgw.gw radosgw -c "$conf" -n client.rgw.gw -f

  local deadline=$((SECONDS + START_TIMEOUT))
  until python3 - "$port" <<'PY' 2>/dev/null; do
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2)
except urllib.error.HTTPError:
    pass  # any S3 error document means the gateway is serving requests
PY
    for name in "${DAEMONS[@]}"; do
      alive "$dir" "$name" || fail_start "$dir" "$name" "$name exited during start-up"
    done
    if ((SECONDS >= deadline)); then
      fail_start "$dir" client.rgw.gw "the gateway did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s"
    fi
    sleep 0.5
  done

  timeout 60 radosgw-admin -c "$conf" user create --uid "$TEST_UID" --display-name "Strata tests" \
    --access-key "$ACCESS_KEY" --secret "$SECRET_KEY" >"$dir/log/user-create.out" 2>&1 ||
    fail_start "$dir" user-create "radosgw-admin user create failed"

  echo "rgw.sh: cluster up in $((SECONDS - started))s (fsid $fsid, mon port $mon_port, logs in $dir/log)" >&2
  echo "endpoint=http://127.0.0.1:$port"
  echo "region=$REGION"
  echo "access_key=$ACCESS_KEY"
  echo "secret_key=$SECRET_KEY"
}

cmd_stop() {
  local dir="$1"
  [[ -d "$dir" ]] || return 0
  dir="$(cd "$dir" && pwd)"
  local pids=() name pid i
  if [[ -f "$dir/run/watchdog.pid" ]]; then
    pid="$(cat "$dir/run/watchdog.pid")"
    # The watchdog runs this very function once its owner is gone; it must not kill itself.
    if [[ "$pid" != "$$" ]] && owned_pid "$pid" "$dir"; then
      pids+=("$pid")
    fi
  fi
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
    name="${DAEMONS[$i]}"
    pid="$(cat "$dir/run/$name.pid" 2>/dev/null || true)"
    if owned_pid "$pid" "$dir"; then
      pids+=("$pid")
    fi
  done
  # SIGKILL on purpose: the cluster is disposable, and a memstore OSD asked to stop nicely would
  # first write every stored object to disk.
  if [[ ${#pids[@]} -gt 0 ]]; then
    kill -KILL "${pids[@]}" 2>/dev/null || true
    # Wait (up to 10 s) until the kernel has reaped them, so their ports are free on return.
    for ((i = 0; i < 100; i++)); do
      local any=0
      for pid in "${pids[@]}"; do
        if owned_pid "$pid" "$dir"; then any=1; fi
      done
      ((any)) || break
      sleep 0.1
    done
  fi
  rm -rf "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/run" "$dir/monmap"
}

main() {
  [[ $# -ge 1 ]] || usage
  case "$1" in
    start)
      [[ $# -eq 3 ]] || usage
      cmd_start "$2" "$3"
      ;;
    stop)
      [[ $# -eq 2 ]] || usage
      cmd_stop "$2"
      ;;
    *) usage ;;
  esac
}

main "$@"
