#!/usr/bin/env bash
# Builds the image docker/Dockerfile starts from when no image registry can be reached:
# Debian bookworm from Debian's own packages (debootstrap, minbase) with the runtime
# packages Strata needs (libfuse2, fuse3, ca-certificates, tini) and Node 20 copied from this
# host (the `node` binary on the PATH, its headers and npm: Debian 12 itself ships Node 18).
# The result is imported with `docker import` and tagged strata-base:<hash>.
#
#   docker/base-image.sh            prints the tag (strata-base:<hash>) on stdout
#
# The hash covers this script, the suite, the mirror, the package list and the node binary,
# so the image is rebuilt only when one of them changes. The root file system is kept as
# a tarball under STRATA_IMAGE_CACHE (default ~/.cache/strata/images): an engine with an
# empty data root imports it again in seconds instead of running debootstrap (2-4 min).
# Needs root, debootstrap and a reachable Debian mirror (the one apt uses here; override
# with DEBIAN_MIRROR). DOCKER_HOST picks the engine as for the docker CLI.
set -euo pipefail

SUITE=bookworm
PACKAGES=libfuse2,fuse3,ca-certificates,tini
CACHE="${STRATA_IMAGE_CACHE:-${HOME:-/root}/.cache/strata/images}"

log() { echo "base-image: $*" >&2; }

# The mirror apt uses on this machine (deb822 .sources or one-line sources.list), else Debian's CDN.
mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then echo "$DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)"
  [[ -z "$uri" ]] && uri="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -E '/debian/?$' | head -n 1 || true)"
  echo "${uri:-http://deb.debian.org/debian}"
}

NODE="$(command -v node)"
NODE_ROOT="$(dirname "$(dirname "$(readlink -f "$NODE")")")" # /usr for /usr/bin/node
NPM_DIR="$NODE_ROOT/lib/node_modules/npm"
MIRROR="$(mirror)"
[[ -d "$NPM_DIR" ]] || { log "npm not found at $NPM_DIR"; exit 1; }
[[ -d "$NODE_ROOT/include/node" ]] || { log "node headers not found at $NODE_ROOT/include/node"; exit 1; }

HASH="$( { cat "${BASH_SOURCE[0]}"; echo "$SUITE $MIRROR $PACKAGES"; sha256sum "$NODE" | cut -d' ' -f1; cat "$NPM_DIR/package.json"; } | sha256sum | cut -c1-16)"
TAG="strata-base:$HASH"

if docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG present"
  echo "$TAG"
  exit 0
fi

TARBALL="$CACHE/bookworm-node-$HASH.tar"
if [[ ! -f "$TARBALL" ]]; then
  command -v debootstrap >/dev/null || { log "debootstrap is not installed (apt-get install debootstrap)"; exit 1; }
  [[ "$(id -u)" -eq 0 ]] || { log "debootstrap needs root"; exit 1; }
  mkdir -p "$CACHE"
  ROOT="$(mktemp -d "${TMPDIR:-/tmp}/strata-rootfs-XXXXXX")"
  trap 'rm -rf "$ROOT"' EXIT
  log "debootstrap $SUITE from $MIRROR (minbase + $PACKAGES)"
  started=$SECONDS
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$MIRROR" >&2
  log "debootstrap took $((SECONDS - started)) s"
  # Node 20: the host's binary, headers (node-gyp builds addons against them, offline) and npm.
  install -m 755 "$NODE" "$ROOT/usr/local/bin/node"
  mkdir -p "$ROOT/usr/local/include" "$ROOT/usr/local/lib/node_modules"
  cp -a "$NODE_ROOT/include/node" "$ROOT/usr/local/include/node"
  cp -a "$NPM_DIR" "$ROOT/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$ROOT/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$ROOT/usr/local/bin/npx"
  # What node:20-bookworm-slim also leaves out: package lists, docs, man pages.
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT"/var/cache/apt/archives/*.deb \
         "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/info/*
  tar -C "$ROOT" --numeric-owner -cf "$TARBALL.partial" .
  mv "$TARBALL.partial" "$TARBALL"
  rm -rf "$ROOT"
  trap - EXIT
else
  log "root file system cached at $TARBALL"
fi

log "docker import $TARBALL as $TAG"
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV npm_config_nodedir=/usr/local' \
  --change 'CMD ["bash"]' \
  "$TARBALL" "$TAG" >&2
echo "$TAG"
