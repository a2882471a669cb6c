#!/usr/bin/env bash
# Downloads (does not install) the Debian packages that scripts/gpu-check.sh unpacks on a lent GPU machine, which
# has PyTorch with CUDA but neither apt nor a network: Boost.Program_options and .Filesystem, toml++, nlohmann/json,
# doctest, PCRE2, utf8proc, zlib's headers, Gloo's headers (c10d's Gloo header includes them), pkg-config, ninja,
# and cairo for the pictures (with what cairo.pc requires and what libcairo.so.2 loads; the machine may have no X11
# or fontconfig). LibTorch is not among them: there the build
# uses the machine's own PyTorch wheel. About 24 MB, into .gpu-debs/ (ignored by git; carried to the machine with it,
# where the working tree and it must stay under 64 MiB together).
#   usage: scripts/fetch-gpu-debs.sh [DEST_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.gpu-debs}
mkdir -p "$dest"
packages=(
  libboost1.74-dev libboost-program-options1.74-dev libboost-program-options1.74.0
  libboost-filesystem1.74-dev libboost-filesystem1.74.0 libboost-system1.74-dev libboost-system1.74.0
  libboost-atomic1.74-dev libboost-atomic1.74.0
  libtomlplusplus-dev libtomlplusplus3 nlohmann-json3-dev doctest-dev libgloo-dev
  libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 zlib1g-dev
  pkgconf pkgconf-bin libpkgconf3 ninja-build
  # cairo: the -dev packages give the .pc files that `pkg-config --cflags cairo` walks (Requires.private included)
  libcairo2-dev libcairo2 libglib2.0-dev libffi-dev libpixman-1-dev libpixman-1-0 libfontconfig-dev libfontconfig1
  libfreetype-dev libfreetype6 libpng-dev libpng16-16 libexpat1-dev libexpat1 libbrotli-dev libbrotli1
  libxcb1-dev libxcb1 libxcb-shm0-dev libxcb-shm0 libxcb-render0-dev libxcb-render0 libxau-dev libxau6
  libxdmcp-dev libxdmcp6 libxrender-dev libxrender1 libx11-dev libx11-6 libxext-dev libxext6 x11proto-dev
  libbsd0 libmd0
)
(cd "$dest" && apt-get download "${packages[@]}" >/dev/null)
echo "fetch-gpu-debs: $(ls -1 "$dest"/*.deb | wc -l) packages, $(du -sh "$dest" | cut -f1) in $dest"
