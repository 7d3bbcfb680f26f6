#!/usr/bin/env bash
# Debian packages the tests need: fonts for rendering test memes, redis-server for the
# scale-out queue tests, chromium for the browser tests (driven by Playwright, never downloaded).
# Installs only what is missing, so it is cheap to run every time.
set -euo pipefail
packages=(fonts-dejavu-core fonts-liberation fonts-freefont-ttf fonts-noto-core redis-server chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
