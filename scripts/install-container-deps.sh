#!/usr/bin/env bash
# Installs what the container test (test/e2e/container.test.ts) needs on Debian 12, as root:
# Debian's docker.io (dockerd, containerd, runc) and debootstrap, which builds the image's
# base from Debian's packages when no image registry can be reached (docker/base-image.sh).
# Idempotent: returns at once when both are installed.
set -euo pipefail
packages=(docker.io debootstrap)
missing=()
for pkg in "${packages[@]}"; do
  [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" == "install ok installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-container-deps: all packages present (${packages[*]})"
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || { echo "install-container-deps: missing ${missing[*]}; run this script as root" >&2; exit 1; }
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
