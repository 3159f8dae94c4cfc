"""The admin panel's API routes (coordinator/panel_api.cc) against a real PostgreSQL registry,
a real Redis (for the probe) and one `trapline coordinator` with [http] (it leads).

  test_events          GET /api/v1/events: hello; a host event within 2 s of a PATCH, and of
                       a direct SQL UPDATE of services.state (a service event and its host's);
                       no token / a wrong token refused; an error row and an audit row arrive;
                       a session's stream ends ("denied") after logout and after the user is
                       disabled, a token's stream goes on
  test_hosts_filters   GET /api/v1/hosts: status=ok|error|unknown|disabled|maintenance, plugin,
                       group (nested), q, paging and total return exactly the expected hosts,
                       with services, collectors and last error; bad filters 400
  test_complete        GET /api/v1/complete for host, group, plugin; at most 20; bad field 400
  test_bulk            POST /api/v1/hosts/bulk maintenance_on: each host's desired maintenance,
                       one audit row per host (before/after), unknown host reported; enable
                       (host + services), move_group, disable, delete; until in the past 400
                       with nothing changed; bad bodies 400
  test_audit           GET /api/v1/audit filters: actor, action (and "host.*"), object_type,
                       object, since/until, paging, latest first; bad times 400
  test_profiles        credential profiles: POST/GET/PATCH/DELETE; the secret never in any
                       answer, audit row or the coordinator's log; "secret": "changed" in the
                       audit; in use: DELETE 409; bad kinds/options/secrets 400
  test_history         the leader samples collectors' load every load_history_interval (1 s
                       here): points appear with the load's figures; bad minutes 400, 404
  test_probe           POST /api/v1/probe of the real Redis: ok with samples; with a profile
                       holding the password (the password is never on a command line); a
                       closed port: ok=false with the reason; 4 at a time (429 past that);
                       bad URIs 400
  test_probe_ssh       the probe of a real sshd with a profile's private key (a 0600 file) and
                       known_hosts: ok with entities; an unknown host key: ok=false, the reason
  test_settings        GET /api/v1/settings/zabbix: url, user, frontend_url, host_group; no
                       password
  test_list_speed      5,000 hosts x 3 services: the median time of GET /api/v1/hosts (printed,
                       not asserted), with and without filters
"""

import http.client
import json
import os
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_coordinator_api as api_test  # noqa: E402  (its Ctx: call, ok, bad, sql, close)
from common import (  # noqa: E402
    Failure, LongLivedProc, check, make_tmp, run_checks, say, trapline_bin, wait_until)
from harness import PostgresServer, RedisServer, SshServer, free_port  # noqa: E402

TOKEN = api_test.TOKEN
SECRET = "profile-secret-Kx93-never-shown"
REDIS_PW = "redis-pw-Qm27"
ZABBIX_PW = "zabbix-pw-Tr55"


class Events:
    """A server-sent events client on its own thread: (arrival time, event, data) in a queue."""

    def __init__(self, port, token=TOKEN, cookie=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Accept": "text/event-stream"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if cookie:
            headers["Cookie"] = f"trapline_session={cookie}"
        self.conn.request("GET", "/api/v1/events", headers=headers)
        self.res = self.conn.getresponse()
        self.status = self.res.status
        self.q = queue.Queue()
        if self.status == 200:
            threading.Thread(target=self._read, daemon=True).start()
        else:
            self.body = self.res.read().decode()

    def _read(self):
        event, data = "message", []
        try:
            while True:
                line = self.res.readline()
                if not line:
                    break
                line = line.decode().rstrip("\n")
                if line == "":
                    if data:
                        self.q.put((time.monotonic(), event, json.loads("\n".join(data))))
                    event, data = "message", []
                elif line.startswith(":"):
                    continue
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
        except Exception:  # noqa: BLE001 - http.client raises several kinds when closed under it
            pass  # closed by the test (close()) or cut
        self.q.put((time.monotonic(), "closed", {}))

    def wait_for(self, pred, timeout, what, after=0.0):
        """The first event (name, data) with pred(name, data) that arrived after `after`
        (monotonic), within `timeout` s."""
        end = time.monotonic() + timeout
        seen = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise Failure(f"no {what} within {timeout} s; saw {seen[-10:]}")
            try:
                t, name, data = self.q.get(timeout=left)
            except queue.Empty:
                continue
            seen.append((name, data))
            if t > after and pred(name, data):
                return t, data

    def drain(self):
        while not self.q.empty():
            self.q.get_nowait()

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class Ctx(api_test.Ctx):
    """test_coordinator_api's, with a Redis and the panel's config keys."""

    def __init__(self):
        self.tmp = make_tmp("panel-api")
        self.pg = PostgresServer(password="registry-pw-77")
        self.pg.start()
        self.pg.create_db("registry")
        self.redis = RedisServer(password=REDIS_PW)
        self.redis.start()
        self.port = free_port()
        token_file = os.path.join(self.tmp, "api.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        zpw = os.path.join(self.tmp, "zabbix.pw")
        with open(zpw, "w") as f:
            f.write(ZABBIX_PW + "\n")
        for p in (token_file, zpw):
            os.chmod(p, 0o600)
        # A Zabbix URL nobody listens on: the settings route only shows it.
        self.zabbix_url = f"http://127.0.0.1:{free_port()}/api_jsonrpc.php"
        self.config = os.path.join(self.tmp, "co1.toml")
        with open(self.config, "w") as f:
            f.write(f'[coordinator]\nname = "co1"\nregistry = "{self.pg.url(db="registry")}"\n'
                    'log_level = "debug"\nload_history_interval = 1\n\n'
                    f'[zabbix]\nurl = "{self.zabbix_url}"\nuser = "Admin"\n'
                    f'password_file = "{zpw}"\nfrontend_url = "http://zabbix.example/zabbix"\n'
                    'host_group = "trapline hosts"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{self.port}"\napi_token_file = "{token_file}"\n')
        # The probe's credential files go under TMPDIR: this test's own, to look at.
        self.probe_tmp = os.path.join(self.tmp, "probe-tmp")
        os.makedirs(self.probe_tmp)
        saved = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = self.probe_tmp
        try:
            self.coord = LongLivedProc(
                [trapline_bin(), "coordinator", "--config", self.config], self.tmp, "co1")
        finally:
            if saved is None:
                os.environ.pop("TMPDIR")
            else:
                os.environ["TMPDIR"] = saved
        wait_until(lambda: "leader: acquired" in self.coord.stderr() or not self.coord.alive(),
                   30, "the coordinator to lead")
        check(self.coord.alive(), lambda: self.coord.output())
        check(self.sql("SELECT max(version) FROM schema_migrations")[0][0] >= "5",
              "schema not at version 5")

    def close(self):
        super().close()
        self.redis.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def names(lst):
    return [h["name"] for h in lst["hosts"]]


# A small fixed set of hosts, one per status.
FIXTURE = """
INSERT INTO hosts (name, address, enabled, maintenance, groups) VALUES
  ('ok-1', '10.1.0.1', true, false, '{Linux/Prod}'),
  ('err-1', '10.1.0.2', true, false, '{Linux}'),
  ('unk-1', '10.1.0.3', true, false, '{Databases}'),
  ('dis-1', '10.1.0.4', false, false, '{Linux}'),
  ('mnt-1', '10.1.0.5', true, true, '{Databases}');
INSERT INTO services (host_id, plugin, port, enabled, state)
  SELECT h.id, v.plugin, v.port, v.enabled, v.state FROM hosts h JOIN (VALUES
    ('ok-1', 'linux', 22, true, 'ok'), ('ok-1', 'redis', 6379, true, 'ok'),
    ('ok-1', 'generic:nginx', 80, true, 'unknown'),
    ('err-1', 'linux', 22, true, 'ok'), ('err-1', 'redis', 6379, true, 'error'),
    ('unk-1', 'postgresql', 5432, true, 'unknown'),
    ('dis-1', 'linux', 22, false, 'unknown'),
    ('mnt-1', 'postgresql', 5432, true, 'ok')) AS v(host, plugin, port, enabled, state)
  ON v.host = h.name;
INSERT INTO collectors (name, weight, state, last_heartbeat) VALUES ('fixture-c', 1, 'draining', now());
INSERT INTO tasks (service_id, plugin, collector_id)
  SELECT s.id, s.plugin, (SELECT id FROM collectors WHERE name = 'fixture-c') FROM services s
  JOIN hosts h ON h.id = s.host_id WHERE h.name = 'err-1' AND s.plugin = 'redis';
INSERT INTO errors (task_id, message, at) SELECT t.id, m, now() - make_interval(secs => a)
  FROM tasks t, (VALUES ('old failure', 60), ('NOAUTH Authentication required', 1)) AS e(m, a);
"""


# ---- checks ---------------------------------------------------------------------------------------


def login_cookie(ctx, user, password):
    """Signs in: (the session cookie's value, the CSRF token)."""
    status, out, hdrs = ctx.call("POST", "/api/v1/session", {"user": user, "password": password},
                                 token=None)
    check(status == 200, f"login {user}: {status} {out}")
    cookie = [c.split(";")[0].split("=", 1)[1] for c in hdrs.get_all("Set-Cookie")
              if c.startswith("trapline_session=")][0]
    return cookie, out["csrf_token"]


def test_events(ctx):
    for token, what in ((None, "no token"), ("wrong-token-000000000", "a wrong token")):
        ev = Events(ctx.port, token=token)
        check(ev.status == 401, f"events with {what}: {ev.status}")
        say(f"events with {what}: {ev.status} {ev.body.strip()}")
        ev.close()
    ev = Events(ctx.port)
    check(ev.status == 200, f"events: {ev.status}")
    _, hello = ev.wait_for(lambda n, d: n == "hello", 5, "hello")
    check(hello.get("live") is True, f"hello says the events connection is down: {hello}")
    ctx.ok("POST", "/api/v1/hosts", {"name": "ev-1", "address": "10.9.0.1"}, want=201)
    ctx.sql("INSERT INTO services (host_id, plugin, port) SELECT id, 'redis', 6379 FROM hosts "
            "WHERE name = 'ev-1'")
    ev.drain()
    time.sleep(0.5)  # past the 200 ms gap of the insert's own events

    t0 = time.monotonic()
    ctx.ok("PATCH", "/api/v1/hosts/ev-1", {"enabled": True})
    t, data = ev.wait_for(lambda n, d: n == "host" and d.get("id") == "ev-1", 2, "host event",
                          after=t0)
    say(f"host event {(t - t0) * 1000:.0f} ms after the PATCH: {data}")

    time.sleep(0.5)
    ev.drain()
    t0 = time.monotonic()
    ctx.sql("UPDATE services SET state = 'error' FROM hosts h WHERE h.id = services.host_id "
            "AND h.name = 'ev-1'")
    t, data = ev.wait_for(lambda n, d: n == "service" and d.get("host") == "ev-1", 2,
                          "service event after SQL UPDATE", after=t0)
    check(data.get("state") == "error", data)
    say(f"service event {(t - t0) * 1000:.0f} ms after the SQL UPDATE: {data}")
    t, data = ev.wait_for(lambda n, d: n == "host" and d.get("id") == "ev-1", 2,
                          "host event after SQL UPDATE", after=t0)
    say(f"host event {(t - t0) * 1000:.0f} ms after the SQL UPDATE: {data}")

    # A heartbeat-like update (load only) raises nothing; a weight change does.
    ctx.sql("INSERT INTO collectors (name, last_heartbeat) VALUES ('ev-c', now())")
    time.sleep(0.3)
    ev.drain()
    ctx.sql("UPDATE collectors SET load = '{\"lag_p99_ms\": 1}', last_heartbeat = now() "
            "WHERE name = 'ev-c'")
    time.sleep(0.5)
    quiet = [(n, d) for _, n, d in list(ev.q.queue) if n == "collector"]
    check(not quiet, f"a heartbeat-like update raised {quiet}")
    ctx.ok("PATCH", "/api/v1/collectors/ev-c", {"weight": 3})
    _, data = ev.wait_for(lambda n, d: n == "collector" and d.get("id") == "ev-c", 2,
                          "collector event")
    _, data = ev.wait_for(lambda n, d: n == "audit" and d.get("action") == "collector.weight", 2,
                          "audit event")
    ctx.sql("DELETE FROM collectors WHERE name = 'ev-c'")

    # A burst of changes to one host is coalesced: at most a few events, the last one sent.
    ev.drain()
    for i in range(20):
        ctx.sql(f"UPDATE hosts SET address = '10.9.0.{i + 2}' WHERE name = 'ev-1'")
    time.sleep(1.0)
    got = []
    while not ev.q.empty():
        _, n, d = ev.q.get_nowait()
        if n == "host" and d.get("id") == "ev-1":
            got.append(d)
    say(f"20 updates of one host in a row -> {len(got)} host events")
    check(1 <= len(got) < 20, f"{len(got)} host events for 20 updates")
    # The events connection cut under the coordinator: back by itself, and every stream is
    # told to refetch (notifications may have been missed meanwhile).
    ev.drain()
    ctx.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = "
            "'trapline coordinator events'")
    t0 = time.monotonic()
    t, data = ev.wait_for(lambda n, d: n == "host" and d.get("resync") and d.get("many"), 10,
                          "resync after the events connection was cut")
    say(f"events connection cut: resync hint after {(t - t0) * 1000:.0f} ms")
    # A client that goes away: the server notices at its next writes (events, or the 15 s
    # heartbeat comment) and drops the stream.
    closed_before = ctx.coord.stderr().count("stream closed")
    ev.close()
    for i in range(4):
        ctx.sql(f"UPDATE hosts SET address = '10.9.1.{i}' WHERE name = 'ev-1'")
        time.sleep(0.3)
    wait_until(lambda: ctx.coord.stderr().count("stream closed") > closed_before, 5,
               "the server to notice the client left")
    wait_until(lambda: "events stream open" in ctx.coord.stderr(), 5, "stream log line")

    # A session cookie: the stream opens for a signed-in user; an unknown session is told
    # "denied" and the stream ends.
    cp = subprocess.run([trapline_bin(), "user", "add", "panelview", "--role", "viewer",
                         "--registry", ctx.pg.url(db="registry")], input="viewer-password-77\n",
                        capture_output=True, text=True, timeout=60)
    check(cp.returncode == 0, f"user add: {cp.stdout} {cp.stderr}")
    cookie, csrf = login_cookie(ctx, "panelview", "viewer-password-77")
    ev = Events(ctx.port, token=None, cookie=cookie)
    check(ev.status == 200, f"events with a session: {ev.status}")
    ev.wait_for(lambda n, d: n == "hello", 5, "hello with a session")
    ctx.ok("PATCH", "/api/v1/hosts/ev-1", {"enabled": False})
    ev.wait_for(lambda n, d: n == "host" and d.get("id") == "ev-1", 2, "host event with a session")
    # The stream does not outlive its session: after a logout it is told "denied" and ends
    # (re-checked at once on the session.logout audit event, else every 30 s); a token's stream
    # goes on.
    token_ev = Events(ctx.port)
    token_ev.wait_for(lambda n, d: n == "hello", 5, "hello with the token")
    t0 = time.monotonic()
    status, out, _ = ctx.call("DELETE", "/api/v1/session", token=None,
                              headers={"Cookie": f"trapline_session={cookie}",
                                       "X-CSRF-Token": csrf})
    check(status == 200, f"logout: {status} {out}")
    t, data = ev.wait_for(lambda n, d: n == "denied", 10, "denied after the logout")
    ev.wait_for(lambda n, d: n == "closed", 5, "the stream's end after the logout")
    say(f"the session's stream denied {t - t0:.2f} s after the logout: {data}")
    ev.close()
    # Likewise when the user is disabled (its sessions end with it).
    cookie, _ = login_cookie(ctx, "panelview", "viewer-password-77")
    ev = Events(ctx.port, token=None, cookie=cookie)
    ev.wait_for(lambda n, d: n == "hello", 5, "hello with the second session")
    ctx.ok("PATCH", "/api/v1/users/panelview", {"disabled": True})
    ev.wait_for(lambda n, d: n == "denied", 10, "denied after the user was disabled")
    ev.wait_for(lambda n, d: n == "closed", 5, "the stream's end after the user was disabled")
    ev.close()
    after = time.monotonic()
    ctx.ok("PATCH", "/api/v1/hosts/ev-1", {"enabled": True})
    token_ev.wait_for(lambda n, d: n == "host" and d.get("id") == "ev-1", 2,
                      "the token's stream after the sessions' ended", after=after)
    token_ev.close()
    ev = Events(ctx.port, token=None, cookie="A" * 43)
    _, data = ev.wait_for(lambda n, d: n in ("denied", "hello"), 5, "denied")
    check(data.get("type") == "denied", f"an unknown session got {data}")
    ev.wait_for(lambda n, d: n == "closed", 5, "the stream's end")
    say(f"unknown session: {data}")
    ev.close()


def test_hosts_filters(ctx):
    ctx.sql(FIXTURE)
    fixture = {"ok-1", "err-1", "unk-1", "dis-1", "mnt-1"}

    def only(path):
        lst = ctx.ok("GET", path)
        return [n for n in names(lst) if n in fixture], lst

    got, lst = only("/api/v1/hosts?status=ok")
    check(got == ["ok-1"], f"status=ok: {got}")
    got, lst = only("/api/v1/hosts?status=error")
    check(got == ["err-1"], f"status=error: {got}")
    h = [x for x in lst["hosts"] if x["name"] == "err-1"][0]
    check(h["status"] == "error" and h["last_error"]
          and h["last_error"]["message"] == "NOAUTH Authentication required"
          and h["last_error"]["plugin"] == "redis", f"err-1: {h}")
    check(h["collectors"] == ["fixture-c"], f"collectors: {h['collectors']}")
    check(sorted((s["plugin"], s["state"], s["enabled"]) for s in h["services"])
          == [("linux", "ok", True), ("redis", "error", True)], h["services"])
    check(h["groups"] == ["Linux"] and h["maintenance"] is False and h["address"] == "10.1.0.2", h)
    got, _ = only("/api/v1/hosts?status=unknown")
    check(got == ["unk-1"], f"status=unknown: {got}")
    got, _ = only("/api/v1/hosts?status=disabled")
    check(got == ["dis-1"], f"status=disabled: {got}")
    got, _ = only("/api/v1/hosts?status=maintenance")
    check(got == ["mnt-1"], f"status=maintenance: {got}")
    got, _ = only("/api/v1/hosts?plugin=redis")
    check(got == ["err-1", "ok-1"], f"plugin=redis: {got}")
    got, _ = only("/api/v1/hosts?group=Linux")
    check(got == ["dis-1", "err-1", "ok-1"], f"group=Linux (nested Linux/Prod too): {got}")
    got, _ = only("/api/v1/hosts?group=Linux/Prod")
    check(got == ["ok-1"], f"group=Linux/Prod: {got}")
    got, _ = only("/api/v1/hosts?q=ERR")
    check(got == ["err-1"], f"q=ERR: {got}")
    got, _ = only("/api/v1/hosts?q=10.1.0.")
    check(sorted(got) == sorted(fixture), f"q=10.1.0.: {got}")
    got, _ = only("/api/v1/hosts?group=Linux&status=ok&plugin=linux")
    check(got == ["ok-1"], f"combined: {got}")
    lst = ctx.ok("GET", "/api/v1/hosts?q=10.1.0.&limit=2&offset=1")
    check(lst["total"] == 5 and names(lst) == ["err-1", "mnt-1"], f"paging: {lst}")
    lst = ctx.ok("GET", "/api/v1/hosts?maintenance=true")
    check("mnt-1" in names(lst) and "ok-1" not in names(lst), names(lst))
    # The old parameters still work.
    lst = ctx.ok("GET", "/api/v1/hosts?enabled=false&q=1")
    check([n for n in names(lst) if n in fixture] == ["dis-1"], names(lst))
    # The host page is still served under /hosts/{name}.
    one = ctx.ok("GET", "/api/v1/hosts/err-1")
    check(one["host"]["name"] == "err-1", one)
    ctx.bad("GET", "/api/v1/hosts?status=broken")
    ctx.bad("GET", "/api/v1/hosts?plugin=a;b")
    ctx.bad("GET", "/api/v1/hosts?group=" + urllib.parse.quote("'; DROP TABLE hosts; --"))
    ctx.bad("GET", "/api/v1/hosts?limit=0")
    ctx.bad("GET", "/api/v1/hosts?q=" + "x" * 300)
    lst = ctx.ok("GET", "/api/v1/hosts?q=" + urllib.parse.quote("'; DROP TABLE hosts; --"))
    check(lst["total"] == 0, lst)
    check(ctx.sql("SELECT count(*) FROM hosts")[0][0] != "0", "hosts gone")
    # A row edited by hand into nonsense (a 9,000-character name) still changes: the event's
    # payload stays under NOTIFY's 8,000-byte limit.
    ctx.sql("INSERT INTO hosts (name) VALUES (repeat('x', 9000)); "
            "UPDATE hosts SET enabled = true WHERE name = repeat('x', 9000)")
    check(ctx.sql("SELECT enabled FROM hosts WHERE length(name) = 9000")[0][0] == "t", "huge name")
    ctx.sql("DELETE FROM hosts WHERE length(name) = 9000")


def test_complete(ctx):
    out = ctx.ok("GET", "/api/v1/complete?field=host&prefix=er")
    check(out["suggestions"][0] == "err-1", out)
    out = ctx.ok("GET", "/api/v1/complete?field=group&prefix=lin")
    check(out["suggestions"] == ["Linux", "Linux/Prod"], out)
    out = ctx.ok("GET", "/api/v1/complete?field=plugin&prefix=")
    check(out["suggestions"] == ["generic:nginx", "linux", "postgresql", "redis"], out)
    out = ctx.ok("GET", "/api/v1/complete?field=host&prefix=1")
    check(out["suggestions"][:1] == ["dis-1"] or "1" in out["suggestions"][0], out)
    ctx.sql("INSERT INTO hosts (name) SELECT 'many-' || g FROM generate_series(1, 30) g")
    out = ctx.ok("GET", "/api/v1/complete?field=host&prefix=MANY")
    check(len(out["suggestions"]) == 20 and out["suggestions"][0] == "many-1", out)
    ctx.sql("DELETE FROM hosts WHERE name LIKE 'many-%'")
    ctx.bad("GET", "/api/v1/complete?field=users&prefix=a")
    ctx.bad("GET", "/api/v1/complete?prefix=a")
    ctx.bad("GET", "/api/v1/complete?field=host&prefix=" + "a" * 300)


def audit_rows(ctx, action, objects):
    rows = ctx.sql("SELECT object_id, actor, before::text, after::text FROM audit_log WHERE "
                   f"action = '{action}' AND object_id IN ({', '.join(repr(o) for o in objects)}) "
                   "ORDER BY id")
    return [(r[0], r[1], json.loads(r[2]) if r[2] else None, json.loads(r[3]) if r[3] else None)
            for r in rows]


def test_bulk(ctx):
    ctx.sql("INSERT INTO hosts (name, groups) SELECT 'bulk-' || g, '{Old}' FROM generate_series(1, 3) g")
    ctx.sql("INSERT INTO services (host_id, plugin, port) SELECT h.id, p, 0 FROM hosts h, "
            "unnest(ARRAY['linux', 'redis', 'generic:nginx']) p WHERE h.name LIKE 'bulk-%'")
    hosts = ["bulk-1", "bulk-2", "bulk-3"]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 7200))
    before_audit = ctx.sql("SELECT count(*) FROM audit_log")[0][0]
    out = ctx.ok("POST", "/api/v1/hosts/bulk",
                 {"hosts": hosts + ["no-such-host"], "action": "maintenance_on", "until": until})
    res = {r["host"]: r for r in out["results"]}
    check([r["host"] for r in out["results"]] == hosts + ["no-such-host"], out)
    check(all(res[h]["ok"] for h in hosts) and not res["no-such-host"]["ok"]
          and "no host" in res["no-such-host"]["error"], out)
    rows = ctx.sql("SELECT name, maintenance, extract(epoch FROM maintenance_until)::bigint FROM "
                   "hosts WHERE name LIKE 'bulk-%' ORDER BY name")
    want_until = int(time.mktime(time.strptime(until, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone)
    check(all(r[1] == "t" and abs(int(r[2]) - want_until) <= 1 for r in rows), rows)
    audit = audit_rows(ctx, "maintenance.set", hosts)
    check(sorted(a[0] for a in audit) == hosts, f"one audit row per host: {audit}")
    check(all(a[1] == "api" and a[2]["maintenance"] is False and a[3]["maintenance"] is True
              and a[3]["until"] for a in audit), audit)
    check(int(ctx.sql("SELECT count(*) FROM audit_log")[0][0]) - int(before_audit) == 3,
          "audit rows for the unknown host")
    # GET /hosts shows them in maintenance.
    got = names(ctx.ok("GET", "/api/v1/hosts?maintenance=true&q=bulk-"))
    check(got == hosts, got)
    # 5,000 host names (about 140 KiB, past the 64 KiB of other routes) in one call.
    many = [f"web-{i:04d}.bulk.example.com" for i in range(5000)]
    out = ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": many, "action": "maintenance_off"})
    check(len(out["results"]) == 5000 and not any(r["ok"] for r in out["results"]),
          f"5,000 unknown hosts: {len(out['results'])} results")

    # until in the past: 400, nothing changed.
    ctx.bad("POST", "/api/v1/hosts/bulk", {"hosts": hosts, "action": "maintenance_on",
                                           "until": "2001-01-01T00:00:00Z"})
    check(len(audit_rows(ctx, "maintenance.set", hosts)) == 3, "audit after a refused bulk")

    out = ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": hosts, "action": "maintenance_off"})
    check(all(r["ok"] for r in out["results"]), out)
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name LIKE 'bulk-%' AND maintenance")[0][0] == "0",
          "maintenance off")
    check(len(audit_rows(ctx, "maintenance.clear", hosts)) == 3, "maintenance.clear rows")

    out = ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": hosts[:2], "action": "enable"})
    # The generic service (no plugin runs it) stays off.
    rows = ctx.sql("SELECT h.name, h.enabled, count(*) FILTER (WHERE s.enabled) FROM hosts h JOIN "
                   "services s ON s.host_id = h.id WHERE h.name LIKE 'bulk-%' GROUP BY 1, 2 ORDER BY 1")
    check(rows == [("bulk-1", "t", "2"), ("bulk-2", "t", "2"), ("bulk-3", "f", "0")], rows)
    audit = audit_rows(ctx, "host.enable", hosts)
    check(len(audit) == 2 and all(a[3]["services_enabled"] == 2 for a in audit), audit)

    out = ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": hosts, "action": "move_group",
                                                "group": "New/Place"})
    check(ctx.sql("SELECT DISTINCT groups::text FROM hosts WHERE name LIKE 'bulk-%'")
          == [("{New/Place}",)], "groups moved")
    audit = audit_rows(ctx, "host.move_group", hosts)
    check(len(audit) == 3 and audit[0][2] == {"groups": ["Old"]}
          and audit[0][3] == {"groups": ["New/Place"]}, audit)

    ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": hosts, "action": "disable"})
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name LIKE 'bulk-%' AND enabled")[0][0] == "0",
          "disabled")

    out = ctx.ok("POST", "/api/v1/hosts/bulk", {"hosts": ["bulk-3"], "action": "delete"})
    check(out["results"] == [{"host": "bulk-3", "ok": True}], out)
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name = 'bulk-3'")[0][0] == "0", "deleted")
    audit = audit_rows(ctx, "host.delete", ["bulk-3"])
    check(len(audit) == 1 and audit[0][2]["services"] == 3 and audit[0][3] is None, audit)

    for body, what in (({"hosts": hosts}, "no action"),
                       ({"hosts": hosts, "action": "reboot"}, "unknown action"),
                       ({"hosts": [], "action": "enable"}, "no hosts"),
                       ({"hosts": ["a;b"], "action": "enable"}, "bad name"),
                       ({"hosts": ["'; DROP TABLE hosts; --"], "action": "delete"}, "injection"),
                       ({"hosts": hosts, "action": "move_group"}, "move_group without group"),
                       ({"hosts": hosts, "action": "enable", "until": until}, "until w/ enable"),
                       ({"hosts": [f"h{i}" for i in range(5001)], "action": "disable"},
                        "5001 hosts")):
        ctx.bad("POST", "/api/v1/hosts/bulk", body, what=what)
    ctx.bad("POST", "/api/v1/hosts/bulk", raw="{not json", what="malformed")
    status, _, _ = ctx.call("POST", "/api/v1/hosts/bulk", {"hosts": hosts, "action": "enable"},
                            token=None)
    check(status == 401, f"bulk without a token: {status}")


def test_audit(ctx):
    all_rows = ctx.ok("GET", "/api/v1/audit?limit=1000")["audit"]
    check(len(all_rows) > 10, len(all_rows))
    ats = [r["at"] for r in all_rows]
    check(ats == sorted(ats, reverse=True), "latest first")
    out = ctx.ok("GET", "/api/v1/audit?action=maintenance.set")
    check(out["audit"] and all(r["action"] == "maintenance.set" for r in out["audit"]), out)
    out = ctx.ok("GET", "/api/v1/audit?action=host.*&limit=1000")
    acts = {r["action"] for r in out["audit"]}
    check(acts and all(a.startswith("host.") for a in acts) and "host.move_group" in acts, acts)
    out = ctx.ok("GET", "/api/v1/audit?object_type=host&object=bulk-1&limit=1000")
    check(out["audit"] and all(r["object"] == "bulk-1" for r in out["audit"]), out)
    check({r["action"] for r in out["audit"]} >= {"maintenance.set", "host.enable"}, out)
    out = ctx.ok("GET", "/api/v1/audit?actor=api&limit=2")
    check(len(out["audit"]) == 2 and out["more"] is True, out)
    out2 = ctx.ok("GET", "/api/v1/audit?actor=api&limit=2&offset=2")
    check(out2["audit"][0]["id"] != out["audit"][0]["id"], "offset")
    check(ctx.ok("GET", "/api/v1/audit?actor=nobody")["audit"] == [], "actor=nobody")
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    check(ctx.ok("GET", f"/api/v1/audit?since={future}")["audit"] == [], "since future")
    check(ctx.ok("GET", f"/api/v1/audit?until={past}")["audit"] == [], "until past")
    check(len(ctx.ok("GET", f"/api/v1/audit?since={past}&until={future}&limit=1000")["audit"])
          == len(all_rows), "since/until window")
    ctx.bad("GET", "/api/v1/audit?since=yesterday")
    ctx.bad("GET", f"/api/v1/audit?since={future}&until={past}")
    ctx.bad("GET", "/api/v1/audit?limit=5000")


def test_profiles(ctx):
    key = ("-----BEGIN OPENSSH PRIVATE KEY-----\n" + SECRET + "\n-----END OPENSSH PRIVATE KEY-----\n")
    p = ctx.ok("POST", "/api/v1/credential-profiles",
               {"name": "linux-prod", "kind": "ssh", "username": "monitor",
                "secret": {"private_key": key},
                "options": {"known_hosts": "/etc/trapline/known_hosts", "interval": 2}}, want=201)
    check(p["has_secret"] is True and p["kind"] == "ssh" and "secret" not in p, p)
    ctx.ok("POST", "/api/v1/credential-profiles", {"name": "redis-main", "kind": "redis"}, want=201)
    ctx.bad("POST", "/api/v1/credential-profiles", {"name": "redis-main", "kind": "redis"}, want=409)
    # Discovery's choice (host groups, one default per kind).
    d = ctx.ok("POST", "/api/v1/credential-profiles", {"name": "ssh-default", "kind": "ssh",
                                                       "is_default": True,
                                                       "host_groups": ["Linux"]}, want=201)
    check(d["is_default"] is True and d["host_groups"] == ["Linux"], d)
    out = ctx.bad("POST", "/api/v1/credential-profiles", {"name": "ssh-d2", "kind": "ssh",
                                                          "is_default": True}, want=409)
    check("ssh-default" in out["error"], out)
    ctx.bad("PATCH", "/api/v1/credential-profiles/linux-prod", {"is_default": True}, want=409)
    ctx.ok("PATCH", "/api/v1/credential-profiles/ssh-default", {"is_default": False})
    d = ctx.ok("PATCH", "/api/v1/credential-profiles/linux-prod", {"is_default": True,
                                                                   "host_groups": ["A", "B"]})
    check(d["is_default"] is True and d["host_groups"] == ["A", "B"], d)
    ctx.ok("DELETE", "/api/v1/credential-profiles/ssh-default")
    lst = ctx.ok("GET", "/api/v1/credential-profiles")
    byname = {x["name"]: x for x in lst["profiles"]}
    check(byname["linux-prod"]["has_secret"] is True and byname["redis-main"]["has_secret"] is False,
          lst)
    ctx.ok("PATCH", "/api/v1/credential-profiles/redis-main", {"secret": {"password": SECRET}})
    one = ctx.ok("GET", "/api/v1/credential-profiles/redis-main")
    check(one["has_secret"] is True, one)
    ctx.ok("PATCH", "/api/v1/credential-profiles/linux-prod", {"username": "mon2"})
    check(ctx.sql("SELECT secret ->> 'private_key' FROM credential_profiles WHERE name = "
                  "'linux-prod'")[0][0] == key, "the secret kept when not given")
    audit = ctx.ok("GET", "/api/v1/audit?object_type=credential_profile&limit=100")["audit"]
    upd = [a for a in audit if a["action"] == "credential_profile.update"
           and a["object"] == "redis-main"]
    check(upd and upd[0]["after"].get("secret") == "changed", upd)
    # Nowhere: answers, audit rows, the log.
    answers = json.dumps([ctx.ok("GET", "/api/v1/credential-profiles"), audit,
                          ctx.ok("GET", "/api/v1/audit?limit=1000")])
    check(SECRET not in answers, "a secret in an answer")
    check(ctx.sql(f"SELECT count(*) FROM audit_log WHERE before::text LIKE '%{SECRET}%' OR "
                  f"after::text LIKE '%{SECRET}%'")[0][0] == "0", "a secret in the audit log")
    check(SECRET not in ctx.coord.stderr(), "a secret in the coordinator's log")

    # In use: 409; unused: deleted.
    ctx.ok("POST", "/api/v1/hosts", {"name": "prof-host"}, want=201)
    ctx.sql("INSERT INTO services (host_id, plugin, port, credential_profile_id) SELECT h.id, "
            "'redis', 6379, cp.id FROM hosts h, credential_profiles cp WHERE h.name = 'prof-host' "
            "AND cp.name = 'redis-main'")
    out = ctx.bad("DELETE", "/api/v1/credential-profiles/redis-main", want=409)
    check("1 service" in out["error"], out)
    ctx.ok("DELETE", "/api/v1/hosts/prof-host")
    ctx.ok("DELETE", "/api/v1/credential-profiles/redis-main")
    ctx.bad("DELETE", "/api/v1/credential-profiles/redis-main", want=404)
    ctx.bad("PATCH", "/api/v1/credential-profiles/nope", {"username": "x"}, want=404)
    for body, what in (({"name": "x", "kind": "telnet"}, "kind"),
                       ({"name": "x", "kind": "redis", "secret": {"private_key": "k"}}, "secret shape"),
                       ({"name": "x", "kind": "ssh", "options": {"sslmode": "require"}}, "option"),
                       ({"name": "x", "kind": "ssh", "options": {"interval": 0}}, "interval"),
                       ({"name": "'; DROP TABLE hosts; --", "kind": "ssh"}, "injection name"),
                       ({"name": "x", "kind": "ssh", "username": "a;b"}, "username")):
        ctx.bad("POST", "/api/v1/credential-profiles", body, what=what)
    ctx.bad("PATCH", "/api/v1/credential-profiles/linux-prod", {"kind": "redis"}, what="kind change")
    ctx.bad("PATCH", "/api/v1/credential-profiles/linux-prod", {"secret": {"token": "x"}},
            what="unknown secret field")
    check(ctx.sql("SELECT username FROM credential_profiles WHERE name = 'linux-prod'")[0][0] == "mon2",
          "a refused PATCH changed the row")


def test_history(ctx):
    ctx.sql("INSERT INTO collectors (name, last_heartbeat, load) VALUES ('hist-c', now(), "
            "'{\"lag_p50_ms\": 0.4, \"lag_p99_ms\": 7.5, \"cpu_pct\": 12.5, \"tasks\": 42}')")
    # Heartbeats by hand for a while (the leader marks a silent collector dead after 3 s).
    end = time.monotonic() + 3.5
    while time.monotonic() < end:
        ctx.sql("UPDATE collectors SET last_heartbeat = now() WHERE name = 'hist-c'")
        time.sleep(0.5)
    out = ctx.ok("GET", "/api/v1/collectors/hist-c/history?minutes=5")
    pts = out["points"]
    say(f"{len(pts)} points in 3.5 s at interval {out['interval_s']} s: {pts[:2]}")
    check(len(pts) >= 2, out)
    check(all(p["lag_p99_ms"] == 7.5 and p["cpu_pct"] == 12.5 and p["tasks"] == 42 for p in pts), pts)
    ats = [p["at"] for p in pts]
    check(ats == sorted(ats), "oldest first")
    # Rows older than a day are deleted by the next sample.
    ctx.sql("INSERT INTO collector_load_history (collector_id, at, lag_p99_ms) SELECT id, now() - "
            "interval '25 hours', 1 FROM collectors WHERE name = 'hist-c'")
    wait_until(lambda: ctx.sql("SELECT count(*) FROM collector_load_history WHERE at < now() - "
                               "interval '24 hours'")[0][0] == "0", 5, "old rows deleted")
    check(ctx.ok("GET", "/api/v1/collectors")["collectors"], "the collectors list")
    ctx.bad("GET", "/api/v1/collectors/hist-c/history?minutes=0")
    ctx.bad("GET", "/api/v1/collectors/hist-c/history?minutes=abc")
    ctx.bad("GET", "/api/v1/collectors/hist-c/history?minutes=99999")
    ctx.bad("GET", "/api/v1/collectors/nope/history", want=404)
    ctx.bad("GET", "/api/v1/collectors/hist-c/other", want=404)
    ctx.sql("DELETE FROM collectors WHERE name = 'hist-c'")


def test_probe(ctx):
    r = ctx.redis
    t0 = time.monotonic()
    out = ctx.ok("POST", "/api/v1/probe", {"uri": f"redis://:{REDIS_PW}@127.0.0.1:{r.port}"})
    say(f"probe of the real Redis ({time.monotonic() - t0:.1f} s): ok={out['ok']} "
        f"samples={out['samples']} entities={out['entities'][:3]} error={out.get('error')}")
    check(out["ok"] is True and out["samples"] > 0, out)
    # Through a profile holding the password.
    ctx.ok("POST", "/api/v1/credential-profiles", {"name": "probe-redis", "kind": "redis",
                                                   "secret": {"password": REDIS_PW}}, want=201)
    # Meanwhile the child's command line names a password file (0600, in a 0700 folder), never
    # the password.
    seen = []

    def watch():
        end = time.monotonic() + 3
        while time.monotonic() < end:
            cp = subprocess.run(["ps", "-o", "args=", "--ppid", str(ctx.coord.pid)],
                                capture_output=True, text=True)
            for line in cp.stdout.splitlines():
                if " probe " in line:
                    pwfile = (line.split("--password-file ")[1].split()[0]
                              if "--password-file " in line else "")
                    mode = None
                    if pwfile and os.path.exists(pwfile):
                        mode = (os.stat(pwfile).st_mode & 0o777,
                                os.stat(os.path.dirname(pwfile)).st_mode & 0o777)
                    seen.append((line, mode))
            time.sleep(0.05)
    watcher = threading.Thread(target=watch)
    watcher.start()
    out = ctx.ok("POST", "/api/v1/probe", {"uri": f"redis://127.0.0.1:{r.port}",
                                           "credential_profile": "probe-redis"})
    watcher.join()
    check(out["ok"] is True and out["samples"] > 0, out)
    check(seen and all(REDIS_PW not in line and "--password-file" in line for line, _ in seen),
          f"the probe's command lines: {seen[:2]}")
    modes = {m for _, m in seen if m}
    check(modes <= {(0o600, 0o700)} and modes, f"password file/folder modes: {modes}")
    say(f"probe child: {seen[0][0]} (file, folder modes {[oct(x) for x in next(iter(modes))]})")
    check(os.listdir(ctx.probe_tmp) == [], f"left behind: {os.listdir(ctx.probe_tmp)}")
    # Without the password: refused by Redis, with the reason.
    out = ctx.ok("POST", "/api/v1/probe", {"uri": f"redis://127.0.0.1:{r.port}"})
    say(f"probe without the password: {out}")
    check(out["ok"] is False and out.get("error"), out)
    closed = free_port()
    out = ctx.ok("POST", "/api/v1/probe", {"uri": f"redis://127.0.0.1:{closed}"})
    say(f"probe of a closed port: {out}")
    check(out["ok"] is False and "refused" in out.get("error", "").lower(), out)
    check(REDIS_PW not in ctx.coord.stderr(), "the Redis password in the coordinator's log")
    # A listener that never answers keeps probes busy for their 2 s: the 5th and 6th get 429.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    results = []

    def one():
        results.append(ctx.call("POST", "/api/v1/probe", {"uri": f"redis://127.0.0.1:{port}"})[:2])
    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    for t in threads:
        t.join(30)
    silent.close()
    codes = sorted(s for s, _ in results)
    say(f"6 probes at once: {codes}; {[o.get('error') for s, o in results if s == 200][:1]}")
    check(codes.count(200) == 4 and codes.count(429) == 2, codes)
    check(all(o["ok"] is False for s, o in results if s == 200), results)
    for body, what in (({"uri": "http://127.0.0.1/"}, "scheme"),
                       ({"uri": "redis://" + "a" * 1100}, "length"),
                       ({"uri": "-oProxyCommand=touch /tmp/x"}, "option injection"),
                       ({"uri": "redis://h 1"}, "space"),
                       ({"uri": f"redis://127.0.0.1:{r.port}", "credential_profile": "nope"},
                        "unknown profile"),
                       ({"uri": f"ssh://127.0.0.1:{r.port}", "credential_profile": "probe-redis"},
                        "profile of another kind"),
                       ({}, "no uri")):
        ctx.bad("POST", "/api/v1/probe", body, what=what)


def test_probe_ssh(ctx):
    sshd = SshServer()
    sshd.start()
    try:
        with open(sshd.key_ed25519) as f:
            key = f.read()
        ctx.ok("POST", "/api/v1/credential-profiles",
               {"name": "probe-ssh", "kind": "ssh", "username": sshd.user,
                "secret": {"private_key": key}, "options": {"known_hosts": sshd.known_hosts}},
               want=201)
        t0 = time.monotonic()
        out = ctx.ok("POST", "/api/v1/probe", {"uri": f"ssh://127.0.0.1:{sshd.port}",
                                               "credential_profile": "probe-ssh"})
        kinds = sorted({e["kind"] for e in out["entities"]})
        say(f"ssh probe with the profile's key ({time.monotonic() - t0:.1f} s): ok={out['ok']} "
            f"samples={out['samples']} entity kinds={kinds} error={out.get('error')}")
        check(out["ok"] is True and out["samples"] > 0 and "cpu" in kinds, out)
        # A key with a passphrase: the passphrase reaches the probe through a 0600 file too.
        locked = os.path.join(ctx.tmp, "locked_key")
        shutil.copy2(sshd.key_ed25519, locked)
        os.chmod(locked, 0o600)
        subprocess.run(["ssh-keygen", "-q", "-p", "-P", "", "-N", "pass phrase", "-f", locked],
                       check=True, capture_output=True)
        with open(locked) as f:
            locked_key = f.read()
        for passphrase, want_ok in (("pass phrase", True), ("wrong", False)):
            ctx.ok("PATCH", "/api/v1/credential-profiles/probe-ssh",
                   {"secret": {"private_key": locked_key, "passphrase": passphrase}})
            out = ctx.ok("POST", "/api/v1/probe", {"uri": f"ssh://127.0.0.1:{sshd.port}",
                                                   "credential_profile": "probe-ssh"})
            say(f"ssh probe, key with passphrase {passphrase!r}: ok={out['ok']} "
                f"error={out.get('error')}")
            check(out["ok"] is want_ok and (want_ok or "passphrase" in out.get("error", "")), out)
            check("pass phrase" not in json.dumps(out), out)
        # A known_hosts file without the server's key: refused, with the reason.
        empty = os.path.join(ctx.tmp, "empty_known_hosts")
        open(empty, "w").close()
        ctx.ok("PATCH", "/api/v1/credential-profiles/probe-ssh", {"options": {"known_hosts": empty}})
        out = ctx.ok("POST", "/api/v1/probe", {"uri": f"ssh://127.0.0.1:{sshd.port}",
                                               "credential_profile": "probe-ssh"})
        say(f"ssh probe, host key unknown: {out.get('error')}")
        check(out["ok"] is False and "host key" in out.get("error", "").lower(), out)
        check(os.listdir(ctx.probe_tmp) == [], f"left behind: {os.listdir(ctx.probe_tmp)}")
    finally:
        sshd.close()


def test_settings(ctx):
    out = ctx.ok("GET", "/api/v1/settings/zabbix")
    check(out["url"] == ctx.zabbix_url and out["user"] == "Admin"
          and out["frontend_url"] == "http://zabbix.example/zabbix"
          and out["host_group"] == "trapline hosts", out)
    check(ZABBIX_PW not in json.dumps(out) and "password" not in out, out)
    bad = os.path.join(ctx.tmp, "bad.toml")
    with open(ctx.config) as f:
        text = f.read()
    with open(bad, "w") as f:
        f.write(text.replace('frontend_url = "http://zabbix.example/zabbix"',
                             'frontend_url = "javascript:alert(1)"'))
    cp = subprocess.run([trapline_bin(), "coordinator", "--config", bad, "--check-config"],
                        capture_output=True, text=True, timeout=30)
    check(cp.returncode != 0 and "frontend_url" in cp.stderr, cp.stderr)


def test_list_speed(ctx):
    t0 = time.monotonic()
    ctx.sql("INSERT INTO hosts (name, address, enabled, groups) SELECT 'gen-' || lpad(g::text, 5, "
            "'0'), '10.200.' || (g / 256) || '.' || (g % 256), g % 10 <> 0, ARRAY['Gen/' || (g % 7)] "
            "FROM generate_series(1, 5000) g")
    ctx.sql("INSERT INTO services (host_id, plugin, port, enabled, state) SELECT h.id, p.plugin, "
            "p.port, true, CASE WHEN h.id % 13 = 0 THEN 'error' ELSE 'ok' END FROM hosts h, (VALUES "
            "('linux', 22), ('postgresql', 5432), ('redis', 6379)) AS p(plugin, port) WHERE h.name "
            "LIKE 'gen-%'")
    ctx.sql("ANALYZE")
    say(f"5,000 hosts x 3 services made in {time.monotonic() - t0:.1f} s")
    figures = {}
    for path in ("/api/v1/hosts?limit=100", "/api/v1/hosts?limit=1000",
                 "/api/v1/hosts?status=error&limit=100", "/api/v1/hosts?q=gen-04&plugin=redis",
                 "/api/v1/hosts?group=Gen/3&offset=400&limit=100"):
        times = []
        for _ in range(7):
            t = time.monotonic()
            out = ctx.ok("GET", path)
            times.append((time.monotonic() - t) * 1000)
        figures[path] = statistics.median(times)
        say(f"GET {path}: median {figures[path]:.1f} ms over 7 (total {out['total']})")
    check(ctx.ok("GET", "/api/v1/hosts?q=gen-&limit=1")["total"] == 5000, "total")
    print(f"    list latency at 5,000 hosts: median {figures['/api/v1/hosts?limit=100']:.1f} ms "
          "(100 per page)", flush=True)
    ctx.sql("DELETE FROM hosts WHERE name LIKE 'gen-%'")


if __name__ == "__main__":
    sys.exit(run_checks([test_events, test_hosts_filters, test_complete, test_bulk, test_audit,
                         test_profiles, test_history, test_probe, test_probe_ssh, test_settings,
                         test_list_speed],
                        setup=setup, teardown=teardown, limit_s=120))
