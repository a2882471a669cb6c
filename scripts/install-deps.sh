#!/usr/bin/env bash
# Installs what esft needs to build and test on Debian 12:
#  - Debian packages: compilers (clang 14, whose libFuzzer runtime the fuzz targets use, and g++), CMake, Ninja,
#    Boost.Program_options and .Filesystem, toml++, nlohmann/json, doctest, PCRE2, utf8proc, zlib, cairo (pictures),
#    libcurl (the judge metrics' requests), Gloo's headers (the PyTorch wheel links Gloo, for multi-process runs,
#    but leaves its headers out), Chromium and its WebDriver (the browser test of `serve`'s chat page), curl;
#  - .venv, a project-local Python environment with PyTorch 2.11.0 from PyPI (the wheel whose LibTorch every build
#    links; CUDA 13.0) and the Hugging Face stack benchmarks and fixture generation compare against, every package
#    pinned (scripts/python/requirements.txt, constraints.txt). About 3.3 GB to download, 5.5 GB installed.
# The CUDA toolkit (nvcc) is not installed here: the project's machines have it, and without it the build simply
# leaves the CUDA path out (ESFT_CUDA=OFF). Running this again only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=(
  build-essential cmake ninja-build ccache clang-14 libclang-rt-14-dev
  libboost-dev libboost-program-options-dev libboost-filesystem-dev
  libtomlplusplus-dev nlohmann-json3-dev doctest-dev
  pkg-config libpcre2-dev libutf8proc-dev zlib1g-dev libcairo2-dev libcurl4-openssl-dev libgloo-dev
  chromium chromium-driver fonts-liberation curl
)
command -v python3 >/dev/null || packages+=(python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: every Debian package is installed"
fi

# The venv, remade only when the pinned lists changed (their hash is stamped into it).
requirements=scripts/python/requirements.txt constraints=scripts/python/constraints.txt
stamp=.venv/.esft-requirements
want=$(cat "$requirements" "$constraints" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c 'import torch' 2>/dev/null; then
  echo "install-deps: .venv is up to date ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "install-deps: python3 cannot make virtual environments; install python3-venv" >&2
  exit 1
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
echo "install-deps: installing the pinned Python packages into .venv (PyTorch 2.11.0 with CUDA 13.0: about 3.3 GB)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --progress-bar off \
  -r "$requirements" -c "$constraints"
echo "$want" > "$stamp"
echo "install-deps: .venv ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
