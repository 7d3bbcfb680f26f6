#!/usr/bin/env bash
# Sets up everything the test suite needs and runs it. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup-venv.sh dev
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
