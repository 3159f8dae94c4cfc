#!/usr/bin/env bash
# Configures and builds trapline into ./build (RelWithDebInfo, warnings as errors).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
ninja -C build
# The admin panel (ui/ -> ui/dist, served with [http] ui_dir) when npm is there
# (scripts/deps.sh installs it); the C++ build does not need it.
if command -v npm >/dev/null 2>&1; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
else
  echo "build: npm not found, admin panel (ui/) not built (scripts/deps.sh installs nodejs and npm)" >&2
fi
