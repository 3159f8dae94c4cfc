#!/usr/bin/env bash
# shellcheck disable=SC2317  # the trap handlers are invoked indirectly
# trapline quick start on a fresh Debian 12 machine. Run from the repository root:
#
#   bash scripts/quickstart.sh            install packages, build, start the local stack, run the
#                                         demo, wait; Ctrl-C (or SIGTERM) stops everything
#   bash scripts/quickstart.sh --no-build skip cmake/ninja (use the existing build/)
#   bash scripts/quickstart.sh --check    non-interactive: the same in a temporary folder, then
#                                         verify it end to end (Zabbix API login; the cluster's
#                                         panel and collectors; the Zabbix hosts it builds and
#                                         their values: scripts/stack.py verify --demo), tear
#                                         down; exit 0 when all is there within 240 s
#   other options: --fresh (wipe the state in ./.stack first), --no-deps (skip scripts/deps.sh),
#                  --dir DIR (state folder instead of ./.stack)
#
# The stack (scripts/stack.py, built on tests/harness): Zabbix 6.0 server + frontend with their
# own PostgreSQL (which also holds trapline's registry database `trapline`), and targets to
# monitor (a Redis and an sshd). Everything listens on 127.0.0.1 only, on free ports; the state
# stays in ./.stack and the next run reuses it (same ports when they are free).
set -euo pipefail

# ------------------------------------------------------------------------------------------
# The trapline part (registry, coordinator, two collectors, admin panel, discovery) is
# $TRAPLINE_DEMO_HOOK, default scripts/quickstart-demo.sh, sourced in this shell once the stack
# is up, with these variables exported (and written to $TRAPLINE_STACK_DIR/env.sh for other
# shells: `. .stack/env.sh`):
#   ZBX_SERVER_HOST ZBX_SERVER_PORT    the Zabbix trapper (127.0.0.1 and its port)
#   ZBX_API_URL ZBX_FRONTEND_URL       http://127.0.0.1:PORT/api_jsonrpc.php and the UI
#   ZBX_API_USER ZBX_API_PASSWORD      Admin / zabbix
#   TRAPLINE_DB_DSN                    libpq DSN of the registry database `trapline`
#   TARGET_PG_DSN TARGET_PG_PORT       a PostgreSQL to monitor (the stack's own)
#   TARGET_REDIS_HOST/PORT/URL         a Redis to monitor
#   TARGET_SSH_HOST/PORT/USER/KEY/KEY_RSA/KNOWN_HOSTS   an sshd to monitor (this machine)
#   TRAPLINE_BUILD_DIR TRAPLINE_STACK_DIR
# Its long-running commands go to the background with `&`: every background job of this script
# is sent SIGTERM (then SIGKILL after 10 s) before the stack stops. A failing command in it
# stops everything.
run_demo() {
  local hook="${TRAPLINE_DEMO_HOOK:-$ROOT/scripts/quickstart-demo.sh}"
  [ -f "$hook" ] || die "the demo hook $hook is missing"
  echo "quickstart: running $hook"
  # shellcheck source=/dev/null
  . "$hook"
}
# ------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=/usr/bin/python3

build=1 check=0 deps=1 fresh=0 state_dir="$ROOT/.stack"
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --check) check=1 ;;
    --no-deps) deps=0 ;;
    --fresh) fresh=1 ;;
    --dir) state_dir="$(realpath -m "$2")"; shift ;;
    -h|--help) sed -n '3,20p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'quickstart: ERROR: %s\n' "$*" >&2; exit 1; }

if [ "$deps" = 1 ]; then
  step "Debian packages (scripts/deps.sh)"
  bash "$ROOT/scripts/deps.sh" || die "scripts/deps.sh failed (see above)"
fi
[ -x "$PY" ] || die "$PY not found (scripts/deps.sh installs python3)"

export TRAPLINE_BUILD_DIR="${TRAPLINE_BUILD_DIR:-$ROOT/build}"  # another build (with --no-build)
if [ "$build" = 1 ]; then
  step "build (cmake -G Ninja, RelWithDebInfo) into $TRAPLINE_BUILD_DIR"
  cmake -S . -B "$TRAPLINE_BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    || die "cmake configure failed; fix it, or run with --no-build to start the stack anyway"
  ninja -C "$TRAPLINE_BUILD_DIR" || die "build failed; fix it, or run with --no-build to start the stack anyway"
  if command -v npm >/dev/null 2>&1; then
    step "admin panel (ui/: npm ci, vite build) into ui/dist"
    (cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent) \
      || die "the admin panel did not build (see above); --no-build starts the stack with what is built"
  else
    echo "quickstart: npm not found: the admin panel is not built (scripts/deps.sh installs it)" >&2
  fi
fi

tmp_state=""
if [ "$check" = 1 ]; then
  tmp_state="$(mktemp -d "${TMPDIR:-/tmp}/trapline-quickstart-check.XXXXXX")"
  chmod 755 "$tmp_state"
  state_dir="$tmp_state/stack"
fi
mkdir -p "$state_dir"
env_file="$state_dir/env.sh"
rm -f "$env_file"

stack_pid=""
stopping=0

stop_all() {
  # background jobs of this script other than the stack: the demo's processes
  local pids=() p
  for p in $(jobs -p); do
    [ "$p" = "$stack_pid" ] || pids+=("$p")
  done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "quickstart: stopping demo processes ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
      local alive=0
      for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
  if [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
  stack_pid=""
  [ -n "$tmp_state" ] && rm -rf "$tmp_state"
  return 0
}

on_signal() {
  [ "$stopping" = 1 ] && return 0
  stopping=1
  echo
  echo "quickstart: $1 received, stopping everything..."
  stop_all
  echo "quickstart: everything stopped."
  trap - EXIT
  exit 0
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM HUP
  stop_all
  [ "$rc" = 0 ] || echo "quickstart: exited with code $rc; everything stopped." >&2
  exit "$rc"
}

trap 'on_signal SIGINT' INT
trap 'on_signal SIGTERM' TERM
trap 'on_signal SIGHUP' HUP
trap on_exit EXIT

step "local stack on 127.0.0.1 (state in $state_dir)"
fresh_arg=()
[ "$fresh" = 1 ] && fresh_arg=(--fresh)
"$PY" "$ROOT/scripts/stack.py" up --dir "$state_dir" --env-file "$env_file" "${fresh_arg[@]}" &
stack_pid=$!

# wait until the stack has written its env file (it does so once everything answers)
deadline=$((SECONDS + 300))
until [ -f "$env_file" ]; do
  if ! kill -0 "$stack_pid" 2>/dev/null; then
    wait "$stack_pid" || true
    stack_pid=""
    die "the stack failed to start (see the messages above)"
  fi
  [ "$SECONDS" -lt "$deadline" ] || die "the stack did not come up within 300 s"
  sleep 0.2
done
set -a
# shellcheck source=/dev/null
. "$env_file"
set +a

step "demo (scripts/quickstart-demo.sh)"
run_demo || die "the demo hook failed"

if [ "$check" = 1 ]; then
  step "check: Zabbix API login, then the cluster end to end"
  "$PY" "$ROOT/scripts/stack.py" verify --demo --env-file "$env_file" || {
    for log in coordinator collector-1 collector-2; do
      echo "---- last lines of $log.log"
      tail -n 15 "$state_dir/$log.log" 2>/dev/null || true
    done
    die "the check failed (see above)"
  }
  stop_all
  trap - EXIT
  echo "quickstart: check passed; everything stopped."
  exit 0
fi

cat <<EOF

quickstart: running. Open $ZBX_FRONTEND_URL (login: $ZBX_API_USER / $ZBX_API_PASSWORD);
            Zabbix server (trapper) at $ZBX_SERVER_HOST:$ZBX_SERVER_PORT.
            Other shells: . $env_file
            Press Ctrl-C to stop everything.
EOF

# wait for the stack (returns early when a trapped signal arrives; the trap exits)
rc=0
while [ -n "$stack_pid" ] && kill -0 "$stack_pid" 2>/dev/null; do
  rc=0
  wait "$stack_pid" || rc=$?
done
stack_pid=""
if [ "$rc" = 0 ]; then
  # the stack got the signal itself (e.g. Ctrl-C reached the whole process group) and stopped
  stopping=1
  stop_all
  trap - EXIT
  echo "quickstart: everything stopped."
  exit 0
fi
die "the stack stopped on its own (exit code $rc; see the messages above)"
