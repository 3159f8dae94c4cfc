#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: unit tests (label "unit") and
# integration tests against real PostgreSQL, Redis, sshd and Zabbix 6.0 servers that the
# tests start on 127.0.0.1 (label "integration").
#   bash scripts/test.sh              all tests
#   bash scripts/test.sh -L unit      only unit tests (ctest arguments pass through)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh
# Integration tests are RUN_SERIAL (each starts its own servers); unit tests run beside them.
exec ctest --test-dir build --output-on-failure -j "$(nproc)" "$@"
