#!/usr/bin/env bash
# Install the host packages the test suite and the benchmarks need (Debian). Idempotent: installs only what is
# missing, and runs `apt-get update` only when something is.
set -euo pipefail

packages=(
  debootstrap
  busybox-static
  skopeo
  python3-venv
  zstd bzip2 pigz
  git
  time
  docker-registry apache2-utils openssl curl   # the registry push tests (TLS + htpasswd)
  python3                                      # the registry token service (tests/support/token_server.py)
  socat                                        # the remote-engine test: a TLS endpoint before the socket
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all host packages present"
fi
