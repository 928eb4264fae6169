# Sourced by the install scripts: install_debian_packages LABEL PACKAGE... installs the packages
# that are not fully installed yet, with apt, as root. It returns at once without touching apt
# when all are present, and fails with one line naming them when not root.
install_debian_packages() {
  local label="$1"
  shift
  local missing=() pkg status
  for pkg in "$@"; do
    # "install ok installed" is dpkg's status for a fully configured package; anything else
    # (absent, half-installed, removed with config left) counts as missing.
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [[ "$status" != "install ok installed" ]]; then
      missing+=("$pkg")
    fi
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "$label: all packages present ($*)"
    return 0
  fi
  if [[ "$(id -u)" -ne 0 ]]; then
    echo "$label: missing packages: ${missing[*]}; run this script as root" >&2
    return 1
  fi
  echo "$label: installing ${missing[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
  echo "$label: done"
}
