#!/usr/bin/env bash
# ctest: the SDK as a plugin author meets it. esft is installed into a temporary prefix; examples/plugin-llama and
# examples/plugin-template are configured and built against that prefix alone (find_package(esft)), and their own
# tests run through the installed esft-host: parity with transformers and generation. Then what must be refused
# is: at configure time, another compiler and another LibTorch; at load time, a plugin built with another SDK and
# plugin ABI version (both versions named, and shown by `plugins --verbose`).
# usage: check_sdk.sh BUILD_DIR
set -euo pipefail
build=$1
source_dir=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
cache() { sed -n "s/^$1:[A-Z]*=//p" "$build/CMakeCache.txt"; }
compiler=$(cache CMAKE_CXX_COMPILER)
launcher=$(cache CMAKE_CXX_COMPILER_LAUNCHER)
generator=$(cache CMAKE_GENERATOR)

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
echo "installed into $prefix: $(find "$prefix/include" -name '*.h' | wc -l) SDK headers"

# The installed headers include only installed headers.
missing=$(cd "$prefix/include" && grep -rhoE '#include "esft/[^"]+"' esft | sed 's/#include "//; s/"$//' | sort -u |
          while read -r h; do [ -f "$h" ] || echo "$h"; done)
[ -z "$missing" ] || fail "installed headers include headers that are not installed: $missing"
"$prefix/bin/esft-host" plugins > "$tmp/plugins.txt"
grep -q "^llama .*$prefix/lib/esft/plugins/libesft_llama.so" "$tmp/plugins.txt" ||
  { cat "$tmp/plugins.txt"; fail "the installed host does not list the bundled llama plugin"; }

# configure_and_build NAME SOURCE PREFIX [cmake args...]
configure_and_build() {
  local name=$1 src=$2 sdk=$3
  shift 3
  cmake -S "$src" -B "$tmp/$name" -G "$generator" -DCMAKE_PREFIX_PATH="$sdk" -DCMAKE_CXX_COMPILER="$compiler" \
        ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} "$@" > "$tmp/$name.configure.log" 2>&1 ||
    { cat "$tmp/$name.configure.log"; fail "$name: configure against $sdk failed"; }
  cmake --build "$tmp/$name" -j 2 > "$tmp/$name.build.log" 2>&1 ||
    { tail -40 "$tmp/$name.build.log"; fail "$name: build failed"; }
  # Against the installed SDK only: nothing of esft's source tree is compiled in or linked.
  if grep -rqs -- "$source_dir/core\|$build/" "$tmp/$name/build.ninja" "$tmp/$name/Makefile"; then
    fail "$name: its build refers to esft's source or build tree"
  fi
}

for example in plugin-llama plugin-template; do
  started=$SECONDS
  configure_and_build "$example" "$source_dir/examples/$example" "$prefix"
  ctest --test-dir "$tmp/$example" --output-on-failure > "$tmp/$example.ctest.log" 2>&1 ||
    { cat "$tmp/$example.ctest.log"; fail "$example: its tests failed"; }
  echo "$example: built against the installed SDK in $((SECONDS - started)) s; $(grep -c ' Passed' "$tmp/$example.ctest.log") tests passed:"
  grep ' Passed' "$tmp/$example.ctest.log" | sed 's/^/  /'
done
ctest --test-dir "$tmp/plugin-llama" -R parity -V 2>&1 | grep -E "max\|diff\||relative|differing" | sed 's/^[0-9]*: /  llama: /'

# refused_at_configure NAME NEEDLE... : configuring plugin-template with the given arguments fails naming each needle.
refused_at_configure() {
  local name=$1
  shift
  local args=()
  while [ "$1" != "--" ]; do args+=("$1"); shift; done
  shift
  if cmake -S "$source_dir/examples/plugin-template" -B "$tmp/$name" -G "$generator" -DCMAKE_PREFIX_PATH="$prefix" \
       "${args[@]}" > "$tmp/$name.log" 2>&1; then
    fail "$name: configure should have been refused"
  fi
  local text
  text=$(tr -s ' \n' ' ' < "$tmp/$name.log")
  for needle in "$@"; do
    grep -qF -- "$needle" <<< "$text" || { cat "$tmp/$name.log"; fail "$name: the refusal does not say '$needle'"; }
  done
  echo "refused at configure time ($name): $(grep -o 'esft: this esft was built.*another [A-Za-z]*' <<< "$text" | head -1)"
}

# Another compiler family.
other_compiler=$(command -v g++ || true)
[ "$(cache CMAKE_CXX_COMPILER_ID)" = GNU ] && other_compiler=$(command -v clang++ || true)
if [ -n "$other_compiler" ]; then
  refused_at_configure other-compiler -DCMAKE_CXX_COMPILER="$other_compiler" -- \
    "this esft was built with $(cache CMAKE_CXX_COMPILER_ID)" "esft-host refuses plugins built with another compiler"
fi
# Another LibTorch, found first through Torch_DIR.
fake_torch=$tmp/libtorch-2.0.0
mkdir -p "$fake_torch/share/cmake/Torch"
echo "2.0.0+cpu" > "$fake_torch/build-version"
refused_at_configure other-libtorch -DCMAKE_CXX_COMPILER="$compiler" -DTorch_DIR="$fake_torch/share/cmake/Torch" -- \
  "this project chose LibTorch 2.0.0+cpu ($fake_torch," "esft-host refuses plugins built against another LibTorch"

# A plugin built with another SDK version and plugin ABI version: the same package with its version header and ABI
# version changed, as a later esft would ship them.
other=$tmp/other-sdk
cp -r "$prefix" "$other"
sed -i 's/#define ESFT_VERSION_STRING "[^"]*"/#define ESFT_VERSION_STRING "0.1.99"/' "$other/include/esft/version.h"
abi=$(sed -n 's/^#define ESFT_PLUGIN_ABI_VERSION \([0-9]*\)u$/\1/p' "$other/include/esft/plugin_abi.h")
[ -n "$abi" ] || fail "no ESFT_PLUGIN_ABI_VERSION in plugin_abi.h"
sed -i "s/^#define ESFT_PLUGIN_ABI_VERSION ${abi}u$/#define ESFT_PLUGIN_ABI_VERSION $((abi + 1))u/" "$other/include/esft/plugin_abi.h"
configure_and_build other-plugin "$source_dir/examples/plugin-template" "$other"
"$prefix/bin/esft-host" --plugin-dir "$tmp/other-plugin" plugins --verbose > "$tmp/verbose.txt"
grep -qF "esft-host accepts plugin ABI $abi, fingerprint 'esft-sdk $(sed -n 's/.*ESFT_VERSION_STRING "\(.*\)"/\1/p' "$prefix/include/esft/version.h")" "$tmp/verbose.txt" ||
  { cat "$tmp/verbose.txt"; fail "plugins --verbose does not show the host's ABI and fingerprint"; }
grep -A1 "^mixtral .*$tmp/other-plugin/libesft_mixtral.so .*\[refused: wrong ABI version: plugin has $((abi + 1)), esft-host supports $abi\]" "$tmp/verbose.txt" |
  grep -qF "    abi $((abi + 1)), fingerprint 'esft-sdk 0.1.99;" ||
  { cat "$tmp/verbose.txt"; fail "plugins --verbose does not show the other plugin's refusal and fingerprint"; }
if "$prefix/bin/esft-host" --plugin-dir "$tmp/other-plugin" --plugin mixtral --device cpu parity \
     --fixture "$source_dir/examples/plugin-template/tests/fixtures/mixtral" > "$tmp/load.out" 2> "$tmp/load.err"; then
  fail "a plugin of another ABI version was loaded"
fi
[ "$(wc -l < "$tmp/load.err")" = 1 ] && grep -q "^esft-host: error: refusing plugin .*libesft_mixtral.so: wrong ABI version: plugin has $((abi + 1)), esft-host supports $abi$" "$tmp/load.err" ||
  { cat "$tmp/load.err"; fail "loading the other plugin should fail with one line naming both ABI versions"; }
echo "refused at load time: $(cat "$tmp/load.err")"
echo "plugins --verbose: $(grep -A1 '^mixtral' "$tmp/verbose.txt" | tail -1 | sed 's/^ *//')"
