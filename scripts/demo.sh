#!/usr/bin/env bash
# Quick start: install the torch-free app, render sample memes, index and search them,
# then serve the web app on http://127.0.0.1:8000 (Ctrl-C stops it).
# DEMO_SERVE=0 skips serving (for scripted smoke tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-venv.sh core
home="${MEMESEARCH_HOME:-./demo-data}"
.venv/bin/memesearch --data-dir "$home" demo "$@"
if [ "${DEMO_SERVE:-1}" != "0" ]; then
  echo "serving the web app on http://127.0.0.1:${DEMO_PORT:-8000} (Ctrl-C to stop)"
  exec .venv/bin/memesearch --data-dir "$home" serve --port "${DEMO_PORT:-8000}"
fi
