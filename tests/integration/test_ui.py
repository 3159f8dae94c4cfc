"""The admin panel in a real browser (issue 7's browser tests): playwright-core driving
Debian's chromium (tests/ui/panel.cjs) against a real PostgreSQL registry, a real Zabbix 6.0
(server + frontend), `trapline coordinator` serving ui/dist ([http] ui_dir) with [zabbix], one
`trapline collector` in cluster mode, and real Redis servers as targets; the admin is made with
`trapline user add`. Each check runs one browser scenario and then looks at the registry and
Zabbix itself. The checks build on each other: run them in this order.

  check_login               no session: the login page; a wrong password shows the server's
                            error; the right one lands on Hosts with the user shown; the session
                            cookie is HttpOnly + SameSite=Strict
  check_monitor_discovered  a host discovery reported: one click on Discovery monitors it and all
                            its services; its page turns ok by itself; its Zabbix host appears
  check_zabbix_links        the host page's links, followed into the Zabbix frontend: the host
                            in Monitoring > Hosts, its dashboard made by zabbix-sync
  check_live_status         a change made elsewhere (the API with the bearer token) shows on the
                            Hosts page within 2 s, without a reload
  check_reconnect           the coordinator restarted under an open page: the stream comes back
                            by itself (no reload) and a change then shows within 2 s
  check_bulk_maintenance    three hosts selected on Hosts, "Maintenance on" with an end time:
                            the registry has them in maintenance, Zabbix has the maintenance
                            of the synced one with data collection (maintenance_type 0)
  check_maintenance_page    the Maintenance page: a host taken out, then put back in with an
                            end time (host name completed as typed); registry and audit agree
  check_clone               Clone on a host's page: the clone exists with the same services
  check_wrong_credential    a service switched to a profile with a wrong Redis password on its
                            host's page: the error appears there live, without a reload
  check_add_host            Add host: "Test connection" (the probe) succeeds before saving; the
                            host and its service are saved
  check_bulk_delete         bulk delete needs "delete N" typed; Cancel keeps the hosts; then
                            they are gone (registry, one audit row each), the others stay
  check_settings            a credential profile made on Settings (the password stored, never
                            shown nor answered), an operator added
  check_collector_weight    a collector's weight edited on Collectors reaches the registry; its
                            own Zabbix host (self_host) is linked there and built by the leader
  check_audit               the audit log page filtered on the user shows every action the
                            panel did, with the user's name
  check_serving             ui_dir at "/": index.html with its CSP, assets; /metrics and /api/v1
                            keep their routes; nothing outside ui_dir is served
  check_escaping            HTML in an error message, a group and the audit log is shown as
                            text: no element made, no script run
  check_viewer              a viewer sees hosts, a host and settings without any write button
  check_scale               5,000 more hosts: the Hosts page shows the total, renders only the
                            visible rows and reaches the last host by scrolling, quickly
  check_screenshots         every page at 1280 and 1920 px wide in build/ui-screenshots/
"""

import ctypes
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    Failure, LongLivedProc, api_call, check, make_tmp, run_checks, say, trapline_bin, wait_until)
from harness import HOST, PostgresServer, RedisServer, ZabbixStack, free_port  # noqa: E402

SOURCE = os.environ.get("TRAPLINE_SOURCE") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKEN = "ui-test-token-8c1f0e5a7d2b"
ADMIN, ADMIN_PW = "admin", "panel-admin-pw-7d3e"
REDIS_PW = "ui-redis-pw-41"
ENROL = "ui-enrolment-secret-0b9d2c41"
SHOTS = os.path.join(SOURCE, "build", "ui-screenshots")


def build_panel():
    ui = os.path.join(SOURCE, "ui")
    if not os.path.isdir(os.path.join(ui, "node_modules", "playwright-core")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ui, check=True)
    subprocess.run(["npm", "run", "build", "--silent"], cwd=ui, check=True, stdout=subprocess.DEVNULL)
    check(os.path.isfile(os.path.join(ui, "dist", "index.html")), "ui/dist/index.html not built")
    return os.path.join(ui, "dist")


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("ui")
        t0 = time.monotonic()
        ui_dir = build_panel()
        say(f"panel built in {time.monotonic() - t0:.1f} s")
        self.zbx = ZabbixStack()
        self.zbx.start()
        self.pg = PostgresServer()
        self.pg.start()
        self.pg.create_db("trapline")
        self.redis = RedisServer()  # what discovery found on the discovered host: no password
        self.redis.start()
        self.redis.command("SET", "k", "v")
        self.redis_auth = RedisServer(password=REDIS_PW)
        self.redis_auth.start()
        self.dsn = f"postgresql://postgres@{HOST}:{self.pg.port}/trapline"
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}/"
        files = {"zabbix.pw": self.zbx.password, "api.token": TOKEN, "enrol.secret": ENROL}
        for name, text in files.items():
            with open(os.path.join(self.tmp, name), "w") as f:
                f.write(text + "\n")
        conf = os.path.join(self.tmp, "coordinator.toml")
        with open(conf, "w") as f:
            f.write(f"""[coordinator]
name = "k1"
registry = "{self.dsn}"
load_history_interval = 2
[zabbix]
url = "{self.zbx.frontend_url}"
frontend_url = "{self.zbx.frontend_url}"
user = "{self.zbx.user}"
password_file = "{self.tmp}/zabbix.pw"
trapper_hosts = "127.0.0.1"
host_group = "trapline ui"
[http]
listen = "{HOST}:{self.port}"
api_token_file = "{self.tmp}/api.token"
ui_dir = "{ui_dir}"
[discovery]
enrolment_secret_file = "{self.tmp}/enrol.secret"
""")
        self.coordinator_argv = [trapline_bin(), "coordinator", "--config", conf]
        self.coordinator = LongLivedProc(self.coordinator_argv, self.tmp, "k1")
        wait_until(lambda: self.sql_value("SELECT to_regclass('tasks') IS NOT NULL") == "t", 30,
                   "registry migrated")
        conf = os.path.join(self.tmp, "c1.toml")
        with open(conf, "w") as f:
            f.write(f"""[collector]
name = "c1"
self_host = "trapline-ui-c1"
[sender]
server = "127.0.0.1"
port = {self.zbx.server_port}
flush_interval = 0.5
grace = 60
spool_dir = "{self.tmp}/spool"
[cluster]
registry = "{self.dsn}"
secrets_dir = "{self.tmp}/secrets"
""")
        self.collector = LongLivedProc([trapline_bin(), "collector", "--config", conf], self.tmp, "c1")
        wait_until(lambda: self.api("GET", "/api/v1/status")[0] == 200, 20, "the coordinator's API")
        self.make_admin()
        self.seed()

    # ---- helpers ----
    def sql(self, text):
        return self.pg.psql(text, db="trapline")

    def sql_value(self, text):
        rows = self.sql(text)
        return rows[0][0] if rows else None

    def api(self, method, path, body=None, token=TOKEN):
        status, out, _ = api_call(self.url, method, path, body, token, timeout=30)
        return status, (out if out != "" else None)

    def node(self, scenario, args=None, timeout=150):
        """Runs one browser scenario; returns what it printed as RESULT."""
        env = dict(os.environ, TRAPLINE_UI_URL=self.url, TRAPLINE_UI_USER=ADMIN,
                   TRAPLINE_UI_PASSWORD=ADMIN_PW, TRAPLINE_API_TOKEN=TOKEN,
                   TRAPLINE_UI_SCREENSHOTS=SHOTS)
        t0 = time.monotonic()
        p = subprocess.run(["node", os.path.join(SOURCE, "tests", "ui", "panel.cjs"), scenario,
                            json.dumps(args or {})], env=env, capture_output=True, text=True,
                           timeout=timeout)
        for line in p.stdout.splitlines():
            if not line.startswith("RESULT "):
                print(line, flush=True)
        if p.returncode != 0:
            raise Failure(f"browser scenario {scenario} failed ({time.monotonic() - t0:.1f} s):\n"
                          f"{p.stderr.strip()[-3000:]}")
        result = [line[7:] for line in p.stdout.splitlines() if line.startswith("RESULT ")]
        check(result, f"scenario {scenario} printed no RESULT")
        return json.loads(result[-1])

    def make_admin(self):
        """`trapline user add` (issue 7: the first admin comes from the command line)."""
        p = subprocess.run([trapline_bin(), "user", "add", "--help"], capture_output=True, text=True)
        if p.returncode != 0 and os.environ.get("TRAPLINE_UI_SQL_ADMIN") == "1":
            # Development only (before `trapline user add` existed): an Argon2id hash from
            # libsodium, inserted by SQL.
            sodium = ctypes.CDLL("libsodium.so.23")
            check(sodium.sodium_init() >= 0, "sodium_init")
            out = ctypes.create_string_buffer(128)
            pw = ADMIN_PW.encode()
            check(sodium.crypto_pwhash_str(out, pw, ctypes.c_ulonglong(len(pw)), ctypes.c_ulonglong(2),
                                           ctypes.c_size_t(64 << 20)) == 0, "crypto_pwhash_str")
            self.sql(f"INSERT INTO users (name, role, password_hash) VALUES ('{ADMIN}', 'admin', "
                     f"'{out.value.decode()}')")
            say("TRAPLINE_UI_SQL_ADMIN=1: admin inserted by SQL, not by `trapline user add`")
            return
        check(p.returncode == 0, f"`trapline user add` is missing: {p.stderr.strip()[:300]}")
        conf = os.path.join(self.tmp, "coordinator.toml")
        p = subprocess.run([trapline_bin(), "user", "add", "--config", conf, "--role", "admin",
                            ADMIN], input=ADMIN_PW + "\n", capture_output=True,
                           text=True, timeout=60)
        check(p.returncode == 0, f"trapline user add: {p.returncode} {p.stdout} {p.stderr}")
        check(self.sql_value(f"SELECT role FROM users WHERE name = '{ADMIN}'") == "admin", "admin made")
        say(f"admin made with `trapline user add`: {p.stdout.strip()[:200]}")

    def seed(self):
        # Credential profiles: Redis's right password and a wrong one (value sets every 5 s).
        self.sql(f"""
INSERT INTO credential_profiles (name, kind, secret, options) VALUES
  ('redis-good', 'redis', '{{"password": "{REDIS_PW}"}}', '{{"interval": 5}}'),
  ('redis-wrong', 'redis', '{{"password": "not-{REDIS_PW}"}}', '{{"interval": 5}}');
INSERT INTO hosts (name, address, enabled) VALUES ('ui-auth', '{HOST}', true);
INSERT INTO services (host_id, plugin, port, credential_profile_id, enabled)
  SELECT h.id, 'redis', {self.redis_auth.port}, p.id, true FROM hosts h, credential_profiles p
  WHERE h.name = 'ui-auth' AND p.name = 'redis-good';
""")
        for i in (1, 2):
            st, out = self.api("POST", "/api/v1/hosts", {"name": f"ui-bulk-{i}", "address": f"10.9.0.{i}",
                                                          "enabled": True})
            check(st == 201, f"POST host: {st} {out}")
        self.discover("ui-db01", self.redis.port)

    def discover(self, name, port):
        """The host as trapline-discover reports it (POST /api/v1/discovery with the enrolment
        secret); by SQL only where that endpoint does not exist (404)."""
        report = {"version": 1, "script": "trapline-discover 1.0",
                  # Loopback addresses are not preferred as the host's address; the fqdn
                  # comes next, so it is the address the targets listen on here.
                  "host": {"name": name, "fqdn": HOST, "os": "Debian GNU/Linux 12",
                           "kernel": "6.1.0", "addresses": [HOST], "cpus": 2, "memory_bytes": 1 << 30},
                  "services": [{"kind": "redis", "port": port, "version": "7.0.15"}]}
        st, out = self.api("POST", "/api/v1/discovery", report, token=ENROL)
        if st in (200, 201):
            say(f"{name} reported by discovery (POST /api/v1/discovery): {st} {out.get('host')}")
            check(self.sql_value(f"SELECT enabled FROM hosts WHERE name = '{name}'") == "f", "discovered host enabled")
            return
        # Only while the endpoint does not exist; any other answer is a failure.
        check(st == 404, f"POST /api/v1/discovery: {st} {out}")
        say(f"POST /api/v1/discovery: 404: {name} inserted by SQL instead")
        self.sql(f"""
INSERT INTO hosts (name, address) VALUES ('{name}', '{HOST}');
INSERT INTO services (host_id, plugin, port) SELECT id, 'redis', {port} FROM hosts WHERE name = '{name}';
""")

    def close(self):
        for p in (self.collector, self.coordinator):
            p.end()
        for s in (self.redis_auth, self.redis, self.pg, self.zbx):
            s.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def zbx_host(ctx, name):
    return ctx.zbx.api("host.get", {"filter": {"host": [name]}, "output": ["hostid", "host"]})


def check_login(ctx):
    r = ctx.node("login")
    check(r["error_text"], "no error text")


def check_monitor_discovered(ctx):
    check(ctx.sql_value("SELECT enabled FROM hosts WHERE name = 'ui-db01'") == "f", "discovered host monitored already")
    t0 = time.monotonic()
    r = ctx.node("monitor_discovered", {"host": "ui-db01"})
    # The row showed what the host's report says of it (os, cpus, memory_bytes).
    check(r["system"] == "Debian GNU/Linux 12 · 2 CPUs · 1.0 GiB", f"System column: {r['system']!r}")
    rows = ctx.sql("SELECT h.enabled, s.enabled, s.state FROM hosts h JOIN services s ON s.host_id = h.id "
                   "WHERE h.name = 'ui-db01'")
    check(rows and all(x == ("t", "t", "ok") for x in rows), f"registry: {rows}")
    hosts = wait_until(lambda: zbx_host(ctx, "ui-db01"), 60, "the Zabbix host of ui-db01")
    say(f"ui-db01: healthy on its page after {r['ok_ms']} ms; Zabbix host {hosts[0]['hostid']} "
        f"{time.monotonic() - t0:.1f} s after the scenario started")


def check_zabbix_links(ctx):
    name = "trapline: ui-db01 / redis"
    wait_until(lambda: ctx.zbx.api("dashboard.get", {"filter": {"name": [name]}}), 60, "the host's dashboard")
    ctx.node("zabbix_links", {"host": "ui-db01", "zabbix_user": ctx.zbx.user,
                              "zabbix_password": ctx.zbx.password, "dashboard": name})


def check_live_status(ctx):
    r = ctx.node("live_status", {"host": "ui-auth"})
    check(r["on_ms"] < 2000 and r["off_ms"] < 2000, r)


def check_reconnect(ctx):
    env = dict(os.environ, TRAPLINE_UI_URL=ctx.url, TRAPLINE_UI_USER=ADMIN, TRAPLINE_UI_PASSWORD=ADMIN_PW,
               TRAPLINE_API_TOKEN=TOKEN, TRAPLINE_UI_SCREENSHOTS=SHOTS)
    err_path = os.path.join(ctx.tmp, "reconnect.stderr")
    with open(err_path, "w") as err_file:
        node = subprocess.Popen(["node", os.path.join(SOURCE, "tests", "ui", "panel.cjs"), "reconnect",
                                 json.dumps({"host": "ui-auth"})], env=env, stdout=subprocess.PIPE,
                                stderr=err_file, text=True)
    try:
        lines = []
        while True:
            line = node.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if line.strip() == "READY":
                break
        check(lines and lines[-1] == "READY", lambda: f"the scenario did not get ready: {lines} {open(err_path).read()[-2000:]}")
        # kill -9 (a crash, or the machine gone): SIGTERM with an event stream open does not
        # stop the coordinator at the time of writing (it stays in its loop after "stopping").
        ctx.coordinator.popen.kill()
        ctx.coordinator.popen.wait(10)
        t0 = time.monotonic()
        ctx.coordinator = LongLivedProc(ctx.coordinator_argv, ctx.tmp, "k1")

        def up():
            try:
                return ctx.api("GET", "/api/v1/status")[0] == 200
            except OSError:
                return False
        wait_until(up, 30, "the coordinator back")
        say(f"coordinator killed and started again: API back in {time.monotonic() - t0:.1f} s")
        out = node.stdout.read()
        node.wait(90)
    except BaseException:
        node.kill()
        raise
    with open(err_path) as f:
        err = f.read()
    for line in out.splitlines():
        if not line.startswith("RESULT "):
            print(line, flush=True)
    check(node.returncode == 0, f"reconnect scenario failed ({node.returncode}):\n{out[-1000:]}\n{err.strip()[-3000:]}")


def check_bulk_maintenance(ctx):
    hosts = ["ui-bulk-1", "ui-bulk-2", "ui-db01"]
    t0 = time.time()
    ctx.node("bulk_maintenance", {"hosts": hosts, "q": "ui-"})
    rows = ctx.sql("SELECT name, maintenance, extract(epoch FROM maintenance_until)::bigint FROM hosts "
                   "WHERE name IN ('ui-bulk-1', 'ui-bulk-2', 'ui-db01') ORDER BY name")
    check(len(rows) == 3 and all(r[1] == "t" for r in rows), f"registry: {rows}")
    for r in rows:  # the dialog's default: two hours from now (minute precision)
        check(abs(int(r[2]) - (t0 + 7200)) < 180, f"until of {r[0]}: {r[2]}")
    check(ctx.sql_value("SELECT enabled FROM hosts WHERE name = 'ui-auth'") == "t" and
          ctx.sql_value("SELECT maintenance FROM hosts WHERE name = 'ui-auth'") == "f", "an unselected host changed")
    m = wait_until(lambda: ctx.zbx.api("maintenance.get", {"filter": {"name": ["trapline: ui-db01"]},
                                                           "output": "extend", "selectHosts": ["host"]}),
                   30, "the Zabbix maintenance of ui-db01")
    check(m[0]["maintenance_type"] == "0", f"maintenance with data collection: {m[0]}")
    check(abs(int(m[0]["active_till"]) - (t0 + 7200)) < 180, f"active_till {m[0]['active_till']}")
    say(f"3 hosts in maintenance in the registry; Zabbix maintenance '{m[0]['name']}' type "
        f"{m[0]['maintenance_type']} (with data collection) until {m[0]['active_till']}")


def check_maintenance_page(ctx):
    ctx.node("maintenance_page", {"host": "ui-bulk-1"})
    row = ctx.sql("SELECT maintenance, to_char(maintenance_until AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                  "FROM hosts WHERE name = 'ui-bulk-1'")
    # The browser's local time zone is the test's (TZ unset: UTC here).
    want = time.strftime("%Y-%m-%d %H:%M", time.gmtime(time.mktime((2031, 1, 2, 3, 4, 0, 0, 0, -1))))
    check(row == [("t", want)], f"registry: {row} (want until {want} UTC)")
    actions = ctx.sql(f"SELECT action FROM audit_log WHERE actor = '{ADMIN}' AND object_id = 'ui-bulk-1' "
                      "AND action LIKE 'maintenance.%' ORDER BY id DESC LIMIT 2")
    check([a[0] for a in actions] == ["maintenance.set", "maintenance.clear"], f"audit: {actions}")


def check_clone(ctx):
    ctx.node("clone", {"host": "ui-db01", "to": ["ui-db02"]})
    src = ctx.sql("SELECT s.plugin, s.port FROM services s JOIN hosts h ON h.id = s.host_id "
                  "WHERE h.name = 'ui-db01' ORDER BY 1, 2")
    dst = ctx.sql("SELECT s.plugin, s.port FROM services s JOIN hosts h ON h.id = s.host_id "
                  "WHERE h.name = 'ui-db02' ORDER BY 1, 2")
    check(src and src == dst, f"services {src} vs clone {dst}")


def check_wrong_credential(ctx):
    wait_until(lambda: ctx.sql_value("SELECT s.state FROM services s JOIN hosts h ON h.id = s.host_id "
                                     "WHERE h.name = 'ui-auth'") == "ok", 60, "ui-auth's service ok first")
    r = ctx.node("wrong_credential", {"host": "ui-auth", "plugin": "redis", "profile": "redis-wrong"})
    row = ctx.sql("SELECT s.state, cp.name FROM services s JOIN hosts h ON h.id = s.host_id "
                  "JOIN credential_profiles cp ON cp.id = s.credential_profile_id WHERE h.name = 'ui-auth'")
    check(row == [("error", "redis-wrong")], f"registry: {row}")
    check(REDIS_PW not in r["error"], "the password is in the error text")
    say(f"error shown live: {r['error']!r}")


def check_add_host(ctx):
    ctx.node("add_host", {"name": "ui-manual", "address": HOST, "port": ctx.redis.port})
    rows = ctx.sql("SELECT h.enabled, s.plugin, s.port FROM hosts h JOIN services s ON s.host_id = h.id "
                   "WHERE h.name = 'ui-manual'")
    check(rows == [("t", "redis", str(ctx.redis.port))], f"registry: {rows}")


def check_bulk_delete(ctx):
    hosts = ["ui-bulk-2", "ui-manual"]
    # A cancelled delete changes nothing: the scenario checks the rows stay; the registry here.
    ctx.node("bulk_delete", {"hosts": hosts, "q": "ui-"})
    left = ctx.sql("SELECT name FROM hosts WHERE name IN ('ui-bulk-2', 'ui-manual')")
    check(left == [], f"still in the registry: {left}")
    n = ctx.sql_value(f"SELECT count(*) FROM audit_log WHERE actor = '{ADMIN}' AND action = 'host.delete' "
                      "AND object_id IN ('ui-bulk-2', 'ui-manual')")
    check(n == "2", f"host.delete audit rows: {n}")
    check(ctx.sql_value("SELECT count(*) FROM hosts WHERE name IN ('ui-auth', 'ui-db01', 'ui-bulk-1')") == "3",
          "an unselected host was deleted")


def check_settings(ctx):
    secret = "new-profile-secret-5e1"
    ctx.node("settings", {"profile": "ui-redis-new", "secret": secret, "user": "oper1",
                          "password": "oper1-password-77"})
    row = ctx.sql("SELECT kind, secret->>'password', options->>'interval', array_to_string(host_groups, '|'), "
                  "is_default FROM credential_profiles WHERE name = 'ui-redis-new'")
    check(row == [("redis", secret, "10", "ui group|db/redis", "t")], f"registry: {row}")
    st, out = ctx.api("GET", "/api/v1/credential-profiles")
    check(st == 200 and secret not in json.dumps(out), f"the secret in the API's answer: {st}")
    check(ctx.sql_value("SELECT role FROM users WHERE name = 'oper1'") == "operator", "user oper1")


def check_collector_weight(ctx):
    r = ctx.node("collector_weight", {"collector": "c1", "weight": 2.5})
    check(ctx.sql_value("SELECT weight FROM collectors WHERE name = 'c1'") == "2.5", "weight in the registry")
    # Its own health's host (self_host): linked from the page, built by the leader's zabbix-sync.
    check(r["zabbix_href"].startswith(ctx.zbx.frontend_url.rstrip("/")) and
          "filter_name=trapline-ui-c1" in r["zabbix_href"], f"the Zabbix link: {r['zabbix_href']}")
    wait_until(lambda: ctx.zbx.api("host.get", {"filter": {"host": ["trapline-ui-c1"]}}), 60,
               "the collector's own Zabbix host")


def check_audit(ctx):
    actions = sorted({r[0] for r in ctx.sql(f"SELECT action FROM audit_log WHERE actor = '{ADMIN}'")})
    # What the scenarios did: monitor (host + services), bulk maintenance, clone, credentials, add.
    for want in ("host.update", "maintenance.set", "service.update", "host.create", "host.delete"):
        check(want in actions, f"no {want} row by {ADMIN} in audit_log: {actions}")
    check(any("clone" in a for a in actions) or
          ctx.sql_value(f"SELECT count(*) FROM audit_log WHERE actor = '{ADMIN}' AND object_id = 'ui-db02'") != "0",
          f"the clone is not audited as {ADMIN}: {actions}")
    r = ctx.node("audit", {"actions": actions})
    say(f"audit page shows {len(r['actions'])} kinds of action by {ADMIN}: {', '.join(r['actions'])}")


def check_scale(ctx):
    ctx.sql("INSERT INTO hosts (name, address, enabled, groups) SELECT 'load-' || lpad(i::text, 5, '0'), "
            "'10.' || (i / 65536) || '.' || (i / 256 % 256) || '.' || (i % 256), i % 3 = 0, "
            "ARRAY['load/' || (i % 10)] FROM generate_series(1, 5000) i")
    ctx.sql("INSERT INTO services (host_id, plugin, port) SELECT id, 'redis', 6379 FROM hosts WHERE name LIKE 'load-%'")
    filtered = int(ctx.sql_value("SELECT count(*) FROM hosts WHERE 'load/3' = ANY(groups) AND NOT enabled"))
    r = ctx.node("scale", {"last": "load-05000", "total_min": 5000, "filtered": filtered})
    check(r["rows_in_dom"] < 120, r)
    check(r["first_ms"] < 3000 and r["last_ms"] < 3000, r)


def check_serving(ctx):
    """ui_dir at "/" next to the API: the longest prefix keeps /api/v1 and /metrics."""
    def get(path):
        try:
            with urllib.request.urlopen(ctx.url.rstrip("/") + path, timeout=10) as r:
                return r.status, r.headers.get("content-type", ""), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("content-type", ""), e.read().decode(errors="replace")
    st, ct, body = get("/")
    check(st == 200 and ct.startswith("text/html") and "Content-Security-Policy" in body, f"/: {st} {ct}")
    asset = body.split('src="./', 1)[1].split('"', 1)[0]
    st, ct, _ = get("/" + asset)
    check(st == 200 and "javascript" in ct, f"/{asset}: {st} {ct}")
    st, ct, body = get("/metrics")
    check(st == 200 and ct.startswith("text/plain") and "trapline_coordinator_leader 1" in body, f"/metrics: {st} {ct}")
    st, _, body = get("/api/v1/hosts")
    check(st == 401 and "error" in json.loads(body), f"/api/v1/hosts without auth: {st} {body[:200]}")
    st, _, body = get("/api/v1/no-such-route")
    check(st == 404, f"/api/v1/no-such-route: {st}")
    for path in ("/../../etc/passwd", "/.env", "/%2e%2e/%2e%2e/etc/passwd", "/nope.js"):
        st, _, body = get(path)
        check(st in (400, 404) and "root:" not in body, f"{path}: {st} {body[:100]}")
    say(f"/ serves ui/dist (index, {asset}); /metrics and /api/v1 keep their routes; "
        "no file outside ui_dir")


def check_escaping(ctx):
    payload = '<img src=x onerror="window.__trapline_xss=1"><script>window.__trapline_xss=1</script>'
    quoted = payload.replace("'", "''")
    ctx.sql(f"INSERT INTO errors (task_id, message) SELECT t.id, '{quoted}' FROM tasks t "
            "JOIN services s ON s.id = t.service_id JOIN hosts h ON h.id = s.host_id WHERE h.name = 'ui-auth';"
            f"UPDATE hosts SET groups = ARRAY['{quoted}'] WHERE name = 'ui-auth';"
            f"INSERT INTO audit_log (actor, action, object_type, object_id, after) VALUES ('{quoted}', "
            f"'x.y', 'host', '{quoted}', jsonb_build_object('v', '{quoted}'))")
    ctx.node("escaping", {"host": "ui-auth", "payload": payload})


def check_viewer(ctx):
    conf = os.path.join(ctx.tmp, "coordinator.toml")
    p = subprocess.run([trapline_bin(), "user", "add", "--config", conf, "--role", "viewer", "watcher"],
                       input="viewer-pw-1234567\n", capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, f"user add viewer: {p.stderr}")
    ctx.node("viewer", {"user": "watcher", "password": "viewer-pw-1234567", "host": "ui-auth"})


def check_screenshots(ctx):
    r = ctx.node("screenshots", {"host": "ui-db01"})
    check(len(r["files"]) == 18 and all(os.path.getsize(f) > 10000 for f in r["files"]), r)


if __name__ == "__main__":
    sys.exit(run_checks([check_login, check_monitor_discovered, check_zabbix_links,
                         check_live_status, check_reconnect, check_bulk_maintenance, check_maintenance_page,
                         check_clone, check_wrong_credential, check_add_host, check_bulk_delete,
                         check_settings, check_collector_weight, check_audit,
                         check_serving, check_escaping, check_viewer, check_scale,
                         check_screenshots],
                        setup=setup, teardown=teardown))
