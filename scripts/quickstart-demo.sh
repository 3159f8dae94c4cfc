# shellcheck shell=bash
# The quick start's trapline part, sourced by scripts/quickstart.sh once the local stack is up
# (see its HOOK comment for the variables): a collector monitoring this machine over SSH, the
# stack's PostgreSQL and its Redis, every second, value sets every 10 s, into Zabbix.
# zabbix-sync (`trapline sync`) first makes each Zabbix host from what its target reports:
# trapper items, graphs, triggers and a dashboard. A later issue adds the coordinator.

pg_uri="postgresql://postgres@127.0.0.1:$TARGET_PG_PORT/postgres"
ssh_uri="ssh://$TARGET_SSH_USER@$TARGET_SSH_HOST:$TARGET_SSH_PORT"
redis_uri="redis://$TARGET_REDIS_HOST:$TARGET_REDIS_PORT"

export TRAPLINE_ZABBIX_URL="$ZBX_FRONTEND_URL" TRAPLINE_ZABBIX_USER="$ZBX_API_USER" \
  TRAPLINE_ZABBIX_PASSWORD="$ZBX_API_PASSWORD"
qs_sync() {  # host uri [options]: prints the summary line of the sync
  local host="$1"
  shift
  "$TRAPLINE_BUILD_DIR/trapline" sync "$@" --host "$host" --trapper-hosts 127.0.0.1 | tail -n 1
}
qs_sync quickstart-linux "$ssh_uri" --identity "$TARGET_SSH_KEY" \
  --known-hosts "$TARGET_SSH_KNOWN_HOSTS" || return 1
qs_sync quickstart-postgresql "$pg_uri" || return 1
qs_sync quickstart-redis "$redis_uri" || return 1

cat >"$TRAPLINE_STACK_DIR/collector.toml" <<TOML
[collector]
name = "quickstart"

[sender]
server = "$ZBX_SERVER_HOST"
port = $ZBX_SERVER_PORT
spool_dir = "$TRAPLINE_STACK_DIR/spool"

[[target]]
host = "quickstart-linux"
uri = "$ssh_uri"
identity = "$TARGET_SSH_KEY"
known_hosts = "$TARGET_SSH_KNOWN_HOSTS"
interval = 10

[[target]]
host = "quickstart-postgresql"
uri = "$pg_uri"
interval = 10

[[target]]
host = "quickstart-redis"
uri = "$redis_uri"
interval = 10
TOML

# Its own process group, so the quick start's SIGTERM on stop reaches it (and only it).
setsid "$TRAPLINE_BUILD_DIR/trapline" collector --config "$TRAPLINE_STACK_DIR/collector.toml" \
  >>"$TRAPLINE_STACK_DIR/collector.log" 2>&1 &

echo "quickstart: collector running (log: $TRAPLINE_STACK_DIR/collector.log);"
echo "            hosts quickstart-linux, quickstart-postgresql, quickstart-redis get values every 10 s"
echo "            (Monitoring > Latest data, filter on host group 'trapline'; dashboards"
echo "            'trapline: quickstart-linux / linux' etc. under Monitoring > Dashboards)"
