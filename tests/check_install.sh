#!/usr/bin/env bash
# ctest: `cmake --install` into a temporary prefix, and with DESTDIR, writes only there; the installed host finds
# the installed plugins; a host with its plugins beside it and a stale copy of one in the lower-ranked installed
# layout (bin/../lib/esft/plugins) loads its own, lists the stale copy as shadowed and warns once.
# usage: check_install.sh BUILD_DIR WRONG_ABI_PLUGIN_FILE
set -euo pipefail
build=$1 stale_plugin=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
only_under() {  # every line of stdin starts with $1
  awk -v p="$1" 'index($0, p) != 1 { print "  outside: " $0; bad = 1 } END { exit bad }'
}

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
only_under "$prefix/" < "$build/install_manifest.txt" || fail "cmake --install --prefix wrote outside $prefix"
[ -x "$prefix/bin/esft-host" ] || fail "no $prefix/bin/esft-host"
plugin=$(find "$prefix" -path '*/esft/plugins/libesft_qwen3_moe.so' | head -1)
[ -n "$plugin" ] || fail "no installed qwen3_moe plugin under $prefix"
"$prefix/bin/esft-host" plugins > "$tmp/plugins.txt"
grep -q "qwen3_moe .*$plugin" "$tmp/plugins.txt" || { cat "$tmp/plugins.txt"; fail "the installed host does not list $plugin"; }
if grep -q "$build" "$tmp/plugins.txt"; then cat "$tmp/plugins.txt"; fail "the installed host sees the build tree"; fi
echo "install --prefix: $(wc -l < "$build/install_manifest.txt") files, all under the prefix; the installed host lists its own plugins"

DESTDIR=$tmp/stage cmake --install "$build" --prefix /opt/esft > /dev/null
find "$tmp/stage" -type f | only_under "$tmp/stage/opt/esft/" || fail "DESTDIR install wrote outside DESTDIR/prefix"
echo "install with DESTDIR: everything under DESTDIR/opt/esft"

# A build-tree host: plugins beside the executable, and a stale copy in the installed layout next to it.
tree=$tmp/tree
mkdir -p "$tree/bin" "$tree/lib/esft/plugins"
cp "$build/bin/esft-host" "$build/bin/libesft-core.so" "$build/bin/libesft_qwen3_moe.so" "$tree/bin/"
cp "$stale_plugin" "$tree/lib/esft/plugins/libesft_qwen3_moe.so"
"$tree/bin/esft-host" plugins > "$tmp/tree-plugins.txt"
grep -q "qwen3_moe .*$tree/bin/libesft_qwen3_moe.so .*\[loads; shadows 1 other copy\]" "$tmp/tree-plugins.txt" ||
  { cat "$tmp/tree-plugins.txt"; fail "the host's own qwen3_moe is not listed as the one that loads"; }
grep -q "$tree/lib/esft/plugins/libesft_qwen3_moe.so .*\[shadowed by $tree/bin/libesft_qwen3_moe.so\]" "$tmp/tree-plugins.txt" ||
  { cat "$tmp/tree-plugins.txt"; fail "the stale copy is not listed as shadowed"; }
source_dir=$(cd "$(dirname "$0")/.." && pwd)
"$tree/bin/esft-host" info --model "$source_dir/tests/data/hf/qwen3_moe/model" > /dev/null 2> "$tmp/info.err" ||
  { cat "$tmp/info.err"; fail "info with the host's own plugin failed"; }
[ "$(wc -l < "$tmp/info.err")" = 1 ] && grep -q "warning: plugin 'qwen3_moe' is in more than one place: loading $tree/bin/libesft_qwen3_moe.so, not $tree/lib/esft/plugins/libesft_qwen3_moe.so" "$tmp/info.err" ||
  { cat "$tmp/info.err"; fail "loading a shadowed name should print one warning line naming both files"; }
echo "a stale copy ranked lower: listed as shadowed, the host's own loads, one warning line"
