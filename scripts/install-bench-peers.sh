#!/usr/bin/env bash
# Installs the peers the benchmarks measure Strata against, from Debian's packages, as root:
#   - s3fs and rclone: bench/cold-read.ts and others mount the same bucket with them;
#   - redis-server: bench/params-tail.ts compares batched lookups with Redis MGET.
# The benchmarks run without them, printing one line for each reference row they skip.
# Idempotent: when every package is already installed it returns at once without touching apt.
set -euo pipefail

packages=(s3fs rclone redis-server)

missing=()
for pkg in "${packages[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-bench-peers: all packages present (${packages[*]})"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "install-bench-peers: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "install-bench-peers: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-bench-peers: done"
