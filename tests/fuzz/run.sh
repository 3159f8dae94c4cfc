#!/bin/sh
# Builds the discovery parser's fuzzer with clang and runs it for a bounded time.
#   tests/fuzz/run.sh [seconds]      (default 60; FUZZ_BUILD_DIR, default build-fuzz/)
# Exit status: libFuzzer's (0 when nothing was found). New corpus entries go to a scratch
# folder; tests/fuzz/corpus/discovery/ (the seeds) is only read.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
secs=${1:-60}
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
CC=${CC:-clang} CXX=${CXX:-clang++} cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" --target discovery_fuzz
work=$(mktemp -d /tmp/trapline-fuzz-XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cd "$work"
status=0
"$build/discovery_fuzz" -max_total_time="$secs" -max_len=300000 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
  -dict="$here/discovery.dict" "$work/corpus" "$here/corpus/discovery" >"$work/log" 2>&1 || status=$?
tail -n 25 "$work/log"
if ls "$work/artifacts/"* >/dev/null 2>&1; then
  echo "fuzz: crash inputs kept in $root/build-fuzz-artifacts/" >&2
  mkdir -p "$root/build-fuzz-artifacts" && cp "$work/artifacts/"* "$root/build-fuzz-artifacts/"
  exit 1
fi
exit $status
