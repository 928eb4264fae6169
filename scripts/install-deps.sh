#!/usr/bin/env bash
# Installs the system packages Strata's tests need on Debian 12, as root:
#   - libfuse2 (fuse-native's prebuilt binary links against libfuse.so.2) and fuse3 (fusermount3);
#   - libfuse3-dev and pkg-config: bench/native-fuse builds its libfuse 3 baseline (bench/memfs.c)
#     (the native FUSE addon itself speaks the kernel protocol and links no libfuse);
#   - a single-node Ceph (mon, osd, mgr) and the RADOS Gateway, the S3 server the tests run against;
#   - ceph-common for the ceph, ceph-authtool and radosgw-admin CLIs scripts/rgw.sh drives;
#   - etcd-server, the coordination service parameter-table clusters (--cluster) run on.
# Idempotent: when every package is already installed it returns at once without touching apt.
set -euo pipefail

packages=(libfuse2 fuse3 libfuse3-dev pkg-config radosgw ceph-mon ceph-osd ceph-mgr ceph-common curl etcd-server)

missing=()
for pkg in "${packages[@]}"; do
  # "install ok installed" is dpkg's status for a fully configured package; anything else
  # (absent, half-installed, removed with config left) counts as missing.
  status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all packages present (${packages[*]})"
  exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
echo "install-deps: done"
