#!/usr/bin/env bash
# Quick start: install the torch-free app, render sample memes, index and search them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh core
exec .venv/bin/memesearch --data-dir "${MEMESEARCH_HOME:-./demo-data}" demo "$@"
