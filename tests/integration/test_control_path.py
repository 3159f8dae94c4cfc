"""The control path end to end (issue 5, point 6), every component real and on 127.0.0.1: a
PostgreSQL registry, `trapline coordinator` with a [zabbix] section, one `trapline collector`
in cluster mode sending to a Zabbix 6.0 server, and a Redis to monitor.

  check_enable_to_values   a service enabled in the registry becomes a task; the collector
                           runs it and reports its entities; the coordinator syncs the Zabbix
                           host (items, graphs, triggers, dashboard) and values arrive in
                           Zabbix's history; the sync is in the audit log
  check_new_entity_synced  a database appears in Redis: its items appear in Zabbix
  check_maintenance_through_registry  hosts.maintenance set in the registry (as the API will):
                           the coordinator makes the Zabbix maintenance (with data collection),
                           audits it, and removes it when cleared
  check_service_disabled   the service disabled: its task goes, the collector stops it
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LongLivedProc, check, make_tmp, run_checks, say, trapline_bin, wait_until  # noqa: E402
from harness import HOST, PostgresServer, RedisServer, ZabbixStack  # noqa: E402

REDIS_PASSWORD = "cp-redis-pw"


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("control-path")
        self.zbx = ZabbixStack()
        self.zbx.start()
        self.pg = PostgresServer()
        self.pg.start()
        self.pg.create_db("trapline")
        self.redis = RedisServer(password=REDIS_PASSWORD)
        self.redis.start()
        self.redis.command("SET", "k", "v", password=REDIS_PASSWORD)
        dsn = f"postgresql://postgres@{HOST}:{self.pg.port}/trapline"
        pw = os.path.join(self.tmp, "zabbix.pw")
        with open(pw, "w") as f:
            f.write(self.zbx.password + "\n")
        conf = os.path.join(self.tmp, "coordinator.toml")
        with open(conf, "w") as f:
            f.write(f"""[coordinator]
name = "k1"
registry = "{dsn}"
[zabbix]
url = "{self.zbx.frontend_url}"
user = "{self.zbx.user}"
password_file = "{pw}"
trapper_hosts = "127.0.0.1"
host_group = "trapline cluster"
""")
        self.coordinator = LongLivedProc([trapline_bin(), "coordinator", "--config", conf], self.tmp, "k1")
        wait_until(lambda: self.sql_value("SELECT to_regclass('tasks') IS NOT NULL") == "t", 30,
                   "registry migrated")
        conf = os.path.join(self.tmp, "c1.toml")
        with open(conf, "w") as f:
            f.write(f"""[collector]
name = "c1"
[sender]
server = "127.0.0.1"
port = {self.zbx.server_port}
flush_interval = 0.5
grace = 60
spool_dir = "{self.tmp}/spool"
[cluster]
registry = "{dsn}"
secrets_dir = "{self.tmp}/secrets"
""")
        self.collector = LongLivedProc([trapline_bin(), "collector", "--config", conf], self.tmp, "c1")

    def sql(self, text):
        return self.pg.psql(text, db="trapline")

    def sql_value(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows else None

    def close(self):
        self.collector.end()
        self.coordinator.end()
        self.redis.close()
        self.pg.close()
        self.zbx.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def zbx_keys(ctx, host):
    hosts = ctx.zbx.api("host.get", {"filter": {"host": [host]}, "output": ["hostid"]})
    if not hosts:
        return set()
    return {i["key_"] for i in ctx.zbx.api("item.get", {"hostids": [hosts[0]["hostid"]],
                                                        "output": ["key_"]})}


def check_enable_to_values(ctx):
    t0 = time.monotonic()
    # Value sets every 5 s (a task option), so that values show up within the test.
    ctx.sql(f"""
INSERT INTO credential_profiles (name, kind, secret, options)
  VALUES ('redis', 'redis', '{{"password": "{REDIS_PASSWORD}"}}', '{{"interval": 5}}');
INSERT INTO hosts (name, address, enabled) VALUES ('cp-redis', '{HOST}', true);
INSERT INTO services (host_id, plugin, port, credential_profile_id, enabled)
  SELECT h.id, 'redis', {ctx.redis.port}, p.id, true FROM hosts h, credential_profiles p
  WHERE h.name = 'cp-redis' AND p.name = 'redis';
""")
    wait_until(lambda: ctx.sql_value("SELECT count(*) FROM tasks") == "1", 10, "the service's task")
    say(f"task made after {time.monotonic() - t0:.1f} s")
    wait_until(lambda: ctx.sql_value("SELECT count(*) FROM entities WHERE kind = 'keyspace' AND name = 'db0'") == "1",
               20, "the collector reports keyspace db0")
    say(f"entities reported after {time.monotonic() - t0:.1f} s")
    keys = wait_until(lambda: zbx_keys(ctx, "cp-redis") or None, 60, "the Zabbix host made by zabbix-sync")
    check("redis.db.keys[db0]" in keys and "redis.uptime" in keys, f"keys {sorted(keys)[:10]}")
    say(f"Zabbix host cp-redis with {len(keys)} items after {time.monotonic() - t0:.1f} s")
    # The dashboard comes last in a sync.
    wait_until(lambda: ctx.zbx.api("dashboard.get", {"filter": {"name": ["trapline: cp-redis / redis"]}}),
               30, "the host's dashboard")
    rows = ctx.zbx.wait_for_history(("cp-redis", "redis.db.keys[db0]"), 1, timeout=60)
    check(rows[-1][2] == 1.0, f"redis.db.keys[db0] history {rows}")
    say(f"values in Zabbix after {time.monotonic() - t0:.1f} s: db0 keys = {rows[-1][2]}")
    audit = ctx.sql("SELECT actor, action, object_id FROM audit_log WHERE action = 'zabbix.sync'")
    check(("coordinator:k1", "zabbix.sync", "cp-redis") in [tuple(r) for r in audit], f"audit {audit}")


def check_new_entity_synced(ctx):
    # redis_command opens a fresh connection per command: SELECT and SET in one script.
    ctx.redis.command("EVAL", "redis.call('SELECT', 3); return redis.call('SET', 'x', 'y')", "0",
                      password=REDIS_PASSWORD)
    keys = wait_until(lambda: (k := zbx_keys(ctx, "cp-redis")) and "redis.db.keys[db3]" in k and k, 60,
                      "items of keyspace db3 in Zabbix")
    say(f"db3 appeared: {len([k for k in keys if 'db3' in k])} items of it in Zabbix")


def maintenances(ctx):
    return ctx.zbx.api("maintenance.get", {"filter": {"name": ["trapline: cp-redis"]}, "output": "extend"})


def check_maintenance_through_registry(ctx):
    ctx.sql("UPDATE hosts SET maintenance = true, maintenance_until = now() + interval '2 hours' "
            "WHERE name = 'cp-redis'")
    m = wait_until(lambda: maintenances(ctx), 20, "trapline's Zabbix maintenance for cp-redis")
    check(m[0]["maintenance_type"] == "0", f"maintenance {m}")
    check(abs(int(m[0]["active_till"]) - (time.time() + 7200)) < 120, f"active_till {m[0]['active_till']}")
    wait_until(lambda: ctx.sql_value("SELECT count(*) FROM audit_log WHERE action = 'maintenance.start' "
                                     "AND object_id = 'cp-redis'") == "1", 10, "audited")
    say("maintenance on through the registry: in Zabbix with data collection, audited")
    ctx.sql("UPDATE hosts SET maintenance = false, maintenance_until = NULL WHERE name = 'cp-redis'")
    wait_until(lambda: not maintenances(ctx), 20, "the maintenance removed")
    check(ctx.sql_value("SELECT maintenance_applied FROM hosts WHERE name = 'cp-redis'") == "off", "applied")
    say("maintenance off through the registry: removed from Zabbix")


def check_service_disabled(ctx):
    ctx.sql("UPDATE services SET enabled = false")
    wait_until(lambda: ctx.sql_value("SELECT count(*) FROM tasks") == "0", 10, "the task removed")
    wait_until(lambda: "stopped" in ctx.collector.stderr(), 15, "the collector stops the target")
    say("task removed and stopped on the collector")


if __name__ == "__main__":
    sys.exit(run_checks([check_enable_to_values, check_new_entity_synced,
                         check_maintenance_through_registry, check_service_disabled],
                        setup=setup, teardown=teardown))
