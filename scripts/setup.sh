#!/usr/bin/env bash
# Installs whatever is missing, then builds. Used by `npm start` and `npm test` on a fresh
# Debian 12 machine (as root, with Node 20). Safe to run again: it only does what is missing.
#   scripts/setup.sh          runtime: GStreamer, fonts, build tools, npm packages, build
#   scripts/setup.sh --test   also what the tests need: Debian's chromium, gst-discoverer, iproute2,
#                             redis-server and coturn (the tests start their own; a node needs neither)
#   scripts/setup.sh --bench  the tests' packages and Debian's janus, which `npm run bench` measures
#                             side by side with our audio-only rooms
set -euo pipefail
cd "$(dirname "$0")/.."

RUNTIME_PKGS=(
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  pkg-config python3 make g++ fonts-dejavu-core
)
TEST_PKGS=(chromium gstreamer1.0-plugins-base-apps iproute2 util-linux redis-server coturn sip-tester openssl)

want=("${RUNTIME_PKGS[@]}")
[[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]] && want+=("${TEST_PKGS[@]}")
[[ "${1:-}" == "--bench" ]] && want+=(janus)

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: need root to install them (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian starts the janus service it installs; the bench starts its own, on loopback only.
  if [[ " ${missing[*]} " == *" janus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now janus >/dev/null 2>&1 || true
  fi
fi

# npm packages: install when node_modules is missing or older than the lockfile.
stamp=node_modules/.mcu-installed
if [[ ! -f $stamp || package-lock.json -nt $stamp || package.json -nt $stamp ]]; then
  echo "setup: installing npm packages"
  npm install --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi
# gstreamer-superficial is a native addon built by its install script (approved in allowScripts).
# npm builds it before our postinstall applies patches/gstreamer-superficial+*.patch to its C++
# source, so it is built again whenever the patch it was built with is not the current one.
addon=node_modules/gstreamer-superficial/build/Release/gstreamer-superficial.node
patch_sum=$(cat patches/gstreamer-superficial+*.patch 2>/dev/null | sha256sum | cut -d' ' -f1)
built_with=node_modules/gstreamer-superficial/build/.mcu-patch
if [[ ! -f $addon || "$(cat "$built_with" 2>/dev/null)" != "$patch_sum" ]]; then
  echo "setup: building gstreamer-superficial (with our patch)"
  npm rebuild gstreamer-superficial --foreground-scripts
  echo "$patch_sum" > "$built_with"
fi

node node_modules/typescript/bin/tsc -p .
