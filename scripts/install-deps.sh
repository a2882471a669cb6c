#!/usr/bin/env bash
# Installs what esft needs to build and test on Debian 12 (all from Debian's own packages).
# libopenblas0-pthread matters: without it Debian's LibTorch falls back to the reference BLAS and matrix products
# run about 20x slower.
set -euo pipefail
packages=(
  build-essential cmake ninja-build ccache
  libtorch-dev libopenblas0-pthread
  libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libtomlplusplus-dev nlohmann-json3-dev doctest-dev
  pkg-config libpcre2-dev libutf8proc-dev zlib1g-dev
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
