#!/usr/bin/env bash
# Installs everything bhatti and its tests need on Debian/Ubuntu, then builds.
# Idempotent; needs root for apt. Used by the README, scripts/demo.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  e2fsprogs tar gzip zstd           # ext4 building and layer formats
  docker-registry skopeo umoci      # real registry and image tools for tests, demo and benchmark
  busybox-static mmdebstrap attr    # test and demo image contents
  apache2-utils jq                  # htpasswd for the auth-registry tests; jq for fixture oracles
  cpio xz-utils libcap2-bin procps  # tests: initrd listing, xz layers, setcap/getcap, ps
  qemu-system-x86 qemu-utils        # the VM engine and copy-on-write overlays
  qemu-guest-agent linux-image-amd64  # the boot kit: qemu-ga and a kernel with its modules
  time                              # GNU time for the benchmark's peak RSS
  python3 make g++                  # sqlite3 compiles from source when no prebuilt binary is reachable
)
missing=()
for p in "${packages[@]}"; do
  [[ $p == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci rebuilds sqlite3 from source (~3 min here); skip it when node_modules already matches the lock file.
if [[ -d node_modules ]] && npm ls --all >/dev/null 2>&1 && [[ node_modules/.package-lock.json -nt package-lock.json ]]; then
  echo "setup: node_modules is up to date"
else
  npm ci --no-audit --no-fund
fi
npm run build
