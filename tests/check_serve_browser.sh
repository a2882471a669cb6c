#!/usr/bin/env bash
# ctest: the web chat page of `esft-host serve` in headless Chromium (tests/serve_browser.py): the streamed answers of
# two turns equal `esft-host generate` at temperature 0; the screenshot goes to OUT_DIR/chat.png. Fails, saying
# so, without chromium and chromium-driver (Debian's packages; scripts/install-deps.sh installs them) or python3.
set -euo pipefail
host=$1 source_dir=$2 out_dir=$3
for tool in chromium chromedriver python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "check_serve: error: no $tool (scripts/install-deps.sh installs chromium and chromium-driver)"
    exit 1
  fi
done
exec python3 "$source_dir/tests/serve_browser.py" "$host" "$source_dir/examples/tiny-model" "$out_dir"
