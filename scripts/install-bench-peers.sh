#!/usr/bin/env bash
# Installs the peers the benchmarks measure Strata against, from Debian's packages, as root:
#   - s3fs and rclone: bench/cold-read.ts and others mount the same bucket with them;
#   - redis-server: bench/params-tail.ts compares batched lookups with Redis MGET.
# The benchmarks run without them, printing one line for each reference row they skip.
# Idempotent: when every package is already installed it returns at once without touching apt.
set -euo pipefail

# shellcheck source=lib/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-packages.sh"
install_debian_packages install-bench-peers s3fs rclone redis-server
