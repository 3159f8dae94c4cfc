#!/usr/bin/env bash
# One metric of the quick start's demo, in a process group of its own:
#   sampler (every second: "<time> <value>") | trapline compress | trapline send
# Usage: setsid scripts/demo-pipeline.sh HOST KEY INTERVAL SENDER_TOML [--counter] -- COMMAND...
# COMMAND prints one number. SIGTERM stops the whole pipeline (its process group).
set -u
host=$1 key=$2 interval=$3 toml=$4
shift 4
counter=()
[ "${1:-}" = "--counter" ] && { counter=(--counter); shift; }
[ "${1:-}" = "--" ] && shift
trapline="${TRAPLINE_BUILD_DIR:?}/trapline"

# The pipeline runs in the background so that `wait` (and with it the trap) is interruptible.
trap 'trap - TERM INT HUP; kill -TERM 0 2>/dev/null; exit 0' TERM INT HUP
while true; do
  printf '%s %s\n' "$(date +%s.%N)" "$(bash -c "$*")"
  sleep 1
done | "$trapline" compress --interval "$interval" "${counter[@]}" --host "$host" --key "$key" \
     | "$trapline" send --config "$toml" --spool "$(dirname "$toml")/spool/$key" --retry-for 86400 \
         -T -N -r -i - &
wait
