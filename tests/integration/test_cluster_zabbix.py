"""The cluster with Zabbix as the sink (issue 5's integration test): a real PostgreSQL registry,
two `trapline coordinator`s with [zabbix] (the leader syncs the hosts), three `trapline
collector`s of weights 1, 2 and 3 sending to a real Zabbix 6.0 server, and a real Redis whose
12 instances-by-name (hosts h1..h12) are the tasks. Value sets every second (a task option),
so that Zabbix's history shows every tick. Everything on 127.0.0.1, started by this test.

How duplicates and gaps are seen in Zabbix: `redis.memory.max` (maxmemory) is constant, so a
value set of it is exactly one value, inside its one-second interval [k, k + 1). One value per
second per host is what one collector sends; two values in one second mean two collectors
sampled the task in the same interval (a duplicate); seconds without a value are a gap.

  check_shares             collectors of weights 1, 2, 3 run 2, 4 and 6 of the 12 tasks (equal
                           costs: shares within +-10% means exactly these); zabbix-sync makes
                           the 12 Zabbix hosts and values arrive for each
  check_collector_killed   kill -9 of c1: within 5 s its tasks run on the others
  check_collector_joins    c4 (weight 1) joins: it takes its share (2 tasks), no more
  check_leader_killed      kill -9 of the leading coordinator: the standby leads within 5 s and
                           moves nothing
  check_registry_down      the registry stopped for 30 s: values keep arriving in Zabbix from
                           every host; back, the collectors heartbeat again
  check_zabbix_history     over the whole run, per host, from Zabbix's history: no duplicate
                           (one value per second; at a hand-over the old and the new collector
                           may each send a value for the same second, from different ticks, once
                           per hand-over), and no gap beyond the bounds: 2 s for a hand-over, 7 s
                           for the tasks of the killed collector (detection 3 s, restart
                           elsewhere, and its unsent last half second dies with it)
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import LongLivedProc, check, make_tmp, run_checks, say, trapline_bin, wait_until  # noqa: E402
from harness import HOST, PostgresServer, RedisServer, ZabbixStack  # noqa: E402

REDIS_PASSWORD = "cz-redis-pw"
HOSTS = [f"h{i}" for i in range(1, 13)]
KEY = "redis.memory.max"


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("cluster-zabbix")
        self.zbx = ZabbixStack()
        self.zbx.start()
        self.pg = PostgresServer()
        self.pg.start()
        self.pg.create_db("trapline")
        self.dsn = f"postgresql://postgres@{HOST}:{self.pg.port}/trapline"
        self.redis = RedisServer(password=REDIS_PASSWORD)
        self.redis.start()
        self.procs = {}
        self.killed_hosts = set()
        self.moves = {}  # host -> how many times its task changed collector (hand-overs)
        self.t_values = None  # when every host had values in Zabbix
        self.zbx_pw = os.path.join(self.tmp, "zabbix.pw")
        with open(self.zbx_pw, "w") as f:
            f.write(self.zbx.password + "\n")
        for k in ("k1", "k2"):
            self.start_coordinator(k)
        wait_until(lambda: self.sql_value("SELECT to_regclass('tasks') IS NOT NULL") == "t", 30,
                   "registry migrated")
        self.sql(f"""
INSERT INTO credential_profiles (name, kind, secret, options) VALUES
  ('redis', 'redis', '{{"password": "{REDIS_PASSWORD}"}}', '{{"interval": 1}}');
INSERT INTO hosts (name, address, enabled) SELECT n, '{HOST}', true FROM unnest(ARRAY{HOSTS!r}) n;
INSERT INTO services (host_id, plugin, port, credential_profile_id, enabled)
  SELECT h.id, 'redis', {self.redis.port}, (SELECT id FROM credential_profiles WHERE name = 'redis'), true
  FROM hosts h;
""")

    def start_coordinator(self, name):
        conf = os.path.join(self.tmp, f"{name}.toml")
        with open(conf, "w") as f:
            # cost_refresh = 0: the shares are checked in tasks of equal declared cost.
            f.write(f"""[coordinator]
name = "{name}"
registry = "{self.dsn}"
heartbeat_timeout = 3
cost_refresh = 0
[zabbix]
url = "{self.zbx.frontend_url}"
user = "{self.zbx.user}"
password_file = "{self.zbx_pw}"
trapper_hosts = "127.0.0.1"
host_group = "trapline cluster"
""")
        self.procs[name] = LongLivedProc([trapline_bin(), "coordinator", "--config", conf], self.tmp, name)

    def start_collector(self, name, weight):
        conf = os.path.join(self.tmp, f"{name}.toml")
        with open(conf, "w") as f:
            f.write(f"""[collector]
name = "{name}"
[sender]
server = "127.0.0.1"
port = {self.zbx.server_port}
flush_interval = 0.5
grace = 120
spool_dir = "{self.tmp}/{name}-spool"
[cluster]
registry = "{self.dsn}"
weight = {weight}
heartbeat = 0.5
resync = 5
secrets_dir = "{self.tmp}/{name}-secrets"
""")
        self.procs[name] = LongLivedProc([trapline_bin(), "collector", "--config", conf], self.tmp, name)

    def sql(self, text):
        return self.pg.psql(text, db="trapline")

    def sql_value(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows else None

    def leader(self):
        return self.sql_value("SELECT name FROM coordinator_leader")

    def tasks_by_collector(self):
        rows = self.sql("SELECT c.name, count(t.id) FROM collectors c LEFT JOIN tasks t "
                        "ON t.collector_id = c.id WHERE c.state = 'active' GROUP BY c.name")
        return {r[0]: int(r[1]) for r in rows}

    def hosts_of(self, collector):
        return {r[0] for r in self.sql(
            "SELECT h.name FROM tasks t JOIN collectors c ON c.id = t.collector_id JOIN services s "
            f"ON s.id = t.service_id JOIN hosts h ON h.id = s.host_id WHERE c.name = '{collector}'")}

    def running(self, name):
        import json
        v = self.sql_value(f"SELECT load->'running' FROM collectors WHERE name = '{name}'")
        return sorted(t for t, _ in json.loads(v or "[]"))

    def placements(self):
        return self.sql("SELECT id, collector_id, generation FROM tasks ORDER BY id")

    def items(self):
        """{host: (itemid, value_type)} of KEY on the Zabbix hosts made by zabbix-sync."""
        hosts = self.zbx.api("host.get", {"filter": {"host": HOSTS}, "output": ["host"]})
        if not hosts:
            return {}
        names = {h["hostid"]: h["host"] for h in hosts}
        items = self.zbx.api("item.get", {"hostids": list(names), "filter": {"key_": [KEY]},
                                          "output": ["itemid", "hostid", "value_type"]})
        return {names[i["hostid"]]: (i["itemid"], int(i["value_type"])) for i in items}

    def history(self, since):
        """{host: [clock + ns / 1e9, ...]} of KEY's values since `since` (unix seconds)."""
        out = {}
        items = self.items()
        by_type = {}
        for host, (itemid, vt) in items.items():
            by_type.setdefault(vt, {})[itemid] = host
        for vt, ids in by_type.items():
            rows = self.zbx.api("history.get", {"history": vt, "itemids": list(ids),
                                                "time_from": int(since), "sortfield": "clock",
                                                "output": "extend", "limit": 100000})
            for r in rows:
                out.setdefault(ids[r["itemid"]], []).append(int(r["clock"]) + int(r["ns"]) / 1e9)
        for v in out.values():
            v.sort()
        return out

    def close(self):
        for p in self.procs.values():
            p.end()
        self.redis.close()
        self.pg.close()
        self.zbx.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def shares_ok(ctx, want):
    got = ctx.tasks_by_collector()
    return got if got == want else None


def check_shares(ctx):
    for name, weight in (("c1", 1), ("c2", 2), ("c3", 3)):
        ctx.start_collector(name, weight)
    got = wait_until(lambda: shares_ok(ctx, {"c1": 2, "c2": 4, "c3": 6}), 30, "tasks shared 2/4/6")
    say(f"tasks per collector: {got}")
    t0 = time.time()
    items = wait_until(lambda: (lambda i: i if len(i) == len(HOSTS) else None)(ctx.items()), 120,
                       f"zabbix-sync to make {KEY} on the 12 Zabbix hosts")
    say(f"{len(items)} Zabbix hosts with {KEY} after {time.time() - t0:.0f} s")
    hist = wait_until(lambda: (lambda h: h if all(len(h.get(x, [])) >= 3 for x in HOSTS) else None)(
        ctx.history(time.time() - 60)), 120, "values of every host in Zabbix")
    ctx.t_values = max(v[0] for v in hist.values()) + 2
    say(f"values in Zabbix for every host after {time.time() - t0:.0f} s")


def check_collector_killed(ctx):
    ctx.killed_hosts = ctx.hosts_of("c1")
    check(len(ctx.killed_hosts) == 2, f"c1's hosts: {ctx.killed_hosts}")
    for h in ctx.killed_hosts:
        ctx.moves[h] = ctx.moves.get(h, 0) + 1
    ctx.t_kill = time.time()
    t0 = time.monotonic()
    ctx.procs["c1"].popen.kill()
    wait_until(lambda: len(ctx.running("c2")) + len(ctx.running("c3")) == 12, 15,
               "c2 and c3 run all 12 tasks after c1's kill -9")
    took = time.monotonic() - t0
    say(f"c1 killed: its tasks run elsewhere after {took:.1f} s")
    check(took <= 5.5, f"tasks of a killed collector restarted after {took:.1f} s (> 5 s)")


def check_collector_joins(ctx):
    before = {t: c for t, c, _g in ctx.placements()}
    ctx.start_collector("c4", 1)
    got = wait_until(lambda: shares_ok(ctx, {"c2": 4, "c3": 6, "c4": 2}), 30, "c4 takes 2 tasks")
    after = {t: c for t, c, _g in ctx.placements()}
    moved = [t for t in before if after[t] != before[t]]
    say(f"c4 joined: {got}; {len(moved)} tasks moved")
    check(len(moved) == 2, f"moved {moved}: c4's share is 2 tasks")
    for h in ctx.hosts_of("c4"):
        ctx.moves[h] = ctx.moves.get(h, 0) + 1
    wait_until(lambda: len(ctx.running("c4")) == 2, 10, "c4 runs its 2 tasks")


def check_leader_killed(ctx):
    before = ctx.placements()
    leader = ctx.leader()
    standby = "k2" if leader == "k1" else "k1"
    t0 = time.monotonic()
    ctx.procs[leader].popen.kill()
    wait_until(lambda: ctx.leader() == standby, 10, f"{standby} leads", interval=0.1)
    took = time.monotonic() - t0
    say(f"leader {leader} killed: {standby} leads after {took:.1f} s")
    check(took <= 5, f"takeover took {took:.1f} s (> 5 s)")
    time.sleep(3)
    check(ctx.placements() == before, "the takeover moved tasks")
    ctx.start_coordinator(leader)  # back as a standby


def ctx_hosts_cached(ctx, collector):
    return ctx.placed.get(collector, set())


def check_registry_down(ctx):
    # Where each host runs, read before the registry goes (for diagnostics).
    ctx.placed = {n: ctx.hosts_of(n) for n in ("c2", "c3", "c4")}
    placed_before = ctx.placements()
    hb = {n: ctx.sql_value(f"SELECT extract(epoch FROM last_heartbeat) FROM collectors WHERE name = '{n}'")
          for n in ("c2", "c3", "c4")}
    ctx.pg.stop()
    t_stop = time.time()
    say("registry stopped")
    time.sleep(30)
    for n in ("c2", "c3", "c4"):
        check(ctx.procs[n].alive(), f"{n} died while the registry was down")
    during = ctx.history(t_stop + 2)
    # Every host's values kept coming: at most 2 s without one (two samples of a task can fall
    # in the same second when its tick is near a second's boundary: one value for both).
    worst = {}
    for h in HOSTS:
        ts = [t for t in during.get(h, []) if t <= t_stop + 28]
        steps = [b - a for a, b in zip([t_stop + 2] + ts, ts + [t_stop + 28])]
        worst[h] = max(steps) - 1
    late = {h: round(g, 1) for h, g in worst.items() if g > 2.05}
    if late:
        for n in ("c2", "c3", "c4"):
            say(f"{n} runs {sorted(ctx_hosts_cached(ctx, n))}; its log ends:\n{ctx.procs[n].stderr()[-1500:]}")
    check(not late, f"hosts with more than 2 s without a value in Zabbix during the outage: {late}")
    say("values kept arriving in Zabbix for every host while the registry was down")
    ctx.pg.start()
    say("registry started again")
    for n, before in hb.items():
        wait_until(lambda: float(ctx.sql_value(
            f"SELECT extract(epoch FROM last_heartbeat) FROM collectors WHERE name = '{n}'")) > float(before) + 20,
            20, f"{n} heartbeats again")
    # Nobody was called dead for the outage, so nothing moved (a collector called dead while it
    # still samples would have its tasks sampled twice).
    time.sleep(9)
    after = ctx.placements()
    if after != placed_before:
        for k in ("k1", "k2"):
            log = ctx.procs[k].stderr()
            say(f"{k}: " + "\n".join(l for l in log.splitlines()
                                     if any(w in l for w in ("dead", "assign", "leader", "registry")))[-3000:])
    check(after == placed_before,
          lambda: f"tasks moved after the registry came back: {placed_before} -> {after}")


def check_zabbix_history(ctx):
    time.sleep(4)  # the last values reach Zabbix
    end = time.time() - 3
    hist = ctx.history(ctx.t_values)
    worst = {}
    for host in HOSTS:
        ts = [t for t in hist.get(host, []) if t <= end]
        span = end - ctx.t_values
        # The gaps are bounded below; this only guards against a short series.
        check(len(ts) >= span / 2, f"{host}: only {len(ts)} values in {span:.0f} s")
        # One collector sends one value per one-second interval. At a hand-over the old
        # collector's last interval and the new one's first may be the same second (each sampled
        # part of it: two values, disjoint ticks); more than that, or on a host that never
        # moved, is the task sampled by two collectors at once.
        seconds = [int(t) for t in ts]
        per = {}
        for sec in seconds:
            per[sec] = per.get(sec, 0) + 1
        doubled = sorted(sec for sec, n in per.items() if n > 1)
        detail = [[f"{t:.3f}" for t in ts if int(t) == sec] for sec in doubled[:3]]
        check(all(per[sec] == 2 for sec in doubled) and len(doubled) <= ctx.moves.get(host, 0),
              f"{host}: seconds with more than one value: {detail} ({ctx.moves.get(host, 0)} "
              f"hand-overs): sampled twice")
        steps = [b - a for a, b in zip(ts, ts[1:])]
        bound = 7.0 if host in ctx.killed_hosts else 2.0
        # A step of one tick is about 1 s; a hand-over's gap adds at most 2 s to it... the
        # bound counts whole seconds without a value: step - 1.
        missing = max(steps) - 1
        check(missing <= bound + 0.05, f"{host}: {missing:.1f} s without a value (bound {bound} s)")
        worst[host] = missing
    say(f"{sum(len(v) for v in hist.values())} values over {end - ctx.t_values:.0f} s checked")
    say("longest time without a value in Zabbix, per host: " +
        ", ".join(f"{h} {g:.1f}s" for h, g in sorted(worst.items(), key=lambda kv: int(kv[0][1:]))))


if __name__ == "__main__":
    sys.exit(run_checks([check_shares, check_collector_killed, check_collector_joins,
                         check_leader_killed, check_registry_down, check_zabbix_history],
                        setup=setup, teardown=teardown, limit_s=600))
