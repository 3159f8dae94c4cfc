# shellcheck shell=bash
# The quick start's demo, sourced by scripts/quickstart.sh once the local stack is up (see its
# HOOK comment for the variables). What trapline has so far: it samples this machine every
# second, compresses each metric into value sets per 10 s interval (exact min/max/mean), and
# pushes them into Zabbix through the sender, batched. Later issues replace this pipeline with
# the collector, the coordinator and zabbix-sync.

demo_host="trapline-quickstart"
demo_interval=10
trapline="$TRAPLINE_BUILD_DIR/trapline"

# The host, its trapper items and a min/avg/max graph, through the Zabbix API (idempotent).
"$PY" "$ROOT/scripts/quickstart_zabbix.py" "$demo_host" || return 1

# [sender] settings for every pipeline: batches of values, a spool for outages.
cat >"$TRAPLINE_STACK_DIR/demo-sender.toml" <<TOML
[sender]
server = "$ZBX_SERVER_HOST"
port = $ZBX_SERVER_PORT
connections = 2
spool_dir = "$TRAPLINE_STACK_DIR/spool"
TOML

# sample KEY [--counter] -- COMMAND: COMMAND prints one number; every second it becomes a
# sample "<time> <value>", the samples become value sets, the value sets go to Zabbix.
sample() {
  local key=$1 counter=$2; shift 3
  while true; do
    printf '%s %s\n' "$(date +%s.%N)" "$("$@")"
    sleep 1
  done | "$trapline" compress --interval "$demo_interval" $counter \
       | awk -v h="$demo_host" -v k="$key" '{ print h, k, $1, $2, $3; fflush() }' \
       | "$trapline" send --config "$TRAPLINE_STACK_DIR/demo-sender.toml" -T -N -r -i - \
         >>"$TRAPLINE_STACK_DIR/demo-$key.log" 2>&1 &
}
load1() { cut -d' ' -f1 /proc/loadavg; }
mem_available() { awk '/^MemAvailable:/ { print $2 * 1024 }' /proc/meminfo; }
cpu_busy_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
ctxt() { awk '/^ctxt / { print $2 }' /proc/stat; }

sample system.load1 "" -- load1
sample vm.memory.available "" -- mem_available
sample system.cpu.busy --counter -- cpu_busy_jiffies
sample system.context_switches --counter -- ctxt

echo "quickstart: sampling this machine every second into host '$demo_host';"
echo "            value sets every ${demo_interval} s (logs: $TRAPLINE_STACK_DIR/demo-*.log)"
echo "            Graphs: Monitoring > Hosts > $demo_host > Graphs"
