#!/usr/bin/env bash
# Installs what the container test (test/e2e/container.test.ts) needs on Debian 12, as root:
# Debian's docker.io (dockerd, containerd, runc) and debootstrap, which builds the image's
# base from Debian's packages when no image registry can be reached (docker/base-image.sh).
# Idempotent: returns at once when both are installed.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/debian-packages.sh"
install_debian_packages install-container-deps docker.io debootstrap
