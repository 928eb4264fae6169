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

# shellcheck source=lib/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-packages.sh"
install_debian_packages install-deps "${packages[@]}"
