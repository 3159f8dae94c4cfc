# shellcheck shell=bash
# The quick start's trapline part, sourced by scripts/quickstart.sh once the local stack is up
# (see its HOOK comment for the variables): the cluster of issue 5 on one machine.
#
#   registry (the stack's PostgreSQL, database `trapline`)
#     <- trapline coordinator (leader; zabbix-sync through the Zabbix API)
#     <- two trapline collectors (weights 1 and 2), sending to the Zabbix server
#
# The registry gets three hosts, each with one enabled service: this machine over SSH (the
# stack's own sshd), the stack's PostgreSQL and its Redis. The coordinator turns them into
# tasks and shares them between the collectors; each collector reports the entities it finds;
# the coordinator then builds the Zabbix hosts (items, graphs, triggers, dashboards).
#
# The admin panel (issue 7) is served by the coordinator: an admin user is made with
# `trapline user add`, and discovery/trapline-discover reports this machine (enrolling with
# the environment's secret), so that it waits on the panel's Discovery page, one click away
# from being monitored with the default credential profiles.

pg_port="$TARGET_PG_PORT"
ssh_port="$TARGET_SSH_PORT"
redis_port="$TARGET_REDIS_PORT"
registry="$TRAPLINE_DB_DSN"
log_dir="$TRAPLINE_STACK_DIR"

# The panel's port: 8470 when free (the same URL each run), else any free one.
http_port="$(/usr/bin/python3 - <<'PY'
import socket
for port in (8470, 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        print(s.getsockname()[1])
        break
    except OSError:
        pass
    finally:
        s.close()
PY
)"
panel_url="http://127.0.0.1:$http_port/"
printf '%s\n' "$panel_url" >"$TRAPLINE_STACK_DIR/panel.url"  # for `stack.py verify --demo`
ui_dir="$ROOT/ui/dist"

umask 077
printf '%s\n' "$ZBX_API_PASSWORD" >"$TRAPLINE_STACK_DIR/zabbix.password"
# Secrets made once per state folder: the API token, the enrolment secret, the admin password.
for f in api.token enrolment.secret admin.password; do
  [ -s "$TRAPLINE_STACK_DIR/$f" ] || head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$TRAPLINE_STACK_DIR/$f"
done
ui_line="# ui_dir: ui/dist was not built (npm missing?): no panel"
[ -f "$ui_dir/index.html" ] && ui_line="ui_dir = \"$ui_dir\""
cat >"$TRAPLINE_STACK_DIR/coordinator.toml" <<TOML
[coordinator]
name = "quickstart-coordinator"
registry = "$registry"

[http]
listen = "127.0.0.1:$http_port"
api_token_file = "$TRAPLINE_STACK_DIR/api.token"
$ui_line

[discovery]
enrolment_secret_file = "$TRAPLINE_STACK_DIR/enrolment.secret"

[zabbix]
url = "$ZBX_FRONTEND_URL"
user = "$ZBX_API_USER"
password_file = "$TRAPLINE_STACK_DIR/zabbix.password"
trapper_hosts = "127.0.0.1"
frontend_url = "${ZBX_FRONTEND_URL%/}"
TOML
for c in 1 2; do
  cat >"$TRAPLINE_STACK_DIR/collector-$c.toml" <<TOML
[collector]
name = "quickstart-collector-$c"
self_host = "trapline-quickstart-collector-$c"   # its own health in Zabbix (plugin trapline)
self_interval = 10

[sender]
server = "$ZBX_SERVER_HOST"
port = $ZBX_SERVER_PORT
spool_dir = "$TRAPLINE_STACK_DIR/spool-$c"

[cluster]
registry = "$registry"
weight = $c
secrets_dir = "$TRAPLINE_STACK_DIR/secrets-$c"
TOML
done
umask 022

# Own process groups, so the quick start's SIGTERM on stop reaches each (and only it).
setsid "$TRAPLINE_BUILD_DIR/trapline" coordinator --config "$TRAPLINE_STACK_DIR/coordinator.toml" \
  >>"$log_dir/coordinator.log" 2>&1 &

# The coordinator migrates the registry's schema; then the hosts and services go in.
for _ in $(seq 1 60); do
  [ "$(psql "$registry" -Atc "SELECT to_regclass('tasks') IS NOT NULL" 2>/dev/null)" = t ] && break
  sleep 0.5
done
psql "$registry" -v ON_ERROR_STOP=1 -q >/dev/null <<SQL || return 1
-- The kinds' defaults: what a discovered service gets when its host is enabled.
INSERT INTO credential_profiles (name, kind, username, options, is_default) VALUES
  ('quickstart-ssh', 'ssh', '$TARGET_SSH_USER',
   '{"identity": "$TARGET_SSH_KEY", "known_hosts": "$TARGET_SSH_KNOWN_HOSTS", "interval": 10}', true),
  ('quickstart-postgresql', 'postgresql', 'postgres', '{"interval": 10}', true),
  ('quickstart-redis', 'redis', '', '{"interval": 10}', true)
ON CONFLICT (name) DO UPDATE SET username = EXCLUDED.username, options = EXCLUDED.options,
  is_default = true;
INSERT INTO hosts (name, address, enabled) VALUES
  ('quickstart-linux', '127.0.0.1', true), ('quickstart-postgresql', '127.0.0.1', true),
  ('quickstart-redis', '127.0.0.1', true)
ON CONFLICT (name) DO UPDATE SET enabled = true;
INSERT INTO services (host_id, plugin, port, credential_profile_id, enabled)
SELECT h.id, v.plugin, v.port, p.id, true
FROM (VALUES ('quickstart-linux', 'linux', $ssh_port, 'quickstart-ssh'),
             ('quickstart-postgresql', 'postgresql', $pg_port, 'quickstart-postgresql'),
             ('quickstart-redis', 'redis', $redis_port, 'quickstart-redis')) AS v(host, plugin, port, profile)
JOIN hosts h ON h.name = v.host JOIN credential_profiles p ON p.name = v.profile
ON CONFLICT (host_id, plugin, port) DO UPDATE SET enabled = true, credential_profile_id = EXCLUDED.credential_profile_id;
SQL

for c in 1 2; do
  setsid "$TRAPLINE_BUILD_DIR/trapline" collector --config "$TRAPLINE_STACK_DIR/collector-$c.toml" \
    >>"$log_dir/collector-$c.log" 2>&1 &
done

# The first admin, then this machine reported by the discovery script (as cron would).
if ! "$TRAPLINE_BUILD_DIR/trapline" user list --registry "$registry" 2>/dev/null | grep -q '^admin\b'; then
  "$TRAPLINE_BUILD_DIR/trapline" user add admin --role admin --registry "$registry" \
    --password-file "$TRAPLINE_STACK_DIR/admin.password" >>"$log_dir/coordinator.log" 2>&1 || return 1
fi
for _ in $(seq 1 40); do
  curl -fsS -o /dev/null "${panel_url}api/v1/status" -H "Authorization: Bearer $(cat "$TRAPLINE_STACK_DIR/api.token")" && break
  sleep 0.25
done
discovered="$(hostname)"
if "$ROOT/discovery/trapline-discover" --registry "${panel_url%/}" \
    --token-file "$TRAPLINE_STACK_DIR/enrolment.secret" --state-dir "$TRAPLINE_STACK_DIR/discover" \
    >>"$log_dir/discovery.log" 2>&1; then
  # The stack's servers listen on 127.0.0.1 only: point the discovered host there (an address
  # set by an operator is never overwritten by later reports).
  printf '%s\n' "UPDATE hosts SET address = '127.0.0.1' WHERE name = :'host';" |
    psql "$registry" -q -v ON_ERROR_STOP=1 -v host="$discovered" >/dev/null || true
  discovery_line="this machine ('$discovered') is on the Discovery page, one click from monitored
            (services that the stack's default credential profiles cannot reach show why there)"
else
  discovery_line="trapline-discover failed: see $log_dir/discovery.log"
fi

echo "quickstart: coordinator and collectors 1 and 2 (weights 1 and 2) running; logs in $log_dir:"
echo "            coordinator.log, collector-1.log, collector-2.log"
echo "            registry: psql \"$registry\"  (hosts, services, tasks, collectors, entities, audit_log)"
echo "            Zabbix hosts quickstart-linux, -postgresql, -redis are made by zabbix-sync as"
echo "            their entities come in, then get values every 10 s (Monitoring > Latest data,"
echo "            host group 'trapline'; dashboards 'trapline: quickstart-linux / linux' etc.)"
if [ -f "$ui_dir/index.html" ]; then
  echo "quickstart: admin panel $panel_url  (login: admin / $(cat "$TRAPLINE_STACK_DIR/admin.password"))"
else
  echo "quickstart: admin panel not built (ui/dist missing: npm not installed?); API at ${panel_url}api/v1/"
fi
echo "            $discovery_line"
