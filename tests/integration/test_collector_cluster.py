"""Collectors in the cluster: real `trapline collector` processes (dry run: values printed as
zabbix_sender lines, so every sample is visible) given a registry, two `trapline coordinator`s
(one leads), a real PostgreSQL registry and a real Redis whose instances (one per registry
host) are the tasks; value sets every 2 s. Everything on 127.0.0.1, started by this test.

  check_register_and_share  two collectors (weights 1 and 2) register, report load, and run
                            2 and 4 of the 6 tasks, none on both; every task's entities are in
                            the registry
  check_join_hands_over     a third collector joins: it takes its share; every task that moves
                            is sampled by the old collector strictly before the new one (no
                            sample twice), with a gap of at most a few seconds
  check_collector_killed    kill -9 of a collector: within 5 s its tasks run elsewhere
  check_leader_killed       kill -9 of the leading coordinator: the standby leads within 5 s,
                            no task moves, sampling goes on
  check_registry_down       the registry stopped for 30 s: collectors keep sampling and
                            printing; back: they reconnect and heartbeat again
  check_task_error          a task whose Redis password is wrong: the service's state turns
                            'error' and the errors table holds the reason; the others unaffected
  check_no_duplicate_no_gap over the whole run, every host's values (from whichever collector
                            ran it): the collectors never alternate (a task sampled twice), and
                            consecutive values are at most 5 s apart (value sets of 2 s), 10 s
                            for the tasks of the killed collector (its unsent interval dies
                            with it)
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    LongLivedProc, check, make_tmp, run_checks, say, trapline_bin, wait_until)
from harness import HOST, PostgresServer, RedisServer  # noqa: E402

REDIS_PASSWORD = "redis-pw-4d"
HOSTS = [f"h{i}" for i in range(1, 13)]


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("cluster")
        self.pg = PostgresServer()
        self.pg.start()
        self.pg.create_db("trapline")
        self.dsn = f"postgresql://postgres@{HOST}:{self.pg.port}/trapline"
        self.redis = RedisServer(password=REDIS_PASSWORD)
        self.redis.start()
        self.redis.command("SET", "k", "v")  # db0 holds a key: the plugin reports keyspace db0
        self.procs = {}
        self.killed_hosts = set()
        for k in ("k1", "k2"):
            self.start_coordinator(k)
        wait_until(lambda: self.sql_value("SELECT to_regclass('tasks') IS NOT NULL") == "t", 30,
                   "registry migrated")
        self.sql(f"""
INSERT INTO credential_profiles (name, kind, secret, options) VALUES
  ('redis', 'redis', '{{"password": "{REDIS_PASSWORD}"}}', '{{"interval": 2}}'),
  ('redis-wrong', 'redis', '{{"password": "not-it"}}', '{{"interval": 2}}');
INSERT INTO hosts (name, address, enabled) SELECT n, '{HOST}', true FROM unnest(ARRAY{HOSTS!r}) n;
INSERT INTO services (host_id, plugin, port, uri, credential_profile_id, enabled)
  SELECT h.id, 'redis', {self.redis.port}, 'redis://{HOST}:{self.redis.port}',
         (SELECT id FROM credential_profiles WHERE name = 'redis'), true FROM hosts h;
""")  # the leader makes the tasks of these enabled services

    def start_coordinator(self, name):
        conf = os.path.join(self.tmp, f"{name}.toml")
        with open(conf, "w") as f:
            # cost_refresh = 0: the shares below are counted in tasks, all of equal declared
            # cost; refining costs from measurements is test_coordinator's test_costs_refined.
            f.write(f'[coordinator]\nname = "{name}"\nregistry = "{self.dsn}"\nheartbeat_timeout = 3\n'
                    'cost_refresh = 0\n')
        self.procs[name] = LongLivedProc([trapline_bin(), "coordinator", "--config", conf], self.tmp, name)

    def leader(self):
        return self.sql_value("SELECT name FROM coordinator_leader")

    def sql(self, text):
        return self.pg.psql(text, db="trapline")

    def sql_value(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows else None

    def start_collector(self, name, weight):
        conf = os.path.join(self.tmp, f"{name}.toml")
        with open(conf, "w") as f:
            f.write(f"""
[collector]
name = "{name}"
[sender]
server = "127.0.0.1"
port = 1
[cluster]
registry = "{self.dsn}"
weight = {weight}
heartbeat = 0.5
resync = 5
secrets_dir = "{self.tmp}/{name}-secrets"
""")
        # Value sets every 2 s (the task's options could say so too; the default is 60 s).
        self.procs[name] = LongLivedProc([trapline_bin(), "collector", "--config", conf, "--dry-run"],
                                self.tmp, name)

    def tasks_by_collector(self):
        rows = self.sql("SELECT c.name, count(t.id) FROM collectors c LEFT JOIN tasks t "
                        "ON t.collector_id = c.id WHERE c.state = 'active' GROUP BY c.name")
        return {r[0]: int(r[1]) for r in rows}

    def running(self, name):
        """Task ids the collector reports running in its last heartbeat."""
        v = self.sql_value(f"SELECT load->'running' FROM collectors WHERE name = '{name}'")
        import json
        return sorted(t for t, _ in json.loads(v or "[]"))

    def samples(self, name):
        """{host: [clock + ns/1e9, ...]} of the values the collector printed (uptime: one per tick)."""
        out = {}
        with open(self.procs[name].stdout_path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 5 and parts[1] == "redis.uptime":
                    out.setdefault(parts[0], []).append(int(parts[2]) + int(parts[3]) / 1e9)
        return out

    def close(self):
        for p in self.procs.values():
            p.end()
        self.redis.close()
        self.pg.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def shares_ok(ctx, want):
    got = ctx.tasks_by_collector()
    return got if got == want else None


def check_register_and_share(ctx):
    ctx.start_collector("c1", 1)
    ctx.start_collector("c2", 2)
    got = wait_until(lambda: shares_ok(ctx, {"c1": 4, "c2": 8}), 20, "tasks shared 4/8")
    say(f"tasks per collector: {got}")
    wait_until(lambda: len(ctx.running("c1")) == 4 and len(ctx.running("c2")) == 8, 10,
               "collectors report their running tasks")
    load = ctx.sql_value("SELECT load FROM collectors WHERE name = 'c2'")
    for field in ("lag_p99_ms", "cpu_pct", "sender", "connections"):
        check(field in load, f"load report lacks {field}: {load}")
    time.sleep(4)  # a few ticks (interval 60 s: values come out at shutdown or hand-over)
    check(set(ctx.running("c1")).isdisjoint(ctx.running("c2")), "a task runs on both collectors")
    # Each running task's measured cost (µs of loop time per second, 10 s windows).
    import json

    def task_us(name):
        return json.loads(ctx.sql_value(f"SELECT load->'task_us' FROM collectors WHERE name = '{name}'") or "{}")

    us = wait_until(lambda: (lambda m: m if sorted(int(k) for k in m) == ctx.running("c2") else None)(task_us("c2")),
                    15, "c2 to report task_us for each of its tasks")
    say(f"c2's measured task costs, µs per second: {sorted(us.values())}")
    check(all(isinstance(v, (int, float)) and 0 < v < 5000 for v in us.values()), f"task_us {us}")
    # Every task's target reported its entities (a Redis with keys in db0 has keyspace db0).
    rows = ctx.sql("SELECT count(DISTINCT task_id) FROM entities WHERE kind = 'keyspace' AND name = 'db0' AND NOT gone")
    check(int(rows[0][0]) == len(HOSTS), f"tasks with entity keyspace/db0: {rows}")


def check_join_hands_over(ctx):
    before = {t: c for c, ts in (("c1", ctx.running("c1")), ("c2", ctx.running("c2"))) for t in ts}
    ctx.start_collector("c3", 3)
    got = wait_until(lambda: shares_ok(ctx, {"c1": 2, "c2": 4, "c3": 6}), 20, "tasks shared 2/4/6")
    say(f"after c3 joined: {got}")
    wait_until(lambda: len(ctx.running("c3")) == 6, 10, "c3 runs 6 tasks")
    moved = [t for t in ctx.running("c3")]
    check(all(t in before for t in moved), f"c3 runs unknown tasks {moved}")
    # Stop c3 cleanly: it flushes; then compare, per moved task's host, the samples' clocks.
    time.sleep(3)
    ctx.procs["c3"].end()
    names = dict(ctx.sql("SELECT t.id::text, h.name FROM tasks t JOIN services s ON s.id = t.service_id "
                         "JOIN hosts h ON h.id = s.host_id"))
    for task in moved:
        host = names[str(task)]
        old = ctx.samples(before[task]).get(host, [])
        new = ctx.samples("c3").get(host, [])
        check(new, f"c3 printed no sample of {host}")
        if old:
            check(max(old) < min(new), f"{host}: {before[task]} sampled until {max(old)}, c3 from {min(new)}")
            say(f"{host}: {before[task]} last sample {max(old):.3f}, c3 first {min(new):.3f} "
                f"(gap {min(new) - max(old):.3f} s)")
            check(min(new) - max(old) <= 2.5, f"{host}: a gap of {min(new) - max(old):.1f} s")


def check_collector_killed(ctx):
    wait_until(lambda: shares_ok(ctx, {"c1": 4, "c2": 8}), 20, "back to 4/8 after c3 left")
    names = dict(ctx.sql("SELECT t.id::text, h.name FROM tasks t JOIN services s ON s.id = t.service_id "
                         "JOIN hosts h ON h.id = s.host_id"))
    ctx.killed_hosts = {names[str(t)] for t in ctx.running("c2")}
    t0 = time.monotonic()
    ctx.procs["c2"].popen.kill()
    wait_until(lambda: len(ctx.running("c1")) == 12, 15, "c1 runs all 12 tasks after c2's kill -9")
    took = time.monotonic() - t0
    say(f"c2 killed: its tasks run on c1 after {took:.1f} s")
    check(took <= 5.5, f"tasks of a killed collector restarted after {took:.1f} s (> 5 s)")


def count_lines(ctx, name):
    with open(ctx.procs[name].stdout_path) as f:
        return sum(1 for _ in f)


def placements(ctx):
    return ctx.sql("SELECT id, collector_id, generation FROM tasks ORDER BY id")


def check_leader_killed(ctx):
    before = placements(ctx)
    leader = ctx.leader()
    standby = "k2" if leader == "k1" else "k1"
    lines = count_lines(ctx, "c1")
    t0 = time.monotonic()
    ctx.procs[leader].popen.kill()
    wait_until(lambda: ctx.leader() == standby, 10, f"{standby} leads", interval=0.1)
    took = time.monotonic() - t0
    say(f"leader {leader} killed: {standby} leads after {took:.1f} s")
    check(took <= 5, f"takeover took {took:.1f} s (> 5 s)")
    time.sleep(3)
    check(placements(ctx) == before, "the takeover moved tasks")
    check(count_lines(ctx, "c1") > lines, "c1 stopped printing values during the takeover")
    ctx.start_coordinator(leader)  # back as a standby


def check_registry_down(ctx):
    # The registry is off the sample path: the collector lives on with its tasks (their value
    # sets of 60 s come out later; the hand-over check shows them), logs the outage once, and
    # heartbeats again when the registry is back.
    before_hb = ctx.sql_value("SELECT extract(epoch FROM last_heartbeat) FROM collectors WHERE name = 'c1'")
    lines = count_lines(ctx, "c1")
    ctx.pg.stop()
    say("registry stopped")
    time.sleep(30)
    check(ctx.procs["c1"].alive(), "c1 died while the registry was down")
    during = count_lines(ctx, "c1") - lines
    check(during > 12 * 10, f"c1 printed {during} lines in 30 s without the registry")
    say(f"c1 printed {during} values while the registry was down")
    ctx.pg.start()
    say("registry started again")
    wait_until(lambda: float(ctx.sql_value(
        "SELECT extract(epoch FROM last_heartbeat) FROM collectors WHERE name = 'c1'")) > float(before_hb) + 8,
        20, "c1 heartbeats again")
    check(len(ctx.running("c1")) == 12, f"c1 runs {ctx.running('c1')}")
    err = ctx.procs["c1"].stderr()
    check("registry unreachable" in err and "sampling goes on" in err, f"no outage line in c1's log:\n{err[-2000:]}")


def check_task_error(ctx):
    ctx.sql("UPDATE services SET credential_profile_id = (SELECT id FROM credential_profiles "
            "WHERE name = 'redis-wrong') WHERE host_id = (SELECT id FROM hosts WHERE name = 'h1');"
            "UPDATE tasks SET generation = generation + 1 WHERE service_id = (SELECT s.id FROM services s "
            "JOIN hosts h ON h.id = s.host_id WHERE h.name = 'h1'); NOTIFY trapline_assign;")
    wait_until(lambda: ctx.sql_value("SELECT s.state FROM services s JOIN hosts h ON h.id = s.host_id "
                                     "WHERE h.name = 'h1'") == "error", 20, "h1's service in state error")
    msg = ctx.sql_value("SELECT message FROM errors ORDER BY id DESC LIMIT 1")
    say(f"error recorded: {msg}")
    check("WRONGPASS" in msg or "password" in msg.lower(), f"error message {msg!r}")
    others = ctx.sql("SELECT s.state FROM services s JOIN hosts h ON h.id = s.host_id WHERE h.name <> 'h1'")
    check(all(r[0] == "ok" for r in others), f"other services: {others}")
    check(REDIS_PASSWORD not in ctx.procs["c1"].stderr(), "a secret in the collector's log")


def check_no_duplicate_no_gap(ctx):
    # Value sets (every 2 s) keep the fewest values with the interval's min, max and mean, at
    # the times of the samples that carry them: normally one to three values per host per
    # interval, so consecutive values are at most about 4 s apart.
    values = {}
    for name in ("c1", "c2", "c3"):
        if name in ctx.procs:
            for host, ts in ctx.samples(name).items():
                values.setdefault(host, []).extend((t, name) for t in ts)
    worst = {}
    for host in HOSTS:
        if host == "h1":
            continue  # its credential was made wrong by check_task_error
        vs = sorted(values.get(host, []))
        check(len(vs) > 20, f"{host}: only {len(vs)} values")
        steps = [b[0] - a[0] for a, b in zip(vs, vs[1:])]
        # A task sampled by two collectors at once shows as values of both interleaved.
        changes = [(a, b) for a, b in zip(vs, vs[1:]) if a[1] != b[1]]
        check(len(changes) <= 4, f"{host}: values alternate between collectors {len(changes)} times "
                                 f"(sampled twice?): {changes[:6]}")
        # A task keeps its phase of the second wherever it runs and the new collector starts
        # only after the old one stopped: a hand-over's values are about a period (1 s) apart.
        close = [(a, b) for a, b in changes if b[0] - a[0] < 0.5]
        check(not close, f"{host}: values of two collectors {close[:3]} less than 0.5 s apart")
        bound = 10 if host in ctx.killed_hosts else 5.0
        check(max(steps) <= bound, f"{host}: a gap of {max(steps):.1f} s (bound {bound} s)")
        worst[host] = max(steps)
    say("largest gap between values per host: " +
        ", ".join(f"{h} {g:.1f}s" for h, g in sorted(worst.items())))


if __name__ == "__main__":
    sys.exit(run_checks([check_register_and_share, check_join_hands_over, check_collector_killed,
                         check_leader_killed, check_registry_down, check_task_error,
                         check_no_duplicate_no_gap], setup=setup, teardown=teardown))
