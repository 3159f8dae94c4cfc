#!/usr/bin/env bash
# Installs every Debian package trapline needs to build, test and run its local stack.
# Idempotent: only missing packages are installed. Needs root (or sudo) on Debian 12.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config ninja-build
  # libraries (DESIGN.md)
  libuv1-dev libssh2-1-dev libpq-dev libhiredis-dev libcurl4-openssl-dev
  nlohmann-json3-dev doctest-dev libspdlog-dev libfmt-dev libcli11-dev libtoml11-dev
  zlib1g-dev libsodium-dev libssl-dev libh2o-dev
  # real servers for the quick start and the integration tests
  postgresql redis-server openssh-server openssh-client
  zabbix-server-pgsql zabbix-frontend-php php-cli php-pgsql zabbix-agent
  # tools used by scripts and benchmarks
  curl procps iproute2 python3
  # the discovery parser's fuzzer (tests/fuzz: clang with -fsanitize=fuzzer needs the runtime)
  clang libclang-rt-14-dev
  # admin panel (ui/: built with Vite from npm) and its browser tests (playwright-core drives
  # Debian's chromium; never a downloaded browser). npm: see below.
  nodejs chromium
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's nodejs comes without npm (package npm); NodeSource's nodejs ships npm and conflicts
# with Debian's npm package: ask for it only when there is no npm command.
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages present"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package scripts may start services on a machine with systemd; trapline runs its own
# private instances on their own ports, so the system-wide ones are not needed.
echo "deps: done"
