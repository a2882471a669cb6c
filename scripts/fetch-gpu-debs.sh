#!/usr/bin/env bash
# Downloads (does not install) the Debian packages that scripts/gpu-check.sh unpacks on a lent GPU machine, which
# has PyTorch with CUDA but neither apt nor a network: Boost.Program_options and .Filesystem, toml++, nlohmann/json,
# doctest, PCRE2, utf8proc, zlib's headers, pkg-config and ninja. LibTorch is not among them: there the build uses
# the machine's own PyTorch wheel. About 12 MB, into .gpu-debs/ (ignored by git; carried to the machine with it).
#   usage: scripts/fetch-gpu-debs.sh [DEST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.gpu-debs}
mkdir -p "$dest"
packages=(
  libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
  libboost-filesystem1.74-dev libboost-filesystem1.74.0 libboost-system1.74-dev libboost-system1.74.0
  libboost-atomic1.74-dev libboost-atomic1.74.0
  libtomlplusplus-dev libtomlplusplus3 nlohmann-json3-dev doctest-dev
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 zlib1g-dev
  pkgconf pkgconf-bin libpkgconf3 ninja-build
)
(cd "$dest" && apt-get download "${packages[@]}" >/dev/null)
echo "fetch-gpu-debs: $(ls -1 "$dest"/*.deb | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
