"""The discovery endpoint (POST /api/v1/discovery) and hosts by hand, against a real
PostgreSQL registry and a real `trapline coordinator` ([discovery] gone_after_reports = 2).

  test_enrolment            no token 401; the enrolment secret gives a per-host token (201),
                            stored only as its SHA-256; host facts, address, services (ssh ->
                            linux, generic:nginx), audit rows (actor discovery, cause); a
                            second report with the token 200; enrolling again 409; another
                            host's token 403; a wrong token 401; the API token is not a host token
  test_hostile              malformed JSON, 100 MB bodies (Content-Length and chunked: 413 at
                            once, the server serving), names with shell/SQL metacharacters,
                            ports 0/65536/-1/"x", 300 and 10,000 services, deep nesting, unknown
                            fields: each a 4xx with a reason, no row written, status 200 after
  test_gone                 the host enabled (one click): tasks for linux, postgresql, redis,
                            none for generic:nginx; redis missing from 2 reports: gone, its task
                            removed, audit service.gone; back in a report: un-gone, task again
  test_auto_enrolment       host enabled: a newly reported service is enabled with the profile
                            of its host group, else its kind's default, and gets a task; a host
                            enabled alone (no "services": "all") gets its services enabled at
                            its next report; an operator's disable sticks
  test_profile_choice       a report sets a service's credential profile only when it inserts
                            the row or auto-enrolment enables it (audited, before and after); an
                            operator's choice, "no profile" included, survives later reports
  test_by_hand              POST /hosts/{name}/services (201, 409, unknown plugin, unknown
                            profile, wrong scheme, a password in the URI's userinfo or query:
                            400, nothing stored or audited), POST /hosts/{name}/clone (groups,
                            enabled, services, audit; a changed profile bumps the task's
                            generation and NOTIFYs trapline_assign with its collector's name),
                            a 100 KB body on another route: 413
  test_token_reset          DELETE /api/v1/discovery/tokens/{host}: the old token 401, the host
                            enrols again
  test_rate_limit           a second coordinator (a standby: it serves the API too) with
                            rate_per_minute = 1, burst = 2: the third report 429 + Retry-After
  test_config               [discovery]: a short or unreadable secret, gone_after_reports = 0, a
                            misspelt key: --check-config names the problem
"""

import http.client
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    LongLivedProc, api_call, check, make_tmp, run_checks, say, trapline, trapline_bin, wait_until)
from harness import PostgresServer, free_port  # noqa: E402
import test_coordinator_api as api_test  # noqa: E402

TOKEN = "api-token-5f0c2b7e9d1a4c38"
ENROL = "enrolment-secret-7c1e93d0b2"


def report(name="db01", services=None, **host):
    h = {"name": name, "fqdn": f"{name}.example.com", "os": "Debian GNU/Linux 12 (bookworm)",
         "kernel": "6.1.0-26-amd64", "addresses": ["127.0.0.1", "fe80::1", "10.0.0.5"],
         "cpus": 8, "memory_bytes": 33554432000}
    h.update(host)
    if services is None:
        services = [{"kind": "ssh", "port": 22},
                    {"kind": "postgresql", "port": 5432, "version": "15.8",
                     "data_directory": "/var/lib/postgresql/15/main"},
                    {"kind": "redis", "port": 6379, "version": "7.0.15"},
                    {"kind": "generic", "name": "nginx", "port": 80}]
    return {"version": 1, "script": "trapline-discover 1.0", "host": h, "services": services}


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("discovery-api")
        self.pg = PostgresServer(password="registry-pw-62")
        self.pg.start()
        self.pg.create_db("registry")
        self.port = free_port()
        token_file = os.path.join(self.tmp, "api.token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.secret_file = os.path.join(self.tmp, "enrol.secret")
        with open(self.secret_file, "w") as f:
            f.write(ENROL + "\n")
        os.chmod(token_file, 0o600)
        os.chmod(self.secret_file, 0o600)
        self.token_file = token_file
        self.config = self.write_config("co1", self.port, 6000, 1000)
        self.coord = LongLivedProc([trapline_bin(), "coordinator", "--config", self.config],
                                 self.tmp, "co1")
        wait_until(lambda: "leader: acquired" in self.coord.stderr() or not self.coord.alive(),
                   20, "the coordinator to lead")
        check(self.coord.alive(), lambda: self.coord.output())
        self.host_token = None

    def write_config(self, name, port, rate, burst):
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[coordinator]\nname = "{name}"\nregistry = "{self.pg.url(db="registry")}"\n'
                    'log_level = "debug"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{port}"\napi_token_file = "{self.token_file}"\n\n'
                    f'[discovery]\nenrolment_secret_file = "{self.secret_file}"\n'
                    f'gone_after_reports = 2\nrate_per_minute = {rate}\nburst = {burst}\n')
        return path

    def sql(self, q: str):
        return self.pg.psql(q, db="registry")

    def call(self, method, path, body=None, token=TOKEN, raw=None, port=None):
        """(status, parsed JSON or text, headers)."""
        return api_call(f"http://127.0.0.1:{port or self.port}", method, path, body, token, raw)

    def post(self, body=None, token=None, raw=None, port=None):
        return self.call("POST", "/api/v1/discovery", body, token=token, raw=raw, port=port)

    def ok(self, method, path, body=None, want=200):
        status, out, _ = self.call(method, path, body)
        check(status == want, lambda: f"{method} {path}: {status} {out} (want {want})")
        return out

    def refused(self, want, what, body=None, token=None, raw=None, reason=""):
        status, out, hdrs = self.post(body, token=token, raw=raw)
        check(status == want, lambda: f"{what}: {status} {out} (want {want})")
        check(isinstance(out, dict) and out.get("error"), f"{what}: no JSON error: {out!r}")
        check(reason in out["error"], f"{what}: the reason {out['error']!r} lacks {reason!r}")
        say(f"{what} -> {status} {out['error']}")
        return out

    def counts(self):
        return self.sql("SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM services), "
                        "(SELECT count(*) FROM host_tokens), (SELECT count(*) FROM audit_log)")[0]

    def tasks(self, host="db01"):
        return sorted(r[0] for r in self.sql(
            "SELECT t.plugin FROM tasks t JOIN services s ON s.id = t.service_id JOIN hosts h ON "
            f"h.id = s.host_id WHERE h.name = '{host}'"))

    close = api_test.Ctx.close  # end the coordinator (SIGTERM, kill -9 after 15 s), stop PostgreSQL


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def test_enrolment(ctx):
    ctx.refused(401, "no token", report())
    before = ctx.counts()
    status, out, _ = ctx.post(report(), token=ENROL)
    check(status == 201 and out["enrolled"] is True and out["host"] == "db01", f"{status} {out}")
    tok = out["token"]
    check(len(tok) == 64 and all(c in "0123456789abcdef" for c in tok), f"token {tok!r}")
    ctx.host_token = tok
    stored = ctx.sql("SELECT t.token_hash FROM host_tokens t JOIN hosts h ON h.id = t.host_id "
                     "WHERE h.name = 'db01'")
    import hashlib
    check(stored == [(hashlib.sha256(tok.encode()).hexdigest(),)], f"stored {stored}")
    check(tok not in json.dumps(ctx.sql("SELECT * FROM host_tokens")), "the token is stored")
    host = ctx.sql("SELECT address, discovered, enabled, facts->>'os', facts->>'cpus', "
                   "facts->'addresses'->>2 FROM hosts WHERE name = 'db01'")
    check(host == [("10.0.0.5", "t", "f", "Debian GNU/Linux 12 (bookworm)", "8", "10.0.0.5")],
          f"host row {host}")
    svc = ctx.sql("SELECT plugin, port, enabled, gone, discovered, details->>'version' FROM services "
                  "ORDER BY plugin, port")
    check(svc == [("generic:nginx", "80", "f", "f", "t", None), ("linux", "22", "f", "f", "t", None),
                  ("postgresql", "5432", "f", "f", "t", "15.8"),
                  ("redis", "6379", "f", "f", "t", "7.0.15")], f"services {svc}")
    audit = ctx.sql("SELECT action, count(*) FROM audit_log WHERE actor = 'discovery' AND "
                    "after->>'cause' = 'discovery report' GROUP BY action ORDER BY action")
    check(audit == [("host.discovered", "1"), ("service.discovered", "4")], f"audit {audit}")
    check(int(ctx.counts()[3]) == int(before[3]) + 5, "audit rows")

    # Updates with the host's own token: facts change, nothing new, no new audit rows.
    n_audit = ctx.counts()[3]
    status, out, _ = ctx.post(report(kernel="6.1.0-27-amd64"), token=tok)
    check(status == 200 and out["enrolled"] is False and out["services"] == 4 and "token" not in out,
          f"{status} {out}")
    check(ctx.sql("SELECT facts->>'kernel' FROM hosts WHERE name = 'db01'") == [("6.1.0-27-amd64",)],
          "facts not updated")
    check(ctx.counts()[3] == n_audit, "an unchanged report wrote audit rows")
    # The host list (the panel's Discovery page) says so: discovered, when, and its facts.
    listed = ctx.ok("GET", "/api/v1/hosts?enabled=false&q=db01")["hosts"]
    check(len(listed) == 1 and listed[0]["discovered"] is True and listed[0]["last_report"] and
          listed[0]["facts"]["kernel"] == "6.1.0-27-amd64", f"the host list: {listed}")
    # The operator's address is kept.
    ctx.ok("PATCH", "/api/v1/hosts/db01", {"address": "db01.internal"})
    ctx.post(report(), token=tok)
    check(ctx.sql("SELECT address FROM hosts WHERE name = 'db01'") == [("db01.internal",)],
          "the report overwrote the operator's address")

    before = ctx.counts()
    ctx.refused(409, "enrolling an enrolled host", report(), token=ENROL, reason="enrolled already")
    status, out, _ = ctx.post(report("web01"), token=ENROL)
    check(status == 201, f"second host: {status} {out}")
    web_token = out["token"]
    ctx.refused(403, "db01's report with web01's token", report(), token=web_token,
                reason="another host")
    ctx.refused(403, "web01 reporting as db01", report("db01", services=[]), token=web_token)
    ctx.refused(401, "a wrong token", report(), token="f" * 64, reason="invalid token")
    ctx.refused(401, "the API token", report(), token=TOKEN)
    ctx.refused(401, "Basic auth", report(), token=None)
    check(ctx.counts()[1:3] == (str(int(before[1]) + 4), str(int(before[2]) + 1)),
          f"counts {before} -> {ctx.counts()}")
    check(ENROL not in ctx.coord.stderr() and tok not in ctx.coord.stderr(), "a secret in the log")


def test_hostile(ctx):
    tok = ctx.host_token
    before = ctx.counts()
    facts = ctx.sql("SELECT facts::text FROM hosts WHERE name = 'db01'")
    ctx.refused(400, "malformed JSON", raw='{"version": 1, "host": {', token=tok,
                reason="not valid JSON")
    ctx.refused(400, "not an object", raw="[]", token=tok)
    ctx.refused(400, "empty body", raw="", token=tok)
    for name in ("'; DROP TABLE hosts; --", "$(reboot)", "db01`id`", "db01;rm -rf /", "a\nb"):
        ctx.refused(400, f"host name {name!r}", report(name), token=ENROL, reason="host.name")
    ctx.refused(400, "generic name with metacharacters",
                report(services=[{"kind": "generic", "name": "x;rm", "port": 80}]), token=tok,
                reason="services[0].name")
    for port in (0, 65536, -1, "x", 22.5, None):
        ctx.refused(400, f"port {port!r}", report(services=[{"kind": "ssh", "port": port}]),
                    token=tok, reason="services[0].port must be an integer from 1 to 65535")
    ctx.refused(400, "unknown kind", report(services=[{"kind": "telnet", "port": 23}]), token=tok,
                reason="services[0].kind")
    ctx.refused(400, "unknown field", dict(report(), extra=1), token=tok, reason="unknown field")
    ctx.refused(400, "version 2", dict(report(), version=2), token=tok, reason="version")
    ctx.refused(400, "300 services",
                report(services=[{"kind": "ssh", "port": p} for p in range(1, 301)]), token=tok,
                reason="at most 256")
    big = json.dumps(report(services=[{"kind": "ssh", "port": p} for p in range(1, 10001)]),
                     separators=(",", ":"))
    status, out, _ = ctx.post(raw=big, token=tok)
    check(status in (400, 413) and "error" in out, f"10,000 services: {status} {out}")
    say(f"10,000 services ({len(big)} bytes) -> {status} {out['error']}")
    ctx.refused(400, "deep nesting", raw='{"version": 1, "host": ' + "[" * 50000 + "]" * 50000 + "}",
                token=tok, reason="nested")
    ctx.refused(400, "nesting in a service", report(services=[{"kind": "ssh", "port": [[[22]]]}]),
                token=tok)
    ctx.refused(400, "address with a prefix", report(addresses=["10.0.0.5/24"]), token=tok,
                reason="host.addresses[0]")

    # 100 MB by Content-Length: refused before the body is read.
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", ctx.port), timeout=10)
    s.sendall(b"POST /api/v1/discovery HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + tok.encode() + b"\r\nContent-Length: 100000000\r\n\r\n")
    sent = 0
    try:
        s.settimeout(0.2)
        while sent < 100_000_000:
            try:
                data = s.recv(4096)
                if data:
                    break
            except socket.timeout:
                pass
            s.settimeout(None)
            s.sendall(b"x" * 65536)
            sent += 65536
            s.settimeout(0.05 if sent > 1 << 20 else 0.2)
        else:
            data = b""
    except (BrokenPipeError, ConnectionResetError):
        data = b""
    if not data:
        s.settimeout(5)
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
    took = time.monotonic() - t0
    s.close()
    head = data.decode(errors="replace").split("\r\n")[0]
    say(f"100 MB Content-Length: {head!r} after {took:.2f}s and {sent} bytes sent")
    check(head.startswith("HTTP/1.1 413"), f"100 MB: {data[:300]!r}")
    check(took < 3 and sent < 10_000_000, f"100 MB: {took:.1f}s, {sent} bytes sent")

    # 100 MB chunked: refused while it arrives.
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=10)

    def chunks():
        for _ in range(100 * 16):
            yield b"x" * 65536
    sent_ok = True
    try:
        conn.request("POST", "/api/v1/discovery", body=chunks(), encode_chunked=True,
                     headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json",
                              "Transfer-Encoding": "chunked"})
    except (BrokenPipeError, ConnectionResetError):
        sent_ok = False
    try:
        res = conn.getresponse()
        status = res.status
    except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
        status = None
    took = time.monotonic() - t0
    conn.close()
    say(f"100 MB chunked: {status} after {took:.2f}s (whole body sent: {sent_ok})")
    check(status == 413 or (status is None and not sent_ok), f"chunked 100 MB: {status}")
    check(took < 10, f"chunked 100 MB took {took:.1f}s")

    check(ctx.counts() == before, f"rows changed: {before} -> {ctx.counts()}")
    check(ctx.sql("SELECT facts::text FROM hosts WHERE name = 'db01'") == facts, "facts changed")
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name LIKE '%DROP%' OR name LIKE '%reboot%'")
          == [("0",)], "a hostile host stored")
    st = ctx.ok("GET", "/api/v1/status")
    check(st["role"] == "leader" and ctx.coord.alive(), "the coordinator stopped serving")
    status, out, _ = ctx.post(report(), token=tok)
    check(status == 200, f"a good report after the hostile ones: {status} {out}")


def test_gone(ctx):
    tok = ctx.host_token
    out = ctx.ok("PATCH", "/api/v1/hosts/db01", {"enabled": True, "services": "all"})
    # linux, postgresql, redis; not generic:nginx (no plugin: never enabled, never a task).
    check(out["services_changed"] == 3, out)
    gen = ctx.sql("SELECT s.enabled FROM services s JOIN hosts h ON h.id = s.host_id "
                  "WHERE h.name = 'db01' AND s.plugin = 'generic:nginx'")
    check(gen == [("f",)], f"generic:nginx enabled by the click: {gen}")
    wait_until(lambda: ctx.tasks() == ["linux", "postgresql", "redis"], 5,
               "tasks for linux, postgresql, redis (none for generic:nginx)")
    say(f"tasks: {ctx.tasks()}")
    without = [s for s in report()["services"] if s["kind"] != "redis"]
    status, out, _ = ctx.post(report(services=without), token=tok)
    check(status == 200 and out["gone"] == 0, f"first miss: {status} {out}")
    check(ctx.sql("SELECT missed_reports, gone FROM services WHERE plugin = 'redis' "
                  "AND port = 6379 AND host_id = (SELECT id FROM hosts WHERE name = 'db01')") == [("1", "f")],
          "after one miss")
    status, out, _ = ctx.post(report(services=without), token=tok)
    check(status == 200 and out["gone"] == 1, f"second miss: {status} {out}")
    check(ctx.sql("SELECT missed_reports, gone FROM services WHERE plugin = 'redis' "
                  "AND port = 6379 AND host_id = (SELECT id FROM hosts WHERE name = 'db01')") == [("2", "t")],
          "after two misses")
    t0 = time.monotonic()
    wait_until(lambda: ctx.tasks() == ["linux", "postgresql"], 5, "the gone service's task removed")
    say(f"redis gone after 2 reports; its task removed {time.monotonic() - t0:.2f}s later")
    check(ctx.sql("SELECT count(*) FROM services WHERE plugin = 'redis' "
                  "AND port = 6379 AND host_id = (SELECT id FROM hosts WHERE name = 'db01')") == [("1",)],
          "the gone service was deleted")
    audit = ctx.sql("SELECT after->>'cause', after->>'plugin' FROM audit_log WHERE action = "
                    "'service.gone' AND actor = 'discovery'")
    check(audit == [("discovery report", "redis")], f"audit {audit}")
    # Back: un-gone, enabled as before, a task again.
    status, out, _ = ctx.post(report(), token=tok)
    check(status == 200, f"{status} {out}")
    check(ctx.sql("SELECT missed_reports, gone, enabled FROM services WHERE plugin = 'redis' "
                  "AND port = 6379 AND host_id = (SELECT id FROM hosts WHERE name = 'db01')")
          == [("0", "f", "t")], "back")
    wait_until(lambda: ctx.tasks() == ["linux", "postgresql", "redis"], 5, "the task back")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'service.back'") == [("1",)],
          "service.back audit row")


def test_auto_enrolment(ctx):
    tok = ctx.host_token
    ctx.sql("INSERT INTO credential_profiles (name, kind, username, is_default) VALUES "
            "('pg-default', 'postgresql', 'monitor', true), ('redis-default', 'redis', '', true)")
    ctx.sql("INSERT INTO credential_profiles (name, kind, username, host_groups) VALUES "
            "('redis-db', 'redis', 'mon', '{Databases}')")
    ctx.ok("PATCH", "/api/v1/hosts/db01", {"groups": ["Databases"]})
    services = report()["services"] + [
        {"kind": "postgresql", "port": 5433, "version": "16.4"},
        {"kind": "redis", "port": 6380},
        {"kind": "generic", "name": "memcached", "port": 11211}]
    status, out, _ = ctx.post(report(services=services), token=tok)
    check(status == 200 and out["new"] == 3, f"{status} {out}")
    rows = ctx.sql("SELECT s.plugin, s.port, s.enabled, cp.name FROM services s LEFT JOIN "
                   "credential_profiles cp ON cp.id = s.credential_profile_id WHERE s.port IN "
                   "(5433, 6380, 11211) ORDER BY s.port")
    check(rows == [("postgresql", "5433", "t", "pg-default"), ("redis", "6380", "t", "redis-db"),
                   ("generic:memcached", "11211", "f", None)], f"auto-enrolled {rows}")
    t0 = time.monotonic()
    wait_until(lambda: ctx.tasks() == ["linux", "postgresql", "postgresql", "redis", "redis"], 5,
               "tasks for the new services")
    say(f"new services' tasks {time.monotonic() - t0:.2f}s after the report")
    audit = ctx.sql("SELECT count(*) FROM audit_log WHERE actor = 'discovery' AND action = "
                    "'service.discovered' AND after->>'enabled' = 'true' AND after->>'cause' = "
                    "'discovery report'")
    check(audit == [("2",)], f"audit {audit}")
    # A host enabled without "services": "all": its reported services are enabled at its next
    # report (audit service.enable, cause discovery report).
    status, out, _ = ctx.post(report("app01", services=[{"kind": "ssh", "port": 2222}]), token=ENROL)
    check(status == 201, f"app01: {status} {out}")
    app_token = out["token"]
    check(ctx.sql("SELECT enabled FROM services WHERE port = 2222") == [("f",)], "enabled early")
    ctx.ok("PATCH", "/api/v1/hosts/app01", {"enabled": True})
    ctx.post(report("app01", services=[{"kind": "ssh", "port": 2222}]), token=app_token)
    check(ctx.sql("SELECT s.enabled, s.credential_profile_id IS NULL FROM services s "
                  "WHERE port = 2222") == [("t", "t")], "app01's ssh not enabled by its report")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'service.enable' AND actor = "
                  "'discovery' AND after->>'plugin' = 'linux'") == [("1",)], "service.enable audit")
    wait_until(lambda: ctx.tasks("app01") == ["linux"], 5, "app01's task")
    # An operator's disable sticks across reports.
    sid = ctx.sql("SELECT id FROM services WHERE port = 6380")[0][0]
    ctx.ok("PATCH", f"/api/v1/services/{sid}", {"enabled": False})
    ctx.post(report(services=services), token=tok)
    check(ctx.sql(f"SELECT enabled FROM services WHERE id = {sid}") == [("f",)],
          "a report re-enabled a service the operator disabled")


def test_profile_choice(ctx):
    # app02 enrols while disabled: its ssh service is stored without a profile (none exists).
    ssh = [{"kind": "ssh", "port": 2223}]
    status, out, _ = ctx.post(report("app02", services=ssh), token=ENROL)
    check(status == 201, f"app02: {status} {out}")
    tok = out["token"]
    svc = "SELECT s.enabled, cp.name FROM services s LEFT JOIN credential_profiles cp ON " \
          "cp.id = s.credential_profile_id WHERE s.port = 2223"
    check(ctx.sql(svc) == [("f", None)], f"app02's ssh at enrolment: {ctx.sql(svc)}")
    ctx.sql("INSERT INTO credential_profiles (name, kind, username, is_default) VALUES "
            "('ssh-default', 'ssh', 'monitor', true), ('ssh-other', 'ssh', 'other', false)")
    # Enabled by auto-enrolment at its next report: the profile of the rule, audited.
    ctx.ok("PATCH", "/api/v1/hosts/app02", {"enabled": True})
    ctx.post(report("app02", services=ssh), token=tok)
    check(ctx.sql(svc) == [("t", "ssh-default")], f"auto-enrolled: {ctx.sql(svc)}")
    audit = ctx.sql("SELECT action, before->>'credential_profile', after->>'credential_profile' "
                    "FROM audit_log WHERE actor = 'discovery' AND object_type = 'service' AND "
                    "object_id = (SELECT id::text FROM services WHERE port = 2223) ORDER BY id")
    check(audit[-1] == ("service.enable", None, "ssh-default"), f"audit {audit}")
    sid = ctx.sql("SELECT id FROM services WHERE port = 2223")[0][0]
    n_audit = ctx.sql("SELECT count(*) FROM audit_log")
    # The operator's "no profile" and then another profile: each survives a report.
    for choice, want in ((None, None), ("ssh-other", "ssh-other")):
        ctx.ok("PATCH", f"/api/v1/services/{sid}", {"credential_profile": choice})
        n_audit = ctx.sql("SELECT count(*) FROM audit_log")
        status, out, _ = ctx.post(report("app02", services=ssh), token=tok)
        check(status == 200, f"{status} {out}")
        check(ctx.sql(svc) == [("t", want)],
              f"a report overrode the operator's profile {choice!r}: {ctx.sql(svc)}")
        check(ctx.sql("SELECT count(*) FROM audit_log") == n_audit,
              "a report without a change wrote audit rows")
        say(f"operator's profile {choice!r} kept across a report")


def test_by_hand(ctx):
    out = ctx.ok("POST", "/api/v1/hosts/db01/services",
                 {"plugin": "redis", "port": 6390, "credential_profile": "redis-default",
                  "enabled": True}, want=201)
    check(out["plugin"] == "redis" and out["port"] == 6390 and out["credential_profile"] ==
          "redis-default", out)
    for body, want in (({"plugin": "redis", "port": 6390}, 409), ({"plugin": "mysql"}, 400),
                       ({"plugin": "trapline"}, 400),
                       ({"plugin": "redis", "credential_profile": "nope"}, 400),
                       ({"plugin": "redis", "uri": "ssh://db01"}, 400),
                       ({"plugin": "redis", "port": 70000}, 400),
                       ({"plugin": "postgresql", "uri": "postgresql://u:pa/ss@db01/postgres"}, 400),
                       ({"plugin": "postgresql",
                         "uri": "postgresql://db01/postgres?sslmode=require&password=s3cr3t"}, 400),
                       ({"plugin": "redis", "uri": "redis://:s3cr3t@db01:6379/0"}, 400)):
        status, o, _ = ctx.call("POST", "/api/v1/hosts/db01/services", body)
        check(status == want and "error" in o, f"{body}: {status} {o}")
        say(f"add service {body} -> {status} {o['error']}")
        if "s3cr3t" in body.get("uri", "") or "pa/ss" in body.get("uri", ""):
            check("credential profile" in o["error"], f"{body}: reason {o['error']!r}")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE after::text LIKE '%s3cr3t%' OR "
                  "after::text LIKE '%pa/ss%'") == [("0",)], "a password reached the audit log")
    check(ctx.sql("SELECT count(*) FROM services WHERE uri LIKE '%s3cr3t%' OR uri LIKE '%pa/ss%'")
          == [("0",)], "a URI with a password was stored")
    status, o, _ = ctx.call("POST", "/api/v1/hosts/nohost/services", {"plugin": "redis"})
    check(status == 404, f"unknown host: {status} {o}")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'service.create' AND actor = 'api'")
          == [("1",)], "service.create audit")
    # Hosts by hand (POST /hosts exists) then clone db01 onto web-2 (existing) and web-3 (new).
    ctx.ok("POST", "/api/v1/hosts", {"name": "web-2", "address": "10.0.0.12"}, want=201)
    out = ctx.ok("POST", "/api/v1/hosts/db01/clone", {"to": ["web-2", "web-3"]})
    check([h["name"] for h in out["hosts"]] == ["web-2", "web-3"], out)
    hosts = ctx.sql("SELECT name, address, enabled, groups FROM hosts WHERE name IN "
                    "('web-2', 'web-3') ORDER BY name")
    check(hosts == [("web-2", "10.0.0.12", "t", "{Databases}"), ("web-3", "web-3", "t", "{Databases}")],
          f"clones {hosts}")
    src = ctx.sql("SELECT plugin, port, enabled, credential_profile_id FROM services s WHERE "
                  "host_id = (SELECT id FROM hosts WHERE name = 'db01') AND NOT gone AND plugin "
                  "NOT LIKE 'generic:%' ORDER BY plugin, port")
    for name in ("web-2", "web-3"):
        got = ctx.sql("SELECT plugin, port, enabled, credential_profile_id FROM services s WHERE "
                      f"host_id = (SELECT id FROM hosts WHERE name = '{name}') ORDER BY plugin, port")
        check(got == src, f"{name}: {got} != {src}")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'host.clone' AND "
                  "after->>'from' = 'db01'") == [("2",)], "host.clone audit rows")
    check_clone_notifies(ctx)
    for body in ({"to": ["db01"]}, {"to": []}, {"to": ["a;b"]}):
        status, o, _ = ctx.call("POST", "/api/v1/hosts/db01/clone", body)
        check(status == 400, f"clone {body}: {status} {o}")
    status, o, _ = ctx.call("POST", "/api/v1/hosts/nohost/clone", {"to": ["x1"]})
    check(status == 404, f"clone of an unknown host: {status} {o}")
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name = 'x1'") == [("0",)], "x1 created")
    status, o, _ = ctx.call("POST", "/api/v1/hosts",
                            raw=json.dumps({"name": "big", "groups": ["g" * 100] * 1000}))
    check(status == 413, f"100 KB on /api/v1/hosts: {status} {o}")
    status, o, _ = ctx.call("POST", "/api/v1/hosts/db01/clone", {"to": ["web-4"]}, token=None)
    check(status == 401, f"clone without a token: {status}")


def check_clone_notifies(ctx):
    """A profile changed on the source: cloning again restarts the copy's task (generation + 1)
    and tells its collector (NOTIFY trapline_assign, payload: the collector's name)."""
    from test_coordinator import Notifications
    # A collector that stays alive for the test (its heartbeat an hour ahead): the leader gives
    # it the unassigned tasks.
    ctx.sql("INSERT INTO collectors (name, state, last_heartbeat) VALUES "
            "('fake-co', 'active', now() + interval '1 hour')")
    task = ("SELECT t.generation, c.name FROM tasks t JOIN services s ON s.id = t.service_id "
            "JOIN hosts h ON h.id = s.host_id LEFT JOIN collectors c ON c.id = t.collector_id "
            "WHERE h.name = 'web-2' AND s.plugin = 'redis' AND s.port = 6390")
    wait_until(lambda: [r[1] for r in ctx.sql(task)] == ["fake-co"], 10,
               "web-2's redis task assigned to fake-co")
    sid = ctx.sql("SELECT s.id FROM services s JOIN hosts h ON h.id = s.host_id WHERE "
                  "h.name = 'db01' AND s.plugin = 'redis' AND s.port = 6390")[0][0]
    ctx.ok("PATCH", f"/api/v1/services/{sid}", {"credential_profile": "redis-db"})
    notes = Notifications(ctx.pg, ctx.tmp)
    try:
        time.sleep(1.5)  # whatever the PATCH and the leader sent has arrived
        gen0 = int(ctx.sql(task)[0][0])
        before = notes.payloads().count("fake-co")
        ctx.ok("POST", "/api/v1/hosts/db01/clone", {"to": ["web-2"]})
        check(ctx.sql(task)[0][0] == str(gen0 + 1),
              f"web-2's task generation {ctx.sql(task)} after the clone, want {gen0 + 1}")
        wait_until(lambda: notes.payloads().count("fake-co") > before, 5,
                   "NOTIFY trapline_assign 'fake-co' from the clone")
        say(f"clone: generation {gen0} -> {gen0 + 1}, fake-co notified")
    finally:
        notes.close()
    ctx.sql("DELETE FROM collectors WHERE name = 'fake-co'")


def test_token_reset(ctx):
    old = ctx.host_token
    status, o, _ = ctx.call("DELETE", "/api/v1/discovery/tokens/db01", token=None)
    check(status == 401, f"without the API token: {status}")
    ctx.ok("DELETE", "/api/v1/discovery/tokens/db01")
    status, o, _ = ctx.call("DELETE", "/api/v1/discovery/tokens/db01")
    check(status == 404, f"twice: {status} {o}")
    ctx.refused(401, "the old token", report(), token=old)
    status, out, _ = ctx.post(report(), token=ENROL)
    check(status == 201 and out["token"] != old, f"enrol again: {status} {out}")
    ctx.host_token = out["token"]
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'host.token_reset'") == [("1",)],
          "host.token_reset audit")


def test_rate_limit(ctx):
    port = free_port()
    config = ctx.write_config("co2", port, 1, 2)
    co2 = LongLivedProc([trapline_bin(), "coordinator", "--config", config], ctx.tmp, "co2")
    try:
        wait_until(lambda: f"127.0.0.1:{port}" in co2.stderr() or "standby" in co2.stderr()
                   or not co2.alive(), 20, "co2 to start")
        # A query, not just /status: the API answers before its registry connection is up
        # (a report then gets 503, seen once in a run).
        wait_until(lambda: _status(port, "/api/v1/hosts?limit=1") == 200, 10, "co2's API and registry")
        codes = []
        for _ in range(3):
            status, out, hdrs = ctx.post(report(), token=ctx.host_token, port=port)
            codes.append(status)
        check(codes[:2] == [200, 200] and codes[2] == 429, f"codes {codes}")
        check(int(hdrs.get("retry-after", "0")) >= 1, f"Retry-After {hdrs.get('retry-after')}")
        say(f"rate limit: {codes}, Retry-After {hdrs.get('retry-after')}: {out['error']}")
        # The same peer with another token is limited by address too.
        status, out, _ = ctx.post(report("web01"), token="0" * 64, port=port)
        check(status == 429, f"per address: {status}")
        check(_status(ctx.port) == 200, "co1 serving")
    finally:
        co2.popen.send_signal(signal.SIGTERM)
        co2.wait(10)


def test_config(ctx):
    def check_config(discovery, want):
        path = os.path.join(ctx.tmp, "bad.toml")
        with open(path, "w") as f:
            f.write(f'[coordinator]\nregistry = "{ctx.pg.url(db="registry")}"\n\n'
                    f'[discovery]\n{discovery}\n')
        cp = trapline("coordinator", "--config", path, "--check-config")
        out = cp.stdout + cp.stderr
        check((cp.returncode == 0) == (want is None) and (want is None or want in out),
              f"{discovery!r}: exit {cp.returncode}: {out.strip()} (want {want!r})")
        say(f"{discovery!r} -> {out.strip()}")
    short = os.path.join(ctx.tmp, "short.secret")
    with open(short, "w") as f:
        f.write("short\n")
    check_config(f'enrolment_secret_file = "{short}"', "at least 16 characters")
    check_config('enrolment_secret_file = "/nonexistent/secret"', "cannot be read")
    check_config("gone_after_reports = 0", "gone_after_reports")
    check_config("rate_per_minte = 5", "rate_per_minte")
    check_config(f'enrolment_secret_file = "{ctx.secret_file}"\ngone_after_reports = 5', None)


def _status(port, path="/api/v1/status"):
    try:
        with urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}{path}",
                headers={"Authorization": f"Bearer {TOKEN}"}), timeout=2) as r:
            return r.status
    except (OSError, urllib.error.URLError):
        return None


if __name__ == "__main__":
    sys.exit(run_checks([test_enrolment, test_hostile, test_gone, test_auto_enrolment,
                         test_profile_choice, test_by_hand, test_token_reset, test_rate_limit,
                         test_config],
                        setup=setup, teardown=teardown, limit_s=120))
