"""`trapline coordinator` against a real PostgreSQL registry (tests/harness PostgresServer):
schema migrations, leader election, weighted sticky assignment, failover.

Stand-in for collectors: the collector side of issue 5 (registering, heartbeats, load reports,
acting on assignments) does not exist yet. This test inserts the collector rows itself and
keeps their heartbeats fresh with `UPDATE collectors SET last_heartbeat = now()` every 0.5 s
from one psql session, as the collectors will. Stopping those UPDATEs for one collector stands
in for a collector that died. Replace this with real collectors when they join the cluster.

  test_start_together      two coordinators started at the same moment on an empty registry:
                           both migrate safely (one applies version 1, the other finds it up to
                           date; schema_migrations has one row), exactly one leads
  test_weighted_shares     collectors of weights 1, 2, 3 and 60 tasks: 10/20/30 tasks (within
                           +-10%), every task assigned once; NOTIFY trapline_assign per collector
  test_collector_dies      c2's heartbeats stop: within 3 s + a tick its tasks move, and only
                           its (every other task keeps its collector and generation); the leader
                           logs "assign: 20 moves (collector c2 left)"
  test_leader_killed       kill -9 of the leader: the standby leads within 5 s and moves nothing
                           (same placements, same generations); the restarted one stands by
  test_nonsense_rows       a load report edited into nonsense and impossible weights: refused by
                           the schema or ignored, the leader keeps assigning
  test_old_protocol        a collector speaking cluster protocol 0, then 99: no tasks (only its
                           own move), the reason in the log and the errors table; back on 1 it
                           is eligible again
  test_costs_refined       c1 reports 150 µs/s per task in load.task_us: those tasks' costs
                           move to about 15 (nonsense entries ignored) and the collectors'
                           loads by cost end within their shares
  test_no_secret_in_logs   the registry password never appears in the coordinators' logs
  test_check_config        --check-config: OK line; a misspelt key names file:line and the key
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BackgroundProc, Failure, LongLivedProc, check, make_tmp, run_checks, say, trapline,
    trapline_bin, wait_until)
from harness import PostgresServer  # noqa: E402

PASSWORD = "registry-secret-7Qx"
WEIGHTS = {"c1": 1, "c2": 2, "c3": 3}
TASKS = 60


def _last_migration() -> int:
    """The last version listed in coordinator/migrations.cc's kMigrations."""
    src = os.environ.get("TRAPLINE_SOURCE", os.path.join(os.path.dirname(__file__), "..", ".."))
    with open(os.path.join(src, "coordinator", "migrations.cc")) as f:
        text = f.read()
    listed = text[text.index("kMigrations[] = {"):]
    return max(int(v) for v in re.findall(r"^\s*\{(\d+), \"", listed, re.M))


SCHEMA_VERSION = _last_migration()


class Heartbeats:
    """One psql session that sets last_heartbeat = now() for the live collectors every 0.5 s."""

    def __init__(self, pg, tmp):
        self.alive: set[str] = set()
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.err = open(os.path.join(tmp, "heartbeats.stderr"), "w")
        self.proc = subprocess.Popen(pg._psql_argv("registry", None), stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=self.err, text=True,
                                     env=pg._env())
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.is_set():
            with self.lock:
                names = sorted(self.alive)
            if names:
                arr = "{" + ",".join(names) + "}"
                try:
                    self.proc.stdin.write(
                        f"UPDATE collectors SET last_heartbeat = now() WHERE name = ANY('{arr}');\n")
                    self.proc.stdin.flush()
                except (BrokenPipeError, ValueError):
                    return
            self.stop_flag.wait(0.5)

    def set_alive(self, names):
        with self.lock:
            self.alive = set(names)

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(10)


class Notifications:
    """A psql session LISTENing on trapline_assign; polls so psql prints what arrived."""

    RE = re.compile(r'Asynchronous notification "trapline_assign" with payload "([^"]*)"')

    def __init__(self, pg, tmp):
        self.path = os.path.join(tmp, "notifications.out")
        self.out = open(self.path, "w")
        self.proc = subprocess.Popen(pg._psql_argv("registry", None) + ["-A", "-t"],
                                     stdin=subprocess.PIPE, stdout=self.out,
                                     stderr=subprocess.STDOUT, text=True, env=pg._env())
        self.proc.stdin.write("LISTEN trapline_assign;\n")
        self.proc.stdin.flush()
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_flag.wait(0.2):
            try:
                self.proc.stdin.write("SELECT 1;\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return

    def payloads(self) -> list[str]:
        with open(self.path) as f:
            return self.RE.findall(f.read())

    def close(self):
        self.stop_flag.set()
        self.thread.join(5)
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait(10)


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("coordinator")
        self.pg = PostgresServer(password=PASSWORD)
        self.pg.start()
        self.pg.create_db("registry")
        self.registry = self.pg.url(db="registry")
        self.coords: dict[str, BackgroundProc] = {}
        self.configs: dict[str, str] = {}
        for name in ("co1", "co2"):
            path = os.path.join(self.tmp, f"{name}.toml")
            with open(path, "w") as f:
                f.write(f'[coordinator]\nname = "{name}"\nregistry = "{self.registry}"\n'
                        'heartbeat_timeout = 3\nlog_level = "debug"\ncost_refresh = 1\n')
            self.configs[name] = path
        self.heartbeats = None
        self.notifications = None
        self.restarts = 0

    def start_coordinator(self, name: str) -> BackgroundProc:
        self.restarts += 1
        p = LongLivedProc([trapline_bin(), "coordinator", "--config", self.configs[name]],
                        self.tmp, f"{name}-{self.restarts}")
        self.coords[name] = p
        return p

    def sql(self, q: str):
        return self.pg.psql(q, db="registry")

    def leaders(self) -> list[str]:
        """Live coordinators whose last leader line says acquired (not lost)."""
        out = []
        for name, p in self.coords.items():
            if not p.alive():
                continue
            lines = [ln for ln in p.stderr().splitlines()
                     if "leader: acquired" in ln or "leader: lost" in ln]
            if lines and "leader: acquired" in lines[-1]:
                out.append(name)
        return out

    def placements(self) -> dict[int, tuple]:
        rows = self.sql("SELECT t.id, c.name, t.generation FROM tasks t "
                        "LEFT JOIN collectors c ON c.id = t.collector_id ORDER BY t.id")
        return {int(r[0]): (r[1], int(r[2])) for r in rows}

    def shares(self) -> dict:
        out = {}
        for _tid, (c, _g) in self.placements().items():
            out[c] = out.get(c, 0) + 1
        return out

    def close(self):
        for p in self.coords.values():
            if p.alive():
                p.popen.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except Failure:
                    p.kill9()
            p.close_stdin()
        if self.heartbeats:
            self.heartbeats.close()
        if self.notifications:
            self.notifications.close()
        self.pg.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def test_start_together(ctx):
    a = ctx.start_coordinator("co1")
    b = ctx.start_coordinator("co2")
    for p in (a, b):
        wait_until(lambda: "registry schema:" in p.stderr() or not p.alive(), 20,
                   f"{p.argv[-1]} to report the registry schema")
        check(p.alive(), lambda: f"a coordinator exited:\n{p.output()}")
    logs = [a.stderr(), b.stderr()]
    migrated = [s for s in logs if f"registry schema: migrated from version 0 to {SCHEMA_VERSION}" in s]
    up_to_date = [s for s in logs if f"registry schema: up to date at version {SCHEMA_VERSION}" in s]
    check(len(migrated) == 1 and len(up_to_date) == 1,
          lambda: f"expected one migration and one up-to-date; logs:\n{a.output()}\n{b.output()}")
    rows = ctx.sql("SELECT version FROM schema_migrations")
    check(rows == [(str(v),) for v in range(1, SCHEMA_VERSION + 1)], f"schema_migrations: {rows}")
    wait_until(lambda: ctx.leaders(), 10, "a leader")
    time.sleep(2.5)  # a few election rounds: still exactly one
    leaders = ctx.leaders()
    check(len(leaders) == 1, lambda: f"leaders: {leaders}\n{a.output()}\n{b.output()}")
    say(f"leader: {leaders[0]}")
    epoch = ctx.sql("SELECT epoch, name FROM coordinator_leader")
    check(epoch == [("1", leaders[0])], f"coordinator_leader: {epoch}")


def test_weighted_shares(ctx):
    ctx.notifications = Notifications(ctx.pg, ctx.tmp)
    ctx.sql("INSERT INTO collectors (name, weight, last_heartbeat) VALUES " +
            ", ".join(f"('{n}', {w}, now())" for n, w in WEIGHTS.items()))
    ctx.heartbeats = Heartbeats(ctx.pg, ctx.tmp)
    ctx.heartbeats.set_alive(WEIGHTS)
    # Enabled services of enabled hosts: the leader makes their tasks.
    ctx.sql(f"INSERT INTO hosts (name, address, enabled) SELECT 'h' || g, '10.0.0.' || g, true "
            f"FROM generate_series(1, {TASKS}) g")
    ctx.sql("INSERT INTO services (host_id, plugin, uri, enabled) SELECT id, 'linux', "
            "'ssh://monitor@' || address, true FROM hosts")
    t0 = time.monotonic()
    wait_until(lambda: sum(v for k, v in ctx.shares().items() if k) == TASKS, 10,
               "every task assigned")
    say(f"all {TASKS} tasks assigned {time.monotonic() - t0:.2f}s after they were inserted")
    shares = ctx.shares()
    total_w = sum(WEIGHTS.values())
    for name, w in WEIGHTS.items():
        want = TASKS * w / total_w
        got = shares.get(name, 0)
        check(abs(got - want) <= 0.10 * want,
              f"{name} (weight {w}) has {got} tasks, want {want:.0f} +-10%; shares {shares}")
    say(f"shares: {shares}")
    gens = {g for _c, g in ctx.placements().values()}
    check(gens == {1}, f"each task assigned once (generation 1); generations {gens}")
    wait_until(lambda: set(WEIGHTS) <= set(ctx.notifications.payloads()), 5,
               "a NOTIFY trapline_assign per collector")


def test_collector_dies(ctx):
    before = ctx.placements()
    leader = ctx.leaders()
    check(len(leader) == 1, f"leaders: {leader}")
    leader_log_from = len(ctx.coords[leader[0]].stderr())
    notes_from = len(ctx.notifications.payloads())
    ctx.heartbeats.set_alive({"c1", "c3"})
    t0 = time.monotonic()
    wait_until(lambda: "c2" not in ctx.shares(), 8, "c2's tasks to move")
    took = time.monotonic() - t0
    say(f"c2's tasks moved {took:.2f}s after its heartbeats stopped")
    check(took <= 3 + 1 + 1.0, f"tasks moved after {took:.2f}s (> 3 s timeout + 1 s tick)")
    after = ctx.placements()
    moved = [t for t in before if before[t] != after[t]]
    check(all(before[t][0] == "c2" for t in moved),
          lambda: f"tasks of other collectors moved: "
                  f"{[(t, before[t], after[t]) for t in moved if before[t][0] != 'c2']}")
    check(len(moved) == sum(1 for c, _g in before.values() if c == "c2"),
          f"{len(moved)} tasks moved")
    shares = ctx.shares()
    say(f"shares after: {shares}")
    for name, want in (("c1", 15), ("c3", 45)):
        check(abs(shares.get(name, 0) - want) <= 0.1 * want, f"shares after c2 left: {shares}")
    log = ctx.coords[leader[0]].stderr()[leader_log_from:]
    check(re.search(r"assign: 20 moves \(collector c2 left\)", log),
          lambda: f"no 'assign: 20 moves (collector c2 left)' line:\n{log[-3000:]}")
    check("collector c2 dead" in log, "no 'collector c2 dead' line")
    wait_until(lambda: {"c1", "c2", "c3"} <= set(ctx.notifications.payloads()[notes_from:]), 5,
               "NOTIFY for the old and the new collectors")
    state = ctx.sql("SELECT state FROM collectors WHERE name = 'c2'")
    check(state == [("dead",)], f"c2 state {state}")


def test_leader_killed(ctx):
    leaders = ctx.leaders()
    check(len(leaders) == 1, f"leaders: {leaders}")
    old = leaders[0]
    standby = "co2" if old == "co1" else "co1"
    before = ctx.placements()
    standby_log_from = len(ctx.coords[standby].stderr())
    ctx.coords[old].kill9()
    t0 = time.monotonic()
    wait_until(lambda: "leader: acquired" in ctx.coords[standby].stderr()[standby_log_from:], 8,
               f"{standby} to lead")
    took = time.monotonic() - t0
    say(f"{standby} leads {took:.2f}s after kill -9 of {old}")
    check(took <= 5, f"takeover took {took:.2f}s (> 5 s)")
    time.sleep(3)  # several ticks of the new leader
    after = ctx.placements()
    check(after == before, lambda: "the takeover reshuffled: " + str(
        [(t, before[t], after[t]) for t in before if before[t] != after[t]][:10]))
    log = ctx.coords[standby].stderr()[standby_log_from:]
    check(not re.search(r"assign: \d+ moves?", log), f"the new leader moved tasks:\n{log[-2000:]}")
    epoch = ctx.sql("SELECT epoch, name FROM coordinator_leader")
    check(epoch == [("2", standby)], f"coordinator_leader: {epoch}")
    # The killed one comes back as a standby and stays one.
    p = ctx.start_coordinator(old)
    wait_until(lambda: "leader: standing by" in p.stderr(), 10, f"{old} to stand by")
    time.sleep(2.5)
    check(ctx.leaders() == [standby], f"leaders after the restart: {ctx.leaders()}")


def test_nonsense_rows(ctx):
    leader = ctx.leaders()[0]
    p = ctx.coords[leader]
    before = ctx.placements()
    log_from = len(p.stderr())
    ctx.sql("UPDATE collectors SET load = '\"garbage\"' WHERE name = 'c1'")
    ctx.sql("UPDATE collectors SET load = '{\"lag_p99_ms\": \"fast\"}' WHERE name = 'c3'")
    for bad in ("0", "'NaN'", "'Infinity'", "-1"):
        try:
            ctx.sql(f"UPDATE collectors SET weight = {bad} WHERE name = 'c1'")
        except Exception as e:  # noqa: BLE001 - the CHECK constraint refuses it
            check("collectors_weight_check" in str(e), f"weight {bad}: {e}")
        else:
            raise Failure(f"weight {bad} accepted by the registry")
    time.sleep(2.5)
    check(p.alive(), lambda: p.output())
    log = p.stderr()[log_from:]
    check("tick failed" not in log, f"ticks failed:\n{log[-2000:]}")
    check(ctx.placements() == before, "placements changed")
    # A new task still gets placed: the leader keeps assigning.
    ctx.sql("INSERT INTO hosts (name, enabled) VALUES ('late', true); INSERT INTO services "
            "(host_id, plugin, enabled) SELECT id, 'redis', true FROM hosts WHERE name = 'late'")
    wait_until(lambda: ctx.sql("SELECT collector_id IS NOT NULL FROM tasks t JOIN services s ON "
                               "s.id = t.service_id JOIN hosts h ON h.id = s.host_id "
                               "WHERE h.name = 'late'") == [("t",)], 5, "the new task placed")
    check("assign: 1 move (1 new task)" in p.stderr()[log_from:], "no 'assign: 1 move' line")


def test_overloaded_sheds(ctx):
    leader = ctx.leaders()[0]
    p = ctx.coords[leader]
    before = ctx.placements()
    mine = {t for t, (c, _g) in before.items() if c == "c3"}
    log_from = len(p.stderr())
    # c3 reports an event-loop lag p99 above overload_lag_ms (500 ms by default).
    ctx.sql("UPDATE collectors SET load = '{\"lag_p99_ms\": 900}' WHERE name = 'c3'")
    wait_until(lambda: "collector c3 overloaded" in p.stderr()[log_from:], 5, "c3 sheds")
    time.sleep(3)  # a few more ticks: what c3 shed must not flow back
    after = ctx.placements()
    moved = {t for t in before if after.get(t, (None,))[0] != before[t][0]}
    say(f"c3 overloaded: {len(moved)} of its {len(mine)} tasks moved")
    check(moved and moved <= mine, f"moved {sorted(moved)}; c3 had {sorted(mine)}")
    check(0.05 * len(mine) <= len(moved) <= 0.15 * len(mine) + 1,
          f"shed {len(moved)} of {len(mine)} (about 10% expected, and kept off c3)")
    ctx.sql("UPDATE collectors SET load = '{\"lag_p99_ms\": 1}' WHERE name = 'c3'")


def test_old_protocol(ctx):
    """A collector row speaking cluster protocol 0 (an older trapline), then 99 (a newer one):
    it gets no tasks (its own move, nothing else), a clear error in the log and the errors
    table, the cluster keeps assigning; back to protocol 1 it takes tasks again."""
    leader = ctx.leaders()[0]
    p = ctx.coords[leader]
    before = ctx.placements()
    mine = {t for t, (c, _g) in before.items() if c == "c3"}
    check(mine, f"c3 holds no task to begin with: {before}")
    log_from = len(p.stderr())
    ctx.sql("UPDATE collectors SET protocol = 0 WHERE name = 'c3'")
    wait_until(lambda: not any(c == "c3" for c, _g in ctx.placements().values()), 5,
               "c3's tasks to move away")
    after = ctx.placements()
    moved = {t for t in before if after[t][0] != before[t][0]}
    check(moved == mine, f"moved {sorted(moved)}; c3 had {sorted(mine)}")
    log = p.stderr()[log_from:]
    check("collector c3 speaks cluster protocol 0 and this coordinator speaks 1: it is older "
          "than the coordinators; upgrade trapline on it; it gets no tasks" in log,
          f"no protocol error in the log:\n{log[-1500:]}")
    rows = ctx.sql("SELECT e.message FROM errors e JOIN collectors c ON c.id = e.collector_id "
                   "WHERE c.name = 'c3' AND e.message LIKE '%cluster protocol 0%'")
    check(len(rows) == 1, f"errors rows for c3's protocol: {rows}")
    ctx.sql("UPDATE collectors SET protocol = 99 WHERE name = 'c3'")
    wait_until(lambda: "upgrade the coordinators" in p.stderr()[log_from:], 5, "protocol 99 said")
    check(p.alive() and "tick failed" not in p.stderr()[log_from:], lambda: p.output())
    ctx.sql("UPDATE collectors SET protocol = 1 WHERE name = 'c3'")
    wait_until(lambda: "collector c3 speaks cluster protocol 1 now" in p.stderr()[log_from:], 5,
               "c3 back")
    # The share of a returning collector comes back through normal rebalancing (or shedding
    # recovery); here it is enough that it is eligible again and nothing failed.
    check(p.alive(), lambda: p.output())


def test_costs_refined(ctx):
    """c1 reports (as real collectors do, in load.task_us) that each of its tasks costs
    150 µs/s: the leader moves those tasks' costs half-way towards 15 each refresh, c1 is then
    above its share and gives tasks away by cost; nonsense entries change nothing."""
    leader = ctx.leaders()[0]
    p = ctx.coords[leader]
    # Let any rebalancing from the previous checks settle first.
    state = {"last": None}

    def settled():
        now_ = ctx.placements()
        same = now_ == state["last"]
        state["last"] = now_
        return now_ if same else None

    before = wait_until(settled, 10, "placements to settle", interval=1.5)
    mine = sorted(t for t, (c, _g) in before.items() if c == "c1")
    check(len(mine) >= 2, f"placements: {before}")
    declared = {int(r[0]): float(r[1]) for r in ctx.sql("SELECT id, cost FROM tasks")}
    log_from = len(p.stderr())
    # Nonsense beside it: a non-number for one of c1's tasks (its cost stays), a key that is
    # no id, a negative one, a task that does not exist.
    task_us = {str(t): 150 for t in mine[1:]}
    task_us.update({str(mine[0]): "lots", "x1": 5, "-3": 7, "999999": 5})
    ctx.sql("UPDATE collectors SET load = jsonb_build_object('task_us', '" +
            json.dumps(task_us) + "'::jsonb) WHERE name = 'c1'")
    wait_until(lambda: "costs: " in p.stderr()[log_from:], 5, "a cost refresh")

    def costs():
        return {int(r[0]): float(r[1]) for r in ctx.sql("SELECT id, cost FROM tasks")}

    wait_until(lambda: all(abs(costs()[t] - 15) < 0.2 * 15 for t in mine[1:]), 10,
               "c1's tasks' costs near 15")
    now = costs()
    check(now[mine[0]] == declared[mine[0]], f"task {mine[0]} ('lots'): {declared[mine[0]]} -> {now[mine[0]]}")
    wait_until(lambda: "assign: " in p.stderr()[log_from:], 5, "a rebalance after the refinement")
    active = {r[0] for r in ctx.sql("SELECT name FROM collectors WHERE state = 'active'")}
    report = {}

    def balanced():
        # Loads by cost against the active collectors' weight shares; a task of cost 25 may
        # not fit the +-10% band (granularity).
        now_ = costs()
        loads = {c: 0.0 for c in active}
        for t, (c, _g) in ctx.placements().items():
            loads[c] = loads.get(c, 0) + now_[t]
        total = sum(loads.values())
        weight = sum(WEIGHTS[c] for c in active)
        report.update(loads=loads, shares={c: total * WEIGHTS[c] / weight for c in active})
        return all(abs(loads[c] - report["shares"][c]) <= max(0.1 * report["shares"][c], 25)
                   for c in active)

    try:
        wait_until(balanced, 10, "loads by cost within the shares")
    finally:
        say(f"loads by cost after refinement: {report}")
    check(p.alive() and "tick failed" not in p.stderr()[log_from:], lambda: p.output())
    ctx.sql("UPDATE collectors SET load = '{}' WHERE name = 'c1'")


def test_no_secret_in_logs(ctx):
    for name, p in ctx.coords.items():
        check(PASSWORD not in p.stderr() and PASSWORD not in p.stdout(),
              f"{name}'s log holds the registry password")


def test_check_config(ctx):
    cp = trapline("coordinator", "--config", ctx.configs["co1"], "--check-config")
    check(cp.returncode == 0 and ": OK, coordinator co1" in cp.stdout,
          f"--check-config: {cp.returncode} {cp.stdout!r} {cp.stderr!r}")
    check(PASSWORD not in cp.stdout + cp.stderr, "--check-config prints the password")
    bad = os.path.join(ctx.tmp, "bad.toml")
    with open(bad, "w") as f:
        f.write('[coordinator]\nname = "x"\nregistry = "postgresql://u@127.0.0.1/r"\n'
                'heartbeat_timout = 3\n')
    cp = trapline("coordinator", "--config", bad, "--check-config")
    check(cp.returncode == 1, f"exit {cp.returncode}")
    check(f"{bad}:4: 'coordinator.heartbeat_timout' is not a known key" in cp.stderr,
          f"stderr: {cp.stderr!r}")
    check("heartbeat_timeout" in cp.stderr, "the known keys are not listed")
    cp = trapline("coordinator", "--help")
    check(cp.returncode == 0 and "--check-config" in cp.stdout, f"--help: {cp.stdout!r}")


if __name__ == "__main__":
    sys.exit(run_checks([test_start_together, test_weighted_shares, test_collector_dies,
                         test_leader_killed, test_nonsense_rows, test_costs_refined,
                         test_overloaded_sheds, test_old_protocol, test_no_secret_in_logs,
                         test_check_config],
                        setup=setup, teardown=teardown, limit_s=120))
