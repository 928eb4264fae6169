#!/usr/bin/env bash
# One command from a fresh clone to a mounted Strata: installs the Debian packages and the
# npm dependencies, seeds a small local "bucket" with sample files, and mounts it.
# Ctrl-C unmounts. Override the places with STRATA_DEMO_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

demo="${STRATA_DEMO_DIR:-/tmp/strata-demo}"
lake="$demo/lake"
mnt="$demo/mnt"

if [ "$(id -u)" -eq 0 ]; then bash scripts/install-deps.sh; else sudo bash scripts/install-deps.sh; fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-fund --no-audit # its prepare step compiles dist/
else
  npm run build --silent # bin/strata.js runs dist/: keep it in step with the sources
fi

if [ ! -d "$lake" ]; then
  mkdir -p "$lake/datasets/mnist/train/class_0" "$lake/datasets/mnist/train/class_1" "$lake/models/resnet"
  echo "Strata demo lake: these files live in $lake and are served through FUSE." > "$lake/README.txt"
  for i in 0 1 2 3; do head -c 262144 /dev/urandom > "$lake/datasets/mnist/train/class_0/img_$i.bin"; done
  for i in 0 1 2 3; do head -c 262144 /dev/urandom > "$lake/datasets/mnist/train/class_1/img_$i.bin"; done
  head -c 33554432 /dev/urandom > "$lake/models/resnet/weights.bin"
fi
mkdir -p "$mnt"
# A mount left behind by a killed daemon is detached by `strata mount` itself.
echo "Mounting $lake at $mnt; in another shell: ls -lR $mnt"
exec node bin/strata.js mount "file://$lake" "$mnt" --state-dir "$demo/state" "$@"
