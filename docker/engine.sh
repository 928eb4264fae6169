#!/usr/bin/env bash
# A Docker engine for building and testing Strata's image where none runs (CI, a dev box):
#   docker/engine.sh start DIR   starts dockerd with its socket and run state under DIR and
#                                prints `unix://DIR/docker.sock` (export it as DOCKER_HOST)
#   docker/engine.sh stop DIR    stops that engine
# No bridge network and no iptables rules (--iptables=false --bridge=none): containers run
# with --network none or host, and nothing on the machine's own network changes. Image
# layers live in STRATA_IMAGE_CACHE/engine (default ~/.cache/strata/images/engine), so a
# second build reuses them; one engine at a time may use that folder (a lock guards it).
# Needs root and Debian's docker.io (scripts/install-container-deps.sh).
set -euo pipefail
cmd="${1:?usage: docker/engine.sh start|stop DIR}"
dir="${2:?usage: docker/engine.sh start|stop DIR}"
cache="${STRATA_IMAGE_CACHE:-${HOME:-/root}/.cache/strata/images}"

case "$cmd" in
  start)
    command -v dockerd >/dev/null || { echo "engine: dockerd is not installed (apt-get install docker.io)" >&2; exit 1; }
    mkdir -p "$dir" "$cache/engine"
    # Held by dockerd itself (fd 9 is inherited): released when the engine stops.
    exec 9>"$cache/engine.lock"
    flock -w 600 9 || { echo "engine: another engine uses $cache/engine" >&2; exit 1; }
    dockerd --iptables=false --bridge=none --data-root "$cache/engine" --exec-root "$dir/exec" \
      --pidfile "$dir/dockerd.pid" -H "unix://$dir/docker.sock" >"$dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 600); do
      if DOCKER_HOST="unix://$dir/docker.sock" docker version >/dev/null 2>&1; then
        echo "unix://$dir/docker.sock"
        exit 0
      fi
      kill -0 $! 2>/dev/null || { echo "engine: dockerd exited: $(tail -n 5 "$dir/dockerd.log")" >&2; exit 1; }
      sleep 0.1
    done
    echo "engine: dockerd did not answer within 60 s: $(tail -n 5 "$dir/dockerd.log")" >&2
    exit 1
    ;;
  stop)
    [[ -f "$dir/dockerd.pid" ]] || exit 0
    pid="$(cat "$dir/dockerd.pid")"
    kill "$pid" 2>/dev/null || exit 0
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    ;;
  *) echo "usage: docker/engine.sh start|stop DIR" >&2; exit 2 ;;
esac
