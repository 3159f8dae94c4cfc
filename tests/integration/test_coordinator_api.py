"""The coordinator's HTTP API (/api/v1/, /metrics) against a real PostgreSQL registry: one
`trapline coordinator` with [http] on a free loopback port (it leads: the only one).

  test_status_and_metrics   /api/v1/status (leader, epoch, schema), /metrics parses as
                            Prometheus text with trapline_coordinator_leader 1, open without token
  test_auth                 no token 401 (reads and writes), wrong token 401, the right one 200
  test_hosts                POST (201, 409 when it exists), GET list with filters and paging,
                            GET one with services/entities/errors, DELETE (404 afterwards)
  test_one_click_enable     PATCH {"enabled": true, "services": "all"}: the host and all its
                            services enabled, the leader makes a task for each
  test_collectors           GET (name, weight, state, load); PATCH weight 2.5; bad weights 400
  test_services_tasks       GET /services, PATCH a service (credential profile by name, unknown
                            profile 400, no secret in any answer), GET /tasks, GET /errors
  test_maintenance          PUT {"until": ...} then GET shows desired on (applied off: no Zabbix
                            here), past until 400, DELETE clears it
  test_bad_input            malformed JSON, unknown fields, weights 0/-1/"x"/NaN, names with SQL
                            and shell metacharacters: 400 and the rows unchanged
  test_audit                an audit_log row (actor "api", before/after) for every change made
  test_config               [http] listen without api_token_file, a short token, a misspelt key:
                            --check-config names the problem; open_reads = true lets GETs in
  test_stop                 SIGTERM: the coordinator stops at once (exit 0) with the API open and
                            an event stream connected
"""

import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BackgroundProc, Failure, LongLivedProc, api_call, check, make_tmp, run_checks, say, trapline,
    trapline_bin, wait_until)
from harness import PostgresServer, free_port  # noqa: E402

TOKEN = "api-token-5f0c2b7e9d1a4c38"
SECRET = "profile-secret-Zq81"
NASTY = "'; DROP TABLE hosts; --"


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("coordinator-api")
        self.pg = PostgresServer(password="registry-pw-41")
        self.pg.start()
        self.pg.create_db("registry")
        self.port = free_port()
        token_file = os.path.join(self.tmp, "api.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(token_file, 0o600)
        self.config = os.path.join(self.tmp, "co1.toml")
        with open(self.config, "w") as f:
            f.write(f'[coordinator]\nname = "co1"\nregistry = "{self.pg.url(db="registry")}"\n'
                    'log_level = "debug"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{self.port}"\napi_token_file = "{token_file}"\n')
        self.coord = LongLivedProc([trapline_bin(), "coordinator", "--config", self.config],
                                 self.tmp, "co1")
        wait_until(lambda: "leader: acquired" in self.coord.stderr() or not self.coord.alive(),
                   20, "the coordinator to lead")
        check(self.coord.alive(), lambda: self.coord.output())

    def sql(self, q: str):
        return self.pg.psql(q, db="registry")

    def call(self, method, path, body=None, token=TOKEN, raw=None, headers=None):
        """(status, parsed JSON or text, headers)."""
        return api_call(f"http://127.0.0.1:{self.port}", method, path, body, token, raw, headers)

    def ok(self, method, path, body=None, want=200):
        status, out, _ = self.call(method, path, body)
        check(status == want, lambda: f"{method} {path}: {status} {out} (want {want})")
        return out

    def bad(self, method, path, body=None, raw=None, want=400, what=""):
        status, out, _ = self.call(method, path, body, raw=raw)
        check(status == want, lambda: f"{method} {path} {what or body or raw!r}: {status} {out} "
                                      f"(want {want})")
        check(isinstance(out, dict) and out.get("error"), f"no JSON error: {out!r}")
        say(f"{method} {path} {what or ''}-> {status} {out['error']}")
        return out

    def close(self):
        self.coord.end()
        self.pg.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def parse_prometheus(text: str) -> dict:
    """name{labels} -> value; raises on a line that is not Prometheus text format."""
    import re
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                        r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)?\})? '
                        r'(-?[0-9.e+-]+|NaN|\+Inf|-Inf)$')
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        m = sample.match(line)
        if not m:
            raise Failure(f"not Prometheus text: {line!r}")
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def test_status_and_metrics(ctx):
    st = ctx.ok("GET", "/api/v1/status")
    say(f"status: {st}")
    check(st["name"] == "co1" and st["role"] == "leader" and st["epoch"] >= 1, f"status {st}")
    latest = int(ctx.sql("SELECT max(version) FROM schema_migrations")[0][0])
    check(latest >= 2 and st["schema_version"] == latest and st["registry_connected"] is True,
          f"status {st}, schema_migrations has {latest}")
    status, text, hdrs = ctx.call("GET", "/metrics", token=None)
    check(status == 200, f"/metrics {status}")
    check(hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs["content-type"])
    m = parse_prometheus(text)
    check(m.get("trapline_coordinator_leader") == 1, f"leader gauge: {m}")
    check(m.get("trapline_coordinator_registry_connected") == 1, "registry_connected")
    check('trapline_coordinator_collectors{state="active"}' in m, "collectors by state")
    check("trapline_coordinator_tasks" in m and "trapline_coordinator_tasks_unassigned" in m, "tasks")
    check(any(k.startswith("trapline_coordinator_http_requests_total{") for k in m),
          "http request counter")
    say(f"/metrics: {len(m)} samples")


def test_auth(ctx):
    for method, path, body in (("GET", "/api/v1/hosts", None), ("GET", "/api/v1/status", None),
                               ("POST", "/api/v1/hosts", {"name": "nope"}),
                               ("PATCH", "/api/v1/collectors/c1", {"weight": 2})):
        status, out, hdrs = ctx.call(method, path, body, token=None)
        check(status == 401 and "error" in out, f"{method} {path} without token: {status} {out}")
        check(hdrs.get("www-authenticate", "").startswith("Bearer"), "no WWW-Authenticate")
        status, out, _ = ctx.call(method, path, body, token="wrong-token-wrong-token")
        check(status in (401, 403), f"{method} {path} with a wrong token: {status} {out}")
    status, out, _ = ctx.call("GET", "/api/v1/hosts", token=None,
                              headers={"Authorization": f"Basic {TOKEN}"})
    check(status == 401, f"Basic scheme: {status}")
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name = 'nope'") == [("0",)], "host created")
    ctx.ok("GET", "/api/v1/hosts")
    check(TOKEN not in ctx.coord.stderr(), "the token is in the log")


def test_hosts(ctx):
    h = ctx.ok("POST", "/api/v1/hosts", {"name": "web-1", "address": "10.0.0.1",
                                         "groups": ["Linux servers"]}, want=201)
    check(h["name"] == "web-1" and h["enabled"] is False and h["groups"] == ["Linux servers"], h)
    ctx.ok("POST", "/api/v1/hosts", {"name": "web-2", "address": "10.0.0.2", "enabled": True},
           want=201)
    ctx.ok("POST", "/api/v1/hosts", {"name": "db-1"}, want=201)
    ctx.bad("POST", "/api/v1/hosts", {"name": "web-1"}, want=409)
    lst = ctx.ok("GET", "/api/v1/hosts")
    check([x["name"] for x in lst["hosts"]] == ["db-1", "web-1", "web-2"] and lst["total"] == 3,
          lst)
    lst = ctx.ok("GET", "/api/v1/hosts?enabled=true")
    check([x["name"] for x in lst["hosts"]] == ["web-2"], lst)
    lst = ctx.ok("GET", "/api/v1/hosts?q=WEB&limit=1&offset=1")
    check(lst["total"] == 2 and [x["name"] for x in lst["hosts"]] == ["web-2"], lst)
    lst = ctx.ok("GET", "/api/v1/hosts?q=10.0.0.1")
    check([x["name"] for x in lst["hosts"]] == ["web-1"], lst)
    one = ctx.ok("GET", "/api/v1/hosts/web-1")
    check(one["host"]["address"] == "10.0.0.1" and one["services"] == [] and one["errors"] == [],
          one)
    ctx.bad("GET", "/api/v1/hosts/unknown-host", want=404)
    ctx.ok("DELETE", "/api/v1/hosts/db-1")
    ctx.bad("GET", "/api/v1/hosts/db-1", want=404)
    ctx.bad("DELETE", "/api/v1/hosts/db-1", want=404)
    ctx.bad("PATCH", "/api/v1/hosts/db-1", {"enabled": True}, want=404)


def test_one_click_enable(ctx):
    ctx.sql("INSERT INTO services (host_id, plugin, port, uri) SELECT id, p.plugin, p.port, p.uri "
            "FROM hosts, (VALUES ('linux', 22, 'ssh://monitor@10.0.0.1'), "
            f"('redis', 6379, 'redis://default:{SECRET}@10.0.0.1:6379'), "
            "('postgresql', 5432, 'postgresql://monitor@10.0.0.1/postgres')) "
            "AS p(plugin, port, uri) WHERE name = 'web-1'")
    check(ctx.sql("SELECT count(*) FROM tasks") == [("0",)], "tasks before enabling")
    t0 = time.monotonic()
    out = ctx.ok("PATCH", "/api/v1/hosts/web-1", {"enabled": True, "services": "all"})
    check(out["host"]["enabled"] is True and out["services_changed"] == 3, out)
    rows = ctx.sql("SELECT h.enabled, bool_and(s.enabled), count(*) FROM hosts h JOIN services s "
                   "ON s.host_id = h.id WHERE h.name = 'web-1' GROUP BY h.enabled")
    check(rows == [("t", "t", "3")], f"host and services: {rows}")
    wait_until(lambda: ctx.sql("SELECT count(*) FROM tasks t JOIN services s ON s.id = "
                               "t.service_id JOIN hosts h ON h.id = s.host_id WHERE "
                               "h.name = 'web-1'") == [("3",)], 5, "a task per service")
    say(f"3 tasks {time.monotonic() - t0:.2f}s after the click")
    one = ctx.ok("GET", "/api/v1/hosts/web-1")
    check(len(one["services"]) == 3 and all(s["task"] for s in one["services"]), one)
    redis = [s for s in one["services"] if s["plugin"] == "redis"][0]
    check(SECRET not in json.dumps(one) and redis["uri"] == "redis://default:***@10.0.0.1:6379",
          f"URI not masked: {redis['uri']}")


def test_collectors(ctx):
    ctx.sql("INSERT INTO collectors (name, weight, address, version, last_heartbeat, load) VALUES "
            "('c1', 1, '10.0.1.1', '0.1.0', now(), '{\"lag_p99_ms\": 3.5}'), "
            "('c2', 2, '10.0.1.2', '0.1.0', now(), '{}')")
    out = ctx.ok("GET", "/api/v1/collectors")
    names = [c["name"] for c in out["collectors"]]
    check(names == ["c1", "c2"], out)
    c1 = out["collectors"][0]
    check(c1["weight"] == 1 and c1["address"] == "10.0.1.1" and c1["load"]["lag_p99_ms"] == 3.5
          and c1["heartbeat_age_s"] is not None and "state" in c1 and "tasks" in c1, c1)
    out = ctx.ok("PATCH", "/api/v1/collectors/c1", {"weight": 2.5})
    check(out == {"name": "c1", "weight": 2.5, "state": out["state"]}, out)
    check(ctx.sql("SELECT weight FROM collectors WHERE name = 'c1'") == [("2.5",)], "weight")
    ctx.bad("PATCH", "/api/v1/collectors/c9", {"weight": 2}, want=404)


def test_services_tasks(ctx):
    ctx.sql("INSERT INTO credential_profiles (name, kind, username, secret) VALUES "
            f"('redis-mon', 'redis', 'default', '{{\"password\": \"{SECRET}\"}}')")
    out = ctx.ok("GET", "/api/v1/services?host=web-1")
    check(out["total"] == 3, out)
    redis = [s for s in out["services"] if s["plugin"] == "redis"][0]
    gen = int(ctx.sql(f"SELECT generation FROM tasks WHERE service_id = {redis['id']}")[0][0])
    out = ctx.ok("PATCH", f"/api/v1/services/{redis['id']}", {"credential_profile": "redis-mon"})
    check(out["credential_profile"] == "redis-mon" and out["enabled"] is True, out)
    check(SECRET not in json.dumps(out), "secret returned")
    cp = ctx.sql(f"SELECT cp.name FROM services s JOIN credential_profiles cp ON cp.id = "
                 f"s.credential_profile_id WHERE s.id = {redis['id']}")
    check(cp == [("redis-mon",)], f"profile {cp}")
    assigned = ctx.sql(f"SELECT collector_id IS NOT NULL, generation FROM tasks WHERE service_id = "
                       f"{redis['id']}")[0]
    if assigned[0] == "t":  # a collector runs it: it is told through a new generation
        check(int(assigned[1]) > gen, f"generation not bumped: {assigned}")
    ctx.bad("PATCH", f"/api/v1/services/{redis['id']}", {"credential_profile": "nope"})
    ctx.bad("PATCH", "/api/v1/services/999999", {"enabled": False}, want=404)
    ctx.bad("PATCH", "/api/v1/services/1%3B%20DROP%20TABLE%20services", {"enabled": False})
    ctx.ok("PATCH", f"/api/v1/services/{redis['id']}", {"enabled": False})
    wait_until(lambda: ctx.sql(f"SELECT count(*) FROM tasks WHERE service_id = {redis['id']}")
               == [("0",)], 5, "the disabled service's task to go")
    ctx.ok("PATCH", f"/api/v1/services/{redis['id']}", {"enabled": True})
    for path in ("/api/v1/services", "/api/v1/hosts/web-1", "/api/v1/tasks", "/api/v1/collectors"):
        _s, body, _h = ctx.call("GET", path)
        check(SECRET not in json.dumps(body), f"{path} returns the secret")
    wait_until(lambda: ctx.ok("GET", "/api/v1/tasks")["total"] == 3, 5, "3 tasks")
    tasks = ctx.ok("GET", "/api/v1/tasks")
    t = tasks["tasks"][0]
    check({"id", "host", "plugin", "collector", "generation", "cost"} <= set(t), t)
    check(tasks["unassigned"] + sum(1 for x in tasks["tasks"] if x["collector"]) == 3, tasks)
    ctx.sql("INSERT INTO errors (task_id, message, at) SELECT id, 'old error', now() - "
            "interval '1 hour' FROM tasks ORDER BY id LIMIT 1")
    ctx.sql("INSERT INTO errors (task_id, message) SELECT id, 'connection refused' FROM tasks "
            "ORDER BY id LIMIT 1")
    errs = ctx.ok("GET", "/api/v1/errors")["errors"]
    check([e["message"] for e in errs][:2] == ["connection refused", "old error"], errs)
    check(errs[0]["host"] == "web-1", errs[0])
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    errs = ctx.ok("GET", f"/api/v1/errors?since={since}&limit=10")["errors"]
    check([e["message"] for e in errs] == ["connection refused"], errs)
    ctx.bad("GET", "/api/v1/errors?since=yesterday")
    ctx.bad("GET", "/api/v1/errors?limit=0")
    one = ctx.ok("GET", "/api/v1/hosts/web-1")
    check(one["errors"] and one["errors"][0]["message"] == "connection refused", one["errors"])


def test_maintenance(ctx):
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    out = ctx.ok("PUT", "/api/v1/hosts/web-1/maintenance", {"until": until})
    check(out["desired"]["on"] is True, out)
    got = ctx.ok("GET", "/api/v1/hosts/web-1/maintenance")
    say(f"maintenance: {got}")
    check(got["desired"]["on"] is True and got["desired"]["until"] is not None, got)
    check(got["applied"]["on"] is False and got["in_sync"] is False, got)  # no Zabbix here
    rows = ctx.sql("SELECT maintenance, extract(epoch FROM maintenance_until)::bigint FROM hosts "
                   "WHERE name = 'web-1'")
    want = int(time.mktime(time.strptime(until, "%Y-%m-%dT%H:%M:%SZ"))) - time.timezone
    check(rows[0][0] == "t" and abs(int(rows[0][1]) - want) <= 1, f"row {rows} want {want}")
    ctx.ok("PUT", "/api/v1/hosts/web-2/maintenance", {"until": None})
    check(ctx.sql("SELECT maintenance, maintenance_until FROM hosts WHERE name = 'web-2'")
          == [("t", None)], "open-ended maintenance")
    ctx.bad("PUT", "/api/v1/hosts/web-1/maintenance", {"until": "2001-01-01T00:00:00Z"})
    ctx.bad("PUT", "/api/v1/hosts/web-1/maintenance", {"until": "+2h"})
    ctx.bad("PUT", "/api/v1/hosts/nohost/maintenance", {"until": None}, want=404)
    out = ctx.ok("DELETE", "/api/v1/hosts/web-2/maintenance")
    check(out["desired"]["on"] is False, out)
    check(ctx.sql("SELECT maintenance FROM hosts WHERE name = 'web-2'") == [("f",)], "cleared")


def snapshot(ctx):
    return (ctx.sql("SELECT name, address, enabled, groups, maintenance FROM hosts ORDER BY name"),
            ctx.sql("SELECT name, weight FROM collectors ORDER BY name"),
            ctx.sql("SELECT id, enabled, credential_profile_id FROM services ORDER BY id"),
            ctx.sql("SELECT count(*) FROM audit_log"))


def test_bad_input(ctx):
    before = snapshot(ctx)
    for raw in ("{", "not json", "[1, 2]", '"x"', "", "{\"weight\": NaN}",
                "[" * 5000 + "]" * 5000):
        ctx.bad("PATCH", "/api/v1/collectors/c1", raw=raw, what=f"raw {raw[:12]!r}")
    for w in (0, -1, "x", None, 1e7, True):
        ctx.bad("PATCH", "/api/v1/collectors/c1", {"weight": w}, what=f"weight {w!r}")
    ctx.bad("PATCH", "/api/v1/collectors/c1", raw='{"weight": Infinity}', what="Infinity")
    ctx.bad("PATCH", "/api/v1/collectors/c1", {"weight": 2, "state": "dead"}, what="unknown field")
    ctx.bad("PATCH", "/api/v1/hosts/web-1", {"enabled": True, "admin": True}, what="unknown field")
    ctx.bad("PATCH", "/api/v1/hosts/web-1", {"enabled": "yes"})
    ctx.bad("PATCH", "/api/v1/hosts/web-1", {"services": "all"}, what="services without enabled")
    ctx.bad("PATCH", "/api/v1/hosts/web-1", {"address": "1.2.3.4; reboot"})
    ctx.bad("POST", "/api/v1/hosts", {"name": NASTY})
    ctx.bad("POST", "/api/v1/hosts", {"name": "$(touch /tmp/pwned)"})
    ctx.bad("POST", "/api/v1/hosts", {"name": "ok", "groups": ["a`id`"]})
    quoted = urllib.request.quote(NASTY, safe="")
    for method, body in (("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)):
        ctx.bad(method, f"/api/v1/hosts/{quoted}", body, what="SQL in the name")
    ctx.bad("PATCH", f"/api/v1/collectors/{quoted}", {"weight": 2}, what="SQL in the name")
    ctx.bad("PUT", f"/api/v1/hosts/{quoted}/maintenance", {"until": None}, what="SQL in the name")
    ctx.bad("GET", f"/api/v1/services?host={quoted}", what="SQL in ?host")
    ctx.bad("GET", "/api/v1/hosts?enabled=maybe")
    ctx.bad("GET", "/api/v1/hosts?limit=100000")
    ctx.bad("GET", "/api/v1/hosts/web-1/nothing", want=404)
    ctx.bad("POST", "/api/v1/nothing", {}, want=404)
    ctx.bad("POST", "/api/v1/collectors", {}, want=405)
    status, out, _ = ctx.call("GET", f"/api/v1/hosts?q={quoted}")
    check(status == 200 and out["hosts"] == [], f"q with SQL: {status} {out}")
    after = snapshot(ctx)
    check(after == before, f"rows changed:\n{before}\n{after}")
    check(ctx.sql("SELECT to_regclass('hosts') IS NOT NULL") == [("t",)], "hosts table gone")
    check(ctx.coord.alive(), lambda: ctx.coord.output())


def test_audit(ctx):
    rows = ctx.sql("SELECT actor, action, object_type, object_id, before IS NOT NULL, "
                   "after IS NOT NULL FROM audit_log WHERE actor = 'api' ORDER BY id")
    actions = [(r[1], r[3]) for r in rows]
    say(f"{len(rows)} audit rows: {sorted(set(a for a, _ in actions))}")
    for want in (("host.create", "web-1"), ("host.create", "db-1"), ("host.delete", "db-1"),
                 ("host.update", "web-1"), ("collector.weight", "c1"),
                 ("maintenance.set", "web-1"), ("maintenance.clear", "web-2")):
        check(want in actions, f"no audit row {want}: {actions}")
    check(sum(1 for a, _ in actions if a == "service.enable") >= 3, f"service.enable rows: {actions}")
    check(sum(1 for a, _ in actions if a == "service.update") >= 3, f"service.update rows: {actions}")
    w = ctx.sql("SELECT before->>'weight', after->>'weight' FROM audit_log WHERE action = "
                "'collector.weight'")
    check(w == [("1", "2.5")], f"collector.weight before/after: {w}")
    h = ctx.sql("SELECT before->>'enabled', after->>'enabled' FROM audit_log WHERE action = "
                "'host.update' AND object_id = 'web-1'")
    check(h[0] == ("false", "true"), f"host.update before/after: {h}")
    check(SECRET not in json.dumps(ctx.sql("SELECT before, after FROM audit_log")), "secret audited")


def test_config(ctx):
    registry = ctx.pg.url(db="registry")
    short = os.path.join(ctx.tmp, "short.token")
    with open(short, "w") as f:
        f.write("abc\n")
    cases = (
        ('[http]\nlisten = "127.0.0.1:0"\n', "listen needs api_token_file"),
        (f'[http]\nlisten = "127.0.0.1:0"\napi_token_file = "{short}"\n', "at least 16"),
        (f'[http]\nlisten = "127.0.0.1:0"\napi_token_file = "{ctx.tmp}/missing"\n',
         "cannot be read"),
        ('[http]\nlisten = "127.0.0.1:0"\nopen_read = true\n', "'http.open_read' is not a known key"),
    )
    for i, (http, want) in enumerate(cases):
        path = os.path.join(ctx.tmp, f"bad{i}.toml")
        with open(path, "w") as f:
            f.write(f'[coordinator]\nname = "x"\nregistry = "{registry}"\n' + http)
        cp = trapline("coordinator", "--config", path, "--check-config")
        check(cp.returncode == 1 and want in cp.stderr, f"{http!r}: {cp.returncode} {cp.stderr!r}")
    # A second coordinator with open reads: GETs without a token, writes still need one.
    port = free_port()
    path = os.path.join(ctx.tmp, "co2.toml")
    with open(path, "w") as f:
        f.write(f'[coordinator]\nname = "co2"\nregistry = "{registry}"\n\n[http]\n'
                f'listen = "127.0.0.1:{port}"\napi_token_file = "{ctx.tmp}/api.token"\n'
                'open_reads = true\n')
    co2 = BackgroundProc([trapline_bin(), "coordinator", "--config", path], ctx.tmp, "co2")
    try:
        saved, ctx.port = ctx.port, port
        wait_until(lambda: "standing by" in co2.stderr() or not co2.alive(), 20, "co2 to stand by")
        st = wait_until(lambda: ctx.call("GET", "/api/v1/status", token=None)[1], 5, "status")
        check(st["role"] == "standby", f"co2 status {st}")
        status, out, _ = ctx.call("GET", "/api/v1/hosts", token=None)
        check(status == 200 and out["total"] >= 1, f"open read: {status} {out}")
        status, _out, _ = ctx.call("PATCH", "/api/v1/collectors/c1", {"weight": 3}, token=None)
        check(status == 401, f"write without token on open_reads: {status}")
        # A standby serves writes too: they go to the registry.
        ctx.ok("PATCH", "/api/v1/collectors/c1", {"weight": 2.5})
        m = parse_prometheus(ctx.call("GET", "/metrics", token=None)[1])
        check(m.get("trapline_coordinator_leader") == 0, "standby's leader gauge")
    finally:
        ctx.port = saved
        co2.popen.send_signal(signal.SIGTERM)
        co2.wait(10)


def test_stop(ctx):
    ctx.ok("GET", "/api/v1/status")
    # An open event stream (the admin panel's) must not keep the process from exiting: it did.
    import socket
    stream = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
    stream.sendall(b"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                   TOKEN.encode() + b"\r\n\r\n")
    head = stream.recv(200)
    check(head.startswith(b"HTTP/1.1 200"), f"events stream: {head!r}")
    t0 = time.monotonic()
    ctx.coord.popen.send_signal(signal.SIGTERM)
    rc = ctx.coord.wait(10)
    took = time.monotonic() - t0
    say(f"stopped in {took:.2f}s, exit {rc}")
    check(rc == 0 and took < 5, lambda: f"exit {rc} after {took:.1f}s\n{ctx.coord.output()}")
    check(TOKEN not in ctx.coord.stderr(), "the token is in the log")
    stream.close()


if __name__ == "__main__":
    sys.exit(run_checks([test_status_and_metrics, test_auth, test_hosts, test_one_click_enable,
                         test_collectors, test_services_tasks, test_maintenance, test_bad_input,
                         test_audit, test_config, test_stop],
                        setup=setup, teardown=teardown, limit_s=120))
