#!/usr/bin/env bash
# Builds Strata's image (docker/Dockerfile) on an engine that can reach no image registry:
# the base comes from docker/base-image.sh (Debian from debootstrap plus this host's Node 20),
# then the Dockerfile runs on it. apt and npm in the build stages use the host's network
# (--network host); the container that runs needs none.
#
#   docker/build-image.sh [TAG]     default TAG strata:local; prints TAG on stdout
#
# With a registry, `docker build -f docker/Dockerfile -t strata .` does the same from
# node:20-bookworm-slim.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TAG="${1:-strata:local}"
BASE="$(bash docker/base-image.sh)"
# CAs this host trusts beyond Debian's (a site's own, such as an HTTPS proxy's) are what lets
# npm reach its registry from here: the build's base trusts them too (a layer over the base).
EXTRA_CAS=(/usr/local/share/ca-certificates/*.crt)
if [[ -e "${EXTRA_CAS[0]}" ]]; then
  ctx="$(mktemp -d "${TMPDIR:-/tmp}/strata-ca-XXXXXX")"
  trap 'rm -rf "$ctx"' EXIT
  cp "${EXTRA_CAS[@]}" "$ctx/"
  printf '%s\n' "FROM $BASE" 'COPY *.crt /usr/local/share/ca-certificates/' 'RUN update-ca-certificates' \
    'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' > "$ctx/Dockerfile"
  docker build -q -t "$BASE-cas" "$ctx" >&2
  BASE="$BASE-cas"
fi
echo "build-image: building $TAG on $BASE" >&2
started=$SECONDS
docker build --network host --build-arg BASE="$BASE" -f docker/Dockerfile -t "$TAG" . >&2
echo "build-image: $TAG built in $((SECONDS - started)) s, $(docker image inspect -f '{{.Size}}' "$TAG") bytes" >&2
echo "$TAG"
