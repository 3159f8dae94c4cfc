# shellcheck shell=bash
# The quick start's demo, sourced by scripts/quickstart.sh once the local stack is up (see its
# HOOK comment for the variables). What trapline has so far: it samples this machine every
# second, compresses each metric into value sets per 10 s interval (exact min/max/mean), and
# pushes them into Zabbix through the sender, batched. Later issues replace this pipeline with
# the collector, the coordinator and zabbix-sync.

demo_host="trapline-quickstart"
demo_interval=10

# The host, its trapper items and a min/avg/max graph, through the Zabbix API (idempotent).
"$PY" "$ROOT/scripts/quickstart_zabbix.py" "$demo_host" || return 1

# [sender] settings for every pipeline (each also gets a spool folder of its own for outages).
cat >"$TRAPLINE_STACK_DIR/demo-sender.toml" <<TOML
[sender]
server = "$ZBX_SERVER_HOST"
port = $ZBX_SERVER_PORT
connections = 2
TOML

# One pipeline per metric (scripts/demo-pipeline.sh): every second a sample "<time> <value>",
# the samples become value sets, the value sets go to Zabbix. Each runs in a process group
# of its own, so the quick start's SIGTERM on stop ends every process of it.
sample() {
  local key=$1
  shift
  setsid "$ROOT/scripts/demo-pipeline.sh" "$demo_host" "$key" "$demo_interval" \
    "$TRAPLINE_STACK_DIR/demo-sender.toml" "$@" >>"$TRAPLINE_STACK_DIR/demo-$key.log" 2>&1 &
}
sample system.load1 -- "cut -d' ' -f1 /proc/loadavg"
sample vm.memory.available -- "awk '/^MemAvailable:/ { print \$2 * 1024 }' /proc/meminfo"
sample system.cpu.busy --counter -- "awk '/^cpu / { print \$2 + \$3 + \$4 + \$7 + \$8 }' /proc/stat"
sample system.context_switches --counter -- "awk '/^ctxt / { print \$2 }' /proc/stat"

echo "quickstart: sampling this machine every second into host '$demo_host';"
echo "            value sets every ${demo_interval} s (logs: $TRAPLINE_STACK_DIR/demo-*.log)"
echo "            Graphs: Monitoring > Hosts > $demo_host > Graphs"
