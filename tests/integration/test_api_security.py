"""API security (issue 7): users, sessions, roles, CSRF, hostile input, rate limiting, against
one real `trapline coordinator` and a real PostgreSQL registry on 127.0.0.1.

  test_user_cli        `trapline user add` (stdin, --password-file, --config), list, errors
                       (short password, duplicate, bad role, no registry): one line, non-zero,
                       the password never printed; hashes in users start with $argon2id$
  test_login           POST /api/v1/session: cookie HttpOnly, SameSite=Strict, Path=/, no
                       Secure; GET /api/v1/session; wrong password and unknown user 401 (same
                       text); audit session.login / session.login_failed with the source
  test_no_session      reads and writes without credentials, with a made-up cookie: 401
  test_roles           viewer reads 200, writes 403 and nothing changed; operator writes, not
                       users (403); the audit actor is the user's name
  test_csrf            cookie + no/wrong X-CSRF-Token: 403, nothing changed; a foreign Origin:
                       403; the Bearer token needs no CSRF token
  test_injection       SQL, HTML, shell, path, NUL and 100 KB strings in every text field of
                       every write route reachable: 400 and tables unchanged, or stored
                       verbatim and returned as valid JSON
  test_users_api       admin: create, list (no hash), change role, password (sessions end),
                       last admin cannot be demoted/disabled/deleted (409), delete
  test_logout          DELETE /api/v1/session: cookie cleared, the old cookie 401, row gone
  test_disabled_user   disabled by the API or by `trapline user disable`: its sessions stop;
                       its right password gets the wrong one's 401
  test_audit_actors    every change above is in the audit log under the user's name; no
                       password or token anywhere in audit_log or the coordinator's log
  test_secure_cookie   a coordinator with [http] secure_cookies = true sets Secure
  test_rate_limit      5 wrong passwords, then 429 with Retry-After (even with the right one)
                       from that address; from another the right password still signs in;
                       8 sign-ins at once from one address: the extra ones 503 busy
"""

import concurrent.futures
import hashlib
import http.client
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BackgroundProc, LongLivedProc, api_call, check, make_tmp, run_checks, say, trapline,
    trapline_bin, wait_until)
from harness import PostgresServer, free_port  # noqa: E402

TOKEN = "api-token-3c9a1e77b0d24f5e"
PASSWORDS = {"admin1": "admin-pw-Kq83!vz", "view1": "viewer-pw-Lr21#", "op1": "operator-pw-Mx45$",
             "admin2": "second-admin-pw-9"}
INJECTIONS = ["'; DROP TABLE hosts; --", "<script>alert(1)</script>", "$(reboot)",
              "../../etc/passwd", "a\x00b", "x" * 100_000, "\"}],\"role\":\"admin", "`id`",
              "%00%27", "\u202etxt.exe"]


class Session:
    def __init__(self, user, cookie, csrf, role):
        self.user, self.cookie, self.csrf, self.role = user, cookie, csrf, role


def parse_set_cookie(value: str) -> tuple[str, str, dict]:
    parts = [p.strip() for p in value.split(";")]
    name, _, val = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return name, val, attrs


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("api-security")
        self.pg = PostgresServer(password="registry-pw-77")
        self.pg.start()
        self.pg.create_db("registry")
        self.registry = self.pg.url(db="registry")
        self.port = free_port()
        self.token_file = os.path.join(self.tmp, "api.token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN + "\n")
        self.config = self.write_config("co1", self.port)
        self.coord = LongLivedProc([trapline_bin(), "coordinator", "--config", self.config],
                                 self.tmp, "co1")
        wait_until(lambda: "leader: acquired" in self.coord.stderr() or not self.coord.alive(),
                   20, "the coordinator to lead")
        check(self.coord.alive(), lambda: self.coord.output())
        self.sessions: dict[str, Session] = {}

    def write_config(self, name, port, extra=""):
        path = os.path.join(self.tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[coordinator]\nname = "{name}"\nregistry = "{self.registry}"\n'
                    'log_level = "debug"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{port}"\napi_token_file = "{self.token_file}"\n'
                    + extra)
        return path

    def sql(self, q: str):
        return self.pg.psql(q, db="registry")

    def call(self, method, path, body=None, token=None, session=None, csrf=None, raw=None,
             headers=None, port=None):
        """(status, parsed JSON or text, headers). `session`: a Session (cookie and, for
        state changes, its CSRF token unless `csrf` is given; csrf="" sends none)."""
        headers = dict(headers or {})
        if session:
            headers["Cookie"] = f"trapline_session={session.cookie}"
            want_csrf = session.csrf if csrf is None else csrf
            if method not in ("GET", "HEAD") and want_csrf:
                headers["X-CSRF-Token"] = want_csrf
        return api_call(f"http://127.0.0.1:{port or self.port}", method, path, body, token, raw,
                        headers)

    def login(self, user, password=None, port=None, want=200):
        status, out, hdrs = self.call("POST", "/api/v1/session",
                                      {"user": user, "password": password or PASSWORDS[user]},
                                      port=port)
        if want is None:  # any answer: its status goes in the result
            return dict(out, status=status) if isinstance(out, dict) else {"status": status}, hdrs
        check(status == want, f"login {user}: {status} {out} (want {want})")
        if want != 200:
            return out, hdrs
        cookies = [parse_set_cookie(v) for v in hdrs.get_all("Set-Cookie") or []]
        mine = [c for c in cookies if c[0] == "trapline_session"]
        check(len(mine) == 1, f"login {user}: Set-Cookie {hdrs.get_all('Set-Cookie')}")
        s = Session(user, mine[0][1], out["csrf_token"], out["role"])
        s.attrs = mine[0][2]
        return s

    def snapshot(self):
        """What the write routes can change (not the columns the coordinator itself updates)."""
        return self.sql(
            "SELECT (SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) FROM "
            "(SELECT id, name, address, enabled, maintenance, maintenance_until, groups FROM hosts) x), "
            "(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) FROM "
            "(SELECT id, host_id, plugin, port, enabled, credential_profile_id FROM services) x), "
            "(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) FROM "
            "(SELECT id, name, weight FROM collectors) x), "
            "(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) FROM "
            "(SELECT id, name, role, password_hash, disabled FROM users) x), "
            "(SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x.id), '')) FROM "
            "(SELECT id, name, kind, username, secret, options FROM credential_profiles) x), "
            "(SELECT count(*) FROM sessions), (SELECT count(*) FROM audit_log)")[0]

    def close(self):
        self.coord.end()
        self.pg.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


def user_cli(ctx, *args, password=None):
    cp = trapline("user", *args, input=password + "\n" if password is not None else "")
    for pw in PASSWORDS.values():
        check(pw not in cp.stdout and pw not in cp.stderr, f"a password printed: {cp}")
    return cp


def test_user_cli(ctx):
    cp = user_cli(ctx, "add", "admin1", "--role", "admin", "--registry", ctx.registry,
                  password=PASSWORDS["admin1"])
    check(cp.returncode == 0, f"user add: {cp.returncode} {cp.stdout} {cp.stderr}")
    pwfile = os.path.join(ctx.tmp, "view1.pw")
    with open(pwfile, "w") as f:
        f.write(PASSWORDS["view1"] + "\n")
    cp = user_cli(ctx, "add", "view1", "--role", "viewer", "--config", ctx.config,
                  "--password-file", pwfile)
    check(cp.returncode == 0, f"user add --config --password-file: {cp.stdout} {cp.stderr}")
    cp = user_cli(ctx, "add", "op1", "--role", "operator", "--config", ctx.config,
                  password=PASSWORDS["op1"])
    check(cp.returncode == 0, f"user add op1: {cp.stdout} {cp.stderr}")
    # Refusals: one line on stderr, non-zero exit, nothing added.
    for args, pw, want in (
            (["add", "short", "--role", "viewer"], "tooshort", "at least 10"),
            (["add", "admin1", "--role", "viewer"], "another-password-1", "exists"),
            (["add", "bad name", "--role", "viewer"], "another-password-1", "user name"),
            (["add", "x'; DROP TABLE users; --", "--role", "viewer"], "another-password-1",
             "user name"),
            (["add", "nobody", "--role", "root"], "another-password-1", "root"),
            (["add", "api", "--role", "viewer"], "another-password-1", "reserved"),
            (["passwd", "ghost"], "another-password-1", "no user"),
            (["disable", "admin1"], None, "last enabled admin")):
        extra = [] if "--role" in args and "root" in args else ["--registry", ctx.registry]
        cp = user_cli(ctx, *args, *extra, password=pw)
        lines = cp.stderr.strip().splitlines()
        check(cp.returncode != 0 and len(lines) == 1 and want in lines[0],
              f"user {args}: {cp.returncode} {cp.stderr!r} (want {want!r})")
        say(f"user {' '.join(args)} -> {lines[0]}")
    cp = user_cli(ctx, "list")
    check(cp.returncode != 0 and "registry" in cp.stderr, f"list without a registry: {cp.stderr}")
    cp = user_cli(ctx, "list", "--registry", "postgresql://u:pw-not-shown@127.0.0.1:1/x")
    check(cp.returncode == 1 and len(cp.stderr.strip().splitlines()) == 1 and
          "pw-not-shown" not in cp.stderr, f"unreachable registry: {cp.stderr!r}")
    cp = user_cli(ctx, "list", "--config", ctx.config)
    check(cp.returncode == 0, cp.stderr)
    names = [line.split()[0] for line in cp.stdout.splitlines()[1:]]
    check(names == ["admin1", "op1", "view1"], f"user list: {cp.stdout}")
    check(trapline("user", "--help").returncode == 0, "user --help")
    rows = ctx.sql("SELECT name, role, password_hash FROM users ORDER BY name")
    check([(r[0], r[1]) for r in rows] == [("admin1", "admin"), ("op1", "operator"),
                                           ("view1", "viewer")], rows)
    for r in rows:
        check(r[2].startswith("$argon2id$") and PASSWORDS[r[0]] not in r[2], f"hash {r}")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'user.create' AND actor LIKE "
                  "'cli:%'") == [("3",)], "audit rows for the CLI's user.create")


def test_login(ctx):
    s = ctx.login("admin1")
    check(s.role == "admin" and len(s.csrf) >= 32, vars(s))
    say(f"cookie attributes: {s.attrs}")
    check("httponly" in s.attrs and s.attrs.get("samesite") == "Strict" and
          s.attrs.get("path") == "/" and "secure" not in s.attrs, f"cookie flags {s.attrs}")
    check(int(s.attrs.get("max-age", "0")) > 0, s.attrs)
    status, out, _ = ctx.call("GET", "/api/v1/session", session=s)
    check(status == 200 and out == {"user": "admin1", "role": "admin", "csrf_token": s.csrf},
          f"GET session: {status} {out}")
    ctx.sessions["admin1"] = s
    ctx.sessions["view1"] = ctx.login("view1")
    ctx.sessions["op1"] = ctx.login("op1")
    # The token is stored hashed only.
    check(ctx.sql(f"SELECT count(*) FROM sessions WHERE token_hash = '{s.cookie}'") == [("0",)],
          "the session token is stored as is")
    check(int(ctx.sql("SELECT count(*) FROM sessions")[0][0]) == 3, "three sessions")
    check(ctx.sql("SELECT last_login IS NOT NULL, last_login_source FROM users WHERE name = "
                  "'admin1'") == [("t", "127.0.0.1")], "users.last_login")
    wrong, _ = ctx.login("admin1", "not-the-password", want=401)
    unknown, _ = ctx.login("nobody", "not-the-password", want=401)
    check(wrong == unknown, f"wrong password vs unknown user differ: {wrong} {unknown}")
    for bad in ({"user": "admin1"}, {"user": "admin1", "password": 5},
                {"user": "admin1", "password": "x", "extra": 1}, {"user": "a\x00b", "password": "xxxx"}):
        status, out, _ = ctx.call("POST", "/api/v1/session", bad)
        check(status == 400, f"login {bad}: {status} {out}")
    rows = ctx.sql("SELECT actor, action, after->>'source', after->>'reason' FROM audit_log WHERE "
                   "action LIKE 'session.%' ORDER BY id")
    check(("admin1", "session.login", "127.0.0.1", None) in rows, rows)
    check(("admin1", "session.login_failed", "127.0.0.1", "wrong password") in rows, rows)
    check(("nobody", "session.login_failed", "127.0.0.1", "unknown user") in rows, rows)


def test_no_session(ctx):
    fake = Session("x", "A" * 43, "B" * 43, "admin")
    for method, path, body in (("GET", "/api/v1/hosts", None), ("GET", "/api/v1/users", None),
                               ("POST", "/api/v1/hosts", {"name": "nope"}),
                               ("POST", "/api/v1/users", {"name": "nope", "role": "admin",
                                                          "password": "0123456789ab"}),
                               ("PATCH", "/api/v1/collectors/c1", {"weight": 2})):
        before = ctx.snapshot()
        for sess in (None, fake):
            status, out, _ = ctx.call(method, path, body, session=sess)
            check(status == 401 and "error" in out,
                  f"{method} {path} {'made-up cookie' if sess else 'no auth'}: {status} {out}")
        check(ctx.snapshot() == before, f"{method} {path}: something changed")
    status, out, _ = ctx.call("GET", "/api/v1/session")
    check(status == 401, f"GET /api/v1/session without a cookie: {status} {out}")
    status, out, _ = ctx.call("GET", "/metrics")
    check(status == 200, "/metrics stays open")


def refused_all(ctx, session, who, a_who, needle, requests):
    """Each request of `session` is refused with 403 and an error naming `needle`, and none of
    them changes anything."""
    before = ctx.snapshot()
    for method, path, body in requests:
        status, out, _ = ctx.call(method, path, body, session=session)
        check(status == 403 and needle in out.get("error", ""),
              f"{who} {method} {path}: {status} {out}")
        say(f"{who} {method} {path} -> 403 {out['error']}")
    check(ctx.snapshot() == before, f"{a_who}'s refused request changed something")


def test_roles(ctx):
    v, o = ctx.sessions["view1"], ctx.sessions["op1"]
    status, out, _ = ctx.call("GET", "/api/v1/hosts", session=v)
    check(status == 200, f"viewer GET hosts: {status} {out}")
    refused_all(ctx, v, "viewer", "a viewer", "viewer",
                (("POST", "/api/v1/hosts", {"name": "viewer-host"}),
                 ("PATCH", "/api/v1/collectors/c1", {"weight": 2}),
                 ("PUT", "/api/v1/hosts/h1/maintenance", {}),
                 ("GET", "/api/v1/users", None),
                 ("POST", "/api/v1/users", {"name": "v2", "role": "admin",
                                            "password": "0123456789ab"})))
    status, out, _ = ctx.call("POST", "/api/v1/hosts", {"name": "op-host"}, session=o)
    check(status == 201, f"operator POST host: {status} {out}")
    status, out, _ = ctx.call("GET", "/api/v1/users", session=o)
    check(status == 403 and "admin" in out["error"], f"operator GET users: {status} {out}")
    status, out, _ = ctx.call("POST", "/api/v1/users", {"name": "o2", "role": "admin",
                                                        "password": "0123456789ab"}, session=o)
    check(status == 403, f"operator POST users: {status} {out}")
    check(ctx.sql("SELECT actor FROM audit_log WHERE action = 'host.create' AND object_id = "
                  "'op-host'") == [("op1",)], "audit actor of the operator's change")
    # Where credentials are sent is an admin's call: an operator cannot point a profile's
    # secret at an address of their choosing (an address, a URI, a profile, a clone, a probe).
    ctx.sql("INSERT INTO credential_profiles (name, kind, secret) VALUES ('roles-redis', 'redis', "
            "'{\"password\": \"roles-secret-9\"}') ON CONFLICT DO NOTHING; "
            "INSERT INTO services (host_id, plugin, port) SELECT id, 'redis', 6390 FROM hosts "
            "WHERE name = 'op-host' ON CONFLICT DO NOTHING")
    sid = ctx.sql("SELECT s.id FROM services s JOIN hosts h ON h.id = s.host_id "
                  "WHERE h.name = 'op-host' AND s.port = 6390")[0][0]
    refused_all(ctx, o, "operator", "an operator", "needs the admin role",
                (("POST", "/api/v1/hosts", {"name": "op-host-2", "address": "203.0.113.9"}),
                 ("PATCH", "/api/v1/hosts/op-host", {"address": "203.0.113.9"}),
                 ("PATCH", f"/api/v1/services/{sid}", {"credential_profile": "roles-redis"}),
                 ("POST", "/api/v1/hosts/op-host/services", {"plugin": "redis", "port": 6391}),
                 ("POST", "/api/v1/hosts/op-host/clone", {"to": ["op-host-3"]}),
                 ("POST", "/api/v1/probe", {"uri": "redis://203.0.113.9:6379",
                                            "credential_profile": "roles-redis"})))
    status, out, _ = ctx.call("PATCH", f"/api/v1/services/{sid}", {"enabled": False}, session=o)
    check(status == 200, f"operator PATCH service enabled: {status} {out}")


def test_csrf(ctx):
    a = ctx.sessions["admin1"]
    before = ctx.snapshot()
    for csrf in ("", "wrong-" + a.csrf[6:], a.csrf[:-1]):
        for method, path, body in (("POST", "/api/v1/hosts", {"name": "csrf-host"}),
                                   ("DELETE", "/api/v1/hosts/op-host", None),
                                   ("POST", "/api/v1/users", {"name": "csrf-user", "role": "admin",
                                                              "password": "0123456789ab"}),
                                   ("DELETE", "/api/v1/session", None)):
            status, out, _ = ctx.call(method, path, body, session=a, csrf=csrf)
            check(status == 403 and out["error"] == "missing or wrong CSRF token",
                  f"{method} {path} csrf={csrf[:8]!r}: {status} {out}")
    # Another session's token is not this one's.
    status, out, _ = ctx.call("POST", "/api/v1/hosts", {"name": "csrf-host"}, session=a,
                              csrf=ctx.sessions["op1"].csrf)
    check(status == 403, f"another session's CSRF token: {status} {out}")
    # The right token from a foreign page (Origin) is refused too.
    status, out, _ = ctx.call("POST", "/api/v1/hosts", {"name": "csrf-host"}, session=a,
                              headers={"Origin": "http://evil.example"})
    check(status == 403 and "Origin" in out["error"], f"foreign Origin: {status} {out}")
    check(ctx.snapshot() == before, "a request without the CSRF token changed something")
    status, out, _ = ctx.call("POST", "/api/v1/hosts", {"name": "csrf-host"}, session=a,
                              headers={"Origin": f"http://127.0.0.1:{ctx.port}"})
    check(status == 201, f"same Origin and CSRF token: {status} {out}")
    status, out, _ = ctx.call("POST", "/api/v1/hosts", {"name": "token-host"}, token=TOKEN)
    check(status == 201, f"Bearer token without CSRF token: {status} {out}")


def injection_routes(name, i):
    """(method, path, body, kind) per text field of each write route; `name` is the hostile
    text. kind: "echo" (accepted text comes back in the answer), "secret" (accepted, never
    comes back), "host" (accepted: GET op-host shows it), "probe" (accepted: a failed probe)."""
    profile = {"name": "p1", "kind": "ssh", "username": "u", "secret": {"password": "x"}}
    q = urllib.request.quote(name[:2000], safe="")
    out = [
        ("POST", "/api/v1/hosts", {"name": name}),
        ("POST", "/api/v1/hosts", {"name": "inj-h", "address": name}),
        ("POST", "/api/v1/hosts", {"name": "inj-h", "groups": [name]}),
        ("PATCH", "/api/v1/hosts/op-host", {"address": name}),
        ("PATCH", "/api/v1/hosts/op-host", {"groups": [name]}),
        ("PATCH", "/api/v1/hosts/" + q, {"enabled": True}),
        ("DELETE", "/api/v1/hosts/" + q, None),
        ("PUT", "/api/v1/hosts/op-host/maintenance", {"until": name}),
        ("PUT", "/api/v1/hosts/" + q + "/maintenance", {}),
        ("PATCH", "/api/v1/services/1", {"credential_profile": name}),
        ("PATCH", "/api/v1/services/" + q, {"enabled": True}),
        ("PATCH", "/api/v1/collectors/" + q, {"weight": 2}),
        ("POST", "/api/v1/users", {"name": name, "role": "viewer", "password": "0123456789ab"}),
        ("POST", "/api/v1/users", {"name": "inj-u", "role": name, "password": "0123456789ab"}),
        ("PATCH", "/api/v1/users/view1", {"role": name}),
        ("PATCH", "/api/v1/users/" + q, {"disabled": False}),
        ("DELETE", "/api/v1/users/" + q, None),
        ("POST", "/api/v1/session", {"user": name, "password": "0123456789ab"}),
        ("POST", "/api/v1/credential-profiles", dict(profile, name=name)),
        ("POST", "/api/v1/credential-profiles", dict(profile, name="inj-p", username=name)),
        ("POST", "/api/v1/credential-profiles", dict(profile, name="inj-p", kind=name)),
        ("PATCH", "/api/v1/credential-profiles/p-ok", {"username": name}),
        ("PATCH", "/api/v1/credential-profiles/p-ok", {"options": {"known_hosts": name}}),
        ("PATCH", "/api/v1/credential-profiles/p-ok", {"secret": {"password": name}}, "secret"),
        ("DELETE", "/api/v1/credential-profiles/" + q, None),
        ("POST", "/api/v1/hosts/bulk", {"hosts": [name], "action": "disable"}),
        ("POST", "/api/v1/hosts/bulk", {"hosts": ["op-host"], "action": name}),
        ("POST", "/api/v1/hosts/bulk", {"hosts": ["op-host"], "action": "move_group", "group": name},
         "host"),
        ("POST", "/api/v1/hosts/op-host/clone", {"to": [name]}),
        ("POST", "/api/v1/hosts/" + q + "/clone", {"to": ["inj-c"]}),
        ("POST", "/api/v1/hosts/op-host/services", {"plugin": name, "port": 7000 + i}),
        ("POST", "/api/v1/hosts/op-host/services", {"plugin": "redis", "port": 7100 + i,
                                                    "uri": name}),
        ("POST", "/api/v1/hosts/op-host/services", {"plugin": "redis", "port": 7200 + i,
                                                    "credential_profile": name}),
        ("POST", "/api/v1/probe", {"uri": name}, "probe"),
        ("POST", "/api/v1/probe", {"uri": "redis://127.0.0.1:1", "credential_profile": name}),
        ("DELETE", "/api/v1/discovery/tokens/" + q, None),
    ]
    return [r if len(r) == 4 else r + ("echo",) for r in out]


def test_injection(ctx):
    a = ctx.sessions["admin1"]
    refused = stored = missing = 0
    # The shapes used below are accepted with harmless values (so a refusal below is the
    # hostile text's doing).
    for method, path, body, want in (
            ("POST", "/api/v1/credential-profiles", {"name": "p-ok", "kind": "ssh", "username": "u",
                                                     "secret": {"password": "x"}}, 201),
            ("POST", "/api/v1/hosts/op-host/services", {"plugin": "redis", "port": 6999,
                                                        "uri": "redis://10.1.1.1:6999"}, 201),
            ("POST", "/api/v1/hosts/op-host/clone", {"to": ["op-clone"]}, 200),
            ("POST", "/api/v1/hosts/bulk", {"hosts": ["op-clone"], "action": "disable"}, 200)):
        status, out, _ = ctx.call(method, path, body, session=a)
        check(status in (want, 201, 200), f"control {method} {path}: {status} {out}")
    for i, name in enumerate(INJECTIONS):
        for method, path, body, kind in injection_routes(name, i):
            before = ctx.snapshot()
            status, out, hdrs = ctx.call(method, path, body, session=a)
            shown = f"{method} {path[:60]} {json.dumps(body)[:80]}"
            if status in (404, 405) and "/" not in name and isinstance(out, dict) and (
                    "no such resource" in out.get("error", "") or "not allowed" in out.get("error", "")):
                missing += 1  # a route that does not exist in this build
                say(f"no such route: {method} {path[:40]} ({status})")
                continue
            check(hdrs.get("content-type", "").startswith("application/json") and
                  isinstance(out, dict), f"{shown}: not a JSON answer: {status} {out!r:.200}")
            if status >= 400:
                check(status in (400, 404, 405, 409, 413, 414), f"{shown}: {status} {out}")
                if method != "POST" or path != "/api/v1/session":
                    after = ctx.snapshot()
                    # A refused request changes nothing (a failed login adds its audit row).
                    check(after == before, f"{shown}: refused ({status}) but changed the registry")
                refused += 1
            else:
                # Accepted: never with a NUL (PostgreSQL text cannot hold it: it would be cut),
                # and the text comes back exactly, JSON-escaped (the answer parsed above).
                check("\x00" not in name, f"{shown}: {status}: a NUL byte accepted")
                if kind == "secret":
                    check(name not in json.dumps(out, ensure_ascii=False),
                          f"{shown}: a secret in the answer")
                elif kind == "host":  # the answer does not repeat it: the host shows it
                    _, host, _ = ctx.call("GET", "/api/v1/hosts/op-host", session=a)
                    check(name in json.dumps(host, ensure_ascii=False),
                          f"{shown}: accepted, but op-host does not show {name[:30]!r}: {host}")
                elif kind == "probe":
                    check(out.get("ok") is False, f"{shown}: probe of a hostile URI: {out}")
                else:
                    check(name in json.dumps(out, ensure_ascii=False),
                          f"{shown}: {status} accepted but {name[:30]!r} is not in the answer {out}")
                say(f"stored: {shown} -> {status}")
                stored += 1
    say(f"{refused} refused, {stored} stored verbatim, {missing} requests to routes not in this build")
    check(refused > 50, f"only {refused} refusals")
    check(ctx.sql("SELECT count(*) FROM hosts WHERE name = 'op-host'") == [("1",)], "op-host lost")
    check(ctx.sql("SELECT to_regclass('hosts') IS NOT NULL") == [("t",)], "hosts table dropped")
    # Passwords are opaque: a hostile one is stored as a hash and logs in.
    for i, pw in enumerate(["'; DROP TABLE users; --", "<script>alert(1)</script>", "$(reboot) 123"]):
        status, out, _ = ctx.call("POST", "/api/v1/users", {"name": f"pw{i}", "role": "viewer",
                                                            "password": pw}, session=a)
        check(status == 201 and "password" not in json.dumps(out), f"user pw{i}: {status} {out}")
        ctx.login(f"pw{i}", pw)
    for pw in ["a\x00bcdefghijk", "short", "y" * 1025]:
        status, out, _ = ctx.call("POST", "/api/v1/users", {"name": "pwbad", "role": "viewer",
                                                            "password": pw}, session=a)
        check(status == 400, f"password {pw[:12]!r}: {status} {out}")


def test_users_api(ctx):
    a = ctx.sessions["admin1"]
    status, out, _ = ctx.call("GET", "/api/v1/users", session=a)
    check(status == 200 and "admin1" in [u["name"] for u in out["users"]], f"{status} {out}")
    check("hash" not in json.dumps(out) and "argon2" not in json.dumps(out), "a hash in the answer")
    status, out, _ = ctx.call("POST", "/api/v1/users", {"name": "admin2", "role": "viewer",
                                                        "password": PASSWORDS["admin2"]}, session=a)
    check(status == 201 and out["role"] == "viewer", f"POST user: {status} {out}")
    status, out, _ = ctx.call("POST", "/api/v1/users", {"name": "admin2", "role": "viewer",
                                                        "password": PASSWORDS["admin2"]}, session=a)
    check(status == 409, f"POST existing user: {status} {out}")
    # The audit log's other actors are not user names.
    for name in ("api", "discovery"):
        status, out, _ = ctx.call("POST", "/api/v1/users", {"name": name, "role": "admin",
                                                            "password": "0123456789ab"}, session=a)
        check(status == 400 and "reserved" in out["error"], f"POST user {name}: {status} {out}")
    # The last enabled admin stays.
    for method, body in (("PATCH", {"role": "operator"}), ("PATCH", {"disabled": True}),
                         ("DELETE", None)):
        before = ctx.snapshot()
        status, out, _ = ctx.call(method, "/api/v1/users/admin1", body, session=a)
        check(status == 409 and "last enabled admin" in out["error"],
              f"{method} last admin {body}: {status} {out}")
        check(ctx.snapshot() == before, "the refused change changed something")
    status, out, _ = ctx.call("PATCH", "/api/v1/users/admin2", {"role": "admin"}, session=a)
    check(status == 200 and out["role"] == "admin", f"PATCH role: {status} {out}")
    # A new password ends the user's sessions.
    s2 = ctx.login("admin2")
    PASSWORDS["admin2"] = "changed-admin-pw-22"
    status, out, _ = ctx.call("PATCH", "/api/v1/users/admin2", {"password": PASSWORDS["admin2"]},
                              session=a)
    check(status == 200 and "password" not in json.dumps(out), f"PATCH password: {status} {out}")
    status, out, _ = ctx.call("GET", "/api/v1/session", session=s2)
    check(status == 401, f"the session after a password change: {status} {out}")
    s2 = ctx.login("admin2")
    # With two admins, admin2 may demote admin1 and back.
    status, out, _ = ctx.call("PATCH", "/api/v1/users/admin1", {"role": "operator"}, session=s2)
    check(status == 200, f"demote with another admin: {status} {out}")
    status, out, _ = ctx.call("GET", "/api/v1/users", session=a)
    check(status == 403, f"a demoted admin's session keeps admin rights: {status} {out}")
    status, out, _ = ctx.call("PATCH", "/api/v1/users/admin1", {"role": "admin"}, session=s2)
    check(status == 200, f"promote back: {status} {out}")
    for bad in ({}, {"role": "root"}, {"password": "short"}, {"disabled": "yes"}, {"name": "x"}):
        status, out, _ = ctx.call("PATCH", "/api/v1/users/admin2", bad, session=a)
        check(status == 400, f"PATCH {bad}: {status} {out}")
    status, out, _ = ctx.call("PATCH", "/api/v1/users/ghost", {"role": "viewer"}, session=a)
    check(status == 404, f"PATCH unknown user: {status} {out}")
    status, out, _ = ctx.call("DELETE", "/api/v1/users/admin2", session=a)
    check(status == 200, f"DELETE admin2: {status} {out}")
    check(ctx.sql("SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id WHERE "
                  "u.name = 'admin2'") == [("0",)], "the deleted user's sessions")
    status, out, _ = ctx.call("GET", "/api/v1/session", session=s2)
    check(status == 401, f"a deleted user's session: {status} {out}")


def test_logout(ctx):
    s = ctx.login("op1")
    status, out, hdrs = ctx.call("DELETE", "/api/v1/session", session=s)
    check(status == 200, f"logout: {status} {out}")
    cleared = [parse_set_cookie(v) for v in hdrs.get_all("Set-Cookie") or []]
    check(any(c[0] == "trapline_session" and c[1] == "" and c[2].get("max-age") == "0"
              for c in cleared), f"cookie not cleared: {hdrs.get_all('Set-Cookie')}")
    for method, path, body in (("GET", "/api/v1/session", None), ("GET", "/api/v1/hosts", None),
                               ("POST", "/api/v1/hosts", {"name": "after-logout"})):
        status, out, _ = ctx.call(method, path, body, session=s)
        check(status == 401, f"{method} {path} after logout: {status} {out}")
    check(ctx.sql("SELECT count(*) FROM audit_log WHERE action = 'session.logout' AND actor = "
                  "'op1'") == [("1",)], "audit row for the logout")
    # Sessions end by themselves: idle too long (12 h by default), or past their absolute end.
    idle, old = ctx.login("op1"), ctx.login("op1")

    def token_hash(sess):  # what the registry keeps: BLAKE2b-256 of the cookie's token
        return hashlib.blake2b(sess.cookie.encode(), digest_size=32).hexdigest()
    check(ctx.sql(f"SELECT count(*) FROM sessions WHERE token_hash IN ('{token_hash(idle)}', "
                  f"'{token_hash(old)}')") == [("2",)], "sessions by token hash")
    ctx.sql(f"UPDATE sessions SET last_seen = now() - interval '12 hours 1 minute' WHERE "
            f"token_hash = '{token_hash(idle)}'")
    ctx.sql(f"UPDATE sessions SET expires_at = now() - interval '1 second' WHERE "
            f"token_hash = '{token_hash(old)}'")
    for s2, why in ((idle, "idle 12 h"), (old, "past expires_at")):
        status, out, _ = ctx.call("GET", "/api/v1/hosts", session=s2)
        check(status == 401, f"a session {why}: {status} {out}")


def test_disabled_user(ctx):
    a, v = ctx.sessions["admin1"], ctx.sessions["view1"]
    status, _, _ = ctx.call("GET", "/api/v1/hosts", session=v)
    check(status == 200, "viewer session before")
    status, out, _ = ctx.call("PATCH", "/api/v1/users/view1", {"disabled": True}, session=a)
    check(status == 200 and out["disabled"] is True, f"disable view1: {status} {out}")
    t0 = time.monotonic()
    status, out, _ = ctx.call("GET", "/api/v1/hosts", session=v)
    check(status == 401, f"disabled user's session: {status} {out}")
    say(f"the disabled user's session refused {time.monotonic() - t0:.3f}s after the change")
    # A disabled user's right password gets the wrong password's answer (it does not tell a
    # guesser that the password was right); the reason is in the audit log.
    wrong, _ = ctx.login("view1", "not-the-password", want=401)
    right, _ = ctx.login("view1", PASSWORDS["view1"], want=401)
    check(right == wrong, f"login disabled user: {right} vs wrong password {wrong}")
    check(("disabled",) in ctx.sql("SELECT after->>'reason' FROM audit_log WHERE action = "
                                   "'session.login_failed' AND actor = 'view1'"),
          "audit reason 'disabled'")
    # By the CLI, for a session that exists.
    o = ctx.login("op1")
    cp = user_cli(ctx, "disable", "op1", "--registry", ctx.registry)
    check(cp.returncode == 0, f"user disable: {cp.stderr}")
    status, out, _ = ctx.call("GET", "/api/v1/hosts", session=o)
    check(status == 401, f"session after `trapline user disable`: {status} {out}")
    # A new password by the CLI, then the user logs in with it.
    PASSWORDS["admin1"] = "admin-pw-rotated-41"
    cp = user_cli(ctx, "passwd", "admin1", "--registry", ctx.registry, password=PASSWORDS["admin1"])
    check(cp.returncode == 0, f"user passwd: {cp.stderr}")
    ctx.sessions["admin1"] = ctx.login("admin1")


def test_audit_actors(ctx):
    rows = ctx.sql("SELECT actor, action, object_id FROM audit_log ORDER BY id")
    acts = {(r[0], r[1]) for r in rows}
    for want in (("op1", "host.create"), ("admin1", "host.create"), ("api", "host.create"),
                 ("admin1", "user.create"), ("admin1", "user.update"), ("admin2", "user.update"),
                 ("admin1", "user.delete"), ("op1", "session.logout"), ("admin1", "session.login"),
                 ("admin1", "session.login_failed")):
        check(want in acts, f"no audit row {want}: {sorted(acts)}")
    say(f"{len(rows)} audit rows, actions {sorted({r[1] for r in rows})}")
    text = json.dumps(ctx.sql("SELECT actor, action, object_id, before::text, after::text FROM "
                              "audit_log"))
    log = ctx.coord.stderr()
    for pw in list(PASSWORDS.values()) + ["not-the-password"]:
        check(pw not in text, f"a password in the audit log: {pw}")
        check(pw not in log, f"a password in the coordinator's log: {pw}")
    for s in ctx.sessions.values():
        check(s.cookie not in log and s.csrf not in log, "a token in the coordinator's log")


def test_secure_cookie(ctx):
    port = free_port()
    path = ctx.write_config("co2", port, "secure_cookies = true\nsession_idle = 3600\n")
    co2 = BackgroundProc([trapline_bin(), "coordinator", "--config", path], ctx.tmp, "co2")
    try:
        wait_until(lambda: "standing by" in co2.stderr() or not co2.alive(), 20, "co2 to stand by")
        check(co2.alive(), co2.output())
        s = ctx.login("admin1", port=port)
        check("secure" in s.attrs and "httponly" in s.attrs, f"cookie flags {s.attrs}")
        status, out, _ = ctx.call("GET", "/api/v1/session", session=s, port=port)
        check(status == 200 and out["user"] == "admin1", f"{status} {out}")
        # Sessions live in the registry: the other coordinator knows it too.
        status, out, _ = ctx.call("GET", "/api/v1/session", session=s)
        check(status == 200, f"the session on the other coordinator: {status} {out}")
    finally:
        co2.popen.send_signal(signal.SIGTERM)
        co2.wait(10)


def login_from(ctx, source, user, password):
    """POST /api/v1/session from the loopback address `source` (the coordinator listens on
    127.0.0.1; Linux routes all of 127/8 to lo). (status, JSON, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", ctx.port, timeout=20,
                                      source_address=(source, 0))
    try:
        conn.request("POST", "/api/v1/session", json.dumps({"user": user, "password": password}),
                     {"Content-Type": "application/json"})
        res = conn.getresponse()
        return res.status, json.loads(res.read().decode() or "{}"), res.headers
    finally:
        conn.close()


def test_rate_limit(ctx):
    # Last: it blocks logins from 127.0.0.1 for a while. Earlier checks' failed logins may
    # still count (same address, same minute): the block comes after at most 5 failures.
    statuses = []
    for i in range(6):
        out, hdrs = ctx.login("admin1", "wrong-password-" + str(i), want=None)
        statuses.append(out.get("status") if isinstance(out, dict) else None)
    check(statuses[:1] == [401] and 429 in statuses[:6] and
          statuses[statuses.index(429):] == [429] * (6 - statuses.index(429)),
          f"statuses of 6 wrong passwords: {statuses}")
    out, hdrs = ctx.login("admin1", PASSWORDS["admin1"], want=429)
    retry = hdrs.get("Retry-After")
    check(retry is not None and 1 <= int(retry) <= 3600, f"Retry-After {retry}")
    say(f"wrong passwords: {statuses}; then the right one: 429 {out['error']} (Retry-After {retry})")
    # Another user from the same address is blocked too (per source address).
    ctx.login("view1", PASSWORDS["view1"], want=429)
    # The user name's block stops only addresses that failed for it: 5 wrong passwords for
    # admin1 from 127.0.0.3 (loopback addresses bound as the client's source) block admin1
    # there; an address that then guesses wrong once (127.0.0.4) is stopped for admin1 too,
    # even with the right password; from a clean address (127.0.0.2) the right password
    # signs in: a guesser cannot lock admin1 out.
    guesses = [login_from(ctx, "127.0.0.3", "admin1", f"wrong-password-3{i}")[0] for i in range(5)]
    check(guesses[0] == 401 and guesses[-1] == 429, f"5 wrong passwords from 127.0.0.3: {guesses}")
    status, out, _ = login_from(ctx, "127.0.0.3", "admin1", PASSWORDS["admin1"])
    check(status == 429, f"the right password from 127.0.0.3: {status} {out}")
    status, out, _ = login_from(ctx, "127.0.0.4", "admin1", "wrong-password-4")
    check(status == 401, f"a clean address's wrong password: {status} {out}")
    status, out, _ = login_from(ctx, "127.0.0.4", "admin1", PASSWORDS["admin1"])
    check(status == 429, f"the right password after a wrong one while blocked: {status} {out}")
    status, out, _ = login_from(ctx, "127.0.0.4", "view1", "wrong-password-4")
    check(status == 401, f"127.0.0.4 for another user: {status} {out}")
    status, out, hdrs = login_from(ctx, "127.0.0.2", "admin1", PASSWORDS["admin1"])
    check(status == 200 and out.get("user") == "admin1",
          f"the right password from another address while admin1 is blocked: {status} {out}")
    check(ctx.sql("SELECT last_login_source FROM users WHERE name = 'admin1'") == [("127.0.0.2",)],
          "the login came from 127.0.0.2")
    # Sign-ins in progress are capped (2 password checks per address): the others are told
    # to retry (503, Retry-After: 1), not that logins failed.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: login_from(ctx, "127.0.0.5", "view1", PASSWORDS["view1"]),
                                range(8)))
    codes = sorted(a[0] for a in answers)
    busy = [a for a in answers if a[0] == 503]
    check(set(codes) <= {200, 401, 503} and busy and all(
        a[2].get("Retry-After") == "1" and a[1]["error"].startswith("busy") for a in busy),
        f"8 sign-ins at once from one address: {[(a[0], a[1]) for a in answers]}")
    say(f"8 sign-ins at once from one address: {codes} ({busy[0][1]['error']})")
    say(f"admin1 from 127.0.0.3: {guesses}, then 429; 127.0.0.4: 401, then 429 with the right "
        "password; 127.0.0.2: signed in (200)")
    # A session made before still works.
    status, _, _ = ctx.call("GET", "/api/v1/session", session=ctx.sessions["admin1"])
    check(status == 200, "an existing session after the block")


if __name__ == "__main__":
    sys.exit(run_checks([test_user_cli, test_login, test_no_session, test_roles, test_csrf,
                         test_injection, test_users_api, test_logout, test_disabled_user,
                         test_audit_actors, test_secure_cookie, test_rate_limit],
                        setup=setup, teardown=teardown, limit_s=120))
