#!/usr/bin/env bash
# ctest: `esft-host serve` answers the OpenAI Python client (the venv's `openai`) and curl, whole and streamed, equal
# to `esft-host generate` at temperature 0 (tests/serve_clients.py). Fails, saying so, without the project's .venv.
set -euo pipefail
host=$1 source_dir=$2
python=$source_dir/.venv/bin/python
if [ ! -x "$python" ] || ! "$python" -c 'import openai' 2>/dev/null; then
  echo "check_serve: error: no $python with openai (scripts/install-deps.sh makes it)"
  exit 1
fi
exec "$python" "$source_dir/tests/serve_clients.py" "$host" "$source_dir/examples/tiny-model"
