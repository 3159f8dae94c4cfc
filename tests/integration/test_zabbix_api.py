"""zabbix-sync's Zabbix API client (zabbix-sync/api_client.cc) against a real Zabbix 6.0
frontend, through tests/tools/zabbix_api_driver (one ZabbixStack for the file).

  test_login_and_get       version detected, user.login, get calls whose results equal what the
                           harness's own client reads; calls counted per method
  test_concurrent          20 calls fired at once on one ApiClient: all answered, over several
                           connections at the same time
  test_api_error           an API error reply surfaces Zabbix's message and data, exit 1
  test_wrong_password      exit 1 with Zabbix's "Incorrect user name or password ..."; the
                           password is printed nowhere
  test_wrong_url           a closed port (retried, then "Couldn't connect"), a frontend path
                           without the API (HTTP 404), the login page (HTTP 200 HTML): "not a
                           Zabbix API at <url>"
  test_api_token           token.create + token.generate: the token works (6.0: in "auth"), no
                           user.login; a wrong token is refused without being printed
  test_session_renewed     the session ends between two calls: the client logs in again once
  test_no_credentials      apiinfo.version needs no login; host.get without one is refused
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Failure, check, fmt_argv, make_tmp, run_checks, say  # noqa: E402
from harness import HOST, ZabbixStack, free_port  # noqa: E402

PASSWORD_ENV = "TRAPLINE_TEST_ZBX_PASSWORD"
TOKEN_ENV = "TRAPLINE_TEST_ZBX_TOKEN"


def driver_bin() -> str:
    p = os.environ.get("TRAPLINE_ZABBIX_API_DRIVER")
    if not p:
        base = os.environ.get("TRAPLINE_BIN")
        d = os.path.dirname(base) if base else os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
        p = os.path.join(d, "zabbix_api_driver")
    if not os.access(p, os.X_OK):
        raise Failure(f"zabbix_api_driver not found at {p} (build the project)")
    return p


class Run:
    def __init__(self, cp: subprocess.CompletedProcess):
        self.rc = cp.returncode
        self.stdout = cp.stdout
        self.stderr = cp.stderr
        self.lines = []
        for line in cp.stdout.splitlines():
            if line.strip():
                self.lines.append(json.loads(line))

    def describe(self) -> str:
        return (f"exit {self.rc}\n--- stdout ---\n{self.stdout.rstrip()}\n--- stderr ---\n"
                f"{self.stderr.rstrip()}\n---")

    def results(self) -> list:
        return [(x["method"], x["result"]) for x in self.lines if "result" in x and "i" not in x]

    def last(self, key: str):
        for x in reversed(self.lines):
            if key in x:
                return x
        raise Failure(f"no line with {key!r}: {self.describe()}")


def driver(url: str, *args, password=None, token=None, user="Admin", timeout=60) -> Run:
    argv = [driver_bin(), "--url", url]
    env = dict(os.environ)
    if password is not None:
        argv += ["--user", user, "--password-env", PASSWORD_ENV]
        env[PASSWORD_ENV] = password
    if token is not None:
        argv += ["--token-env", TOKEN_ENV]
        env[TOKEN_ENV] = token
    argv += [a if isinstance(a, str) else json.dumps(a) for a in args]
    say(f"$ {fmt_argv(argv)}")
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                            stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{fmt_argv(argv)} hangs (>{timeout}s): {e.stdout!r} {e.stderr!r}") from None
    return Run(cp)


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("zabbix-api")
        self.z = ZabbixStack()
        self.z.start()

    @property
    def url(self) -> str:
        return self.z.frontend_url


def setup():
    return Ctx()


def teardown(ctx):
    ctx.z.close()


def error_line(run: Run) -> str:
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("error: ")]
    check(len(lines) == 1, f"expected one 'error: ' line on stderr: {run.describe()}")
    return lines[0]


# --------------------------------------------------------------------------------------------


def test_login_and_get(ctx):
    z = ctx.z
    groups_q = {"output": ["groupid", "name"], "filter": {"name": ["Linux servers",
                                                                   "Zabbix servers"]}}
    r = driver(ctx.url, "apiinfo.version", {}, "hostgroup.get", groups_q,
               "host.get", {"output": ["hostid", "host"]}, password=z.password)
    check(r.rc == 0, r.describe())
    check(r.lines[0] == {"connected": {"version": z.version}},
          f"first line should say version {z.version}: {r.describe()}")
    res = r.results()
    check([m for m, _ in res] == ["apiinfo.version", "hostgroup.get", "host.get"], r.describe())
    check(res[0][1] == z.version, f"apiinfo.version: {res[0][1]!r}")
    want_groups = sorted(z.api("hostgroup.get", groups_q), key=lambda g: g["groupid"])
    check(sorted(res[1][1], key=lambda g: g["groupid"]) == want_groups,
          f"hostgroup.get: {res[1][1]} != {want_groups}")
    want_hosts = z.api("host.get", {"output": ["hostid", "host"]})
    check(sorted(res[2][1], key=lambda h: h["hostid"]) ==
          sorted(want_hosts, key=lambda h: h["hostid"]), f"host.get: {res[2][1]}")
    counts = r.last("calls")
    check(counts["calls"] == 5 and counts["calls_by_method"] ==
          {"apiinfo.version": 2, "user.login": 1, "hostgroup.get": 1, "host.get": 1},
          f"calls: connect = apiinfo.version + user.login, then the three: {counts}")
    check(r.stderr.strip() == "", f"nothing on stderr expected: {r.describe()}")
    say(f"Zabbix {z.version}: logged in, {len(res)} calls answered, counts {counts}")


def test_concurrent(ctx):
    z = ctx.z
    n = 20
    q = {"output": ["groupid", "name"], "sortfield": "groupid"}
    want = z.api("hostgroup.get", q)
    r = driver(ctx.url, "--concurrent", str(n), "hostgroup.get", q, password=z.password)
    check(r.rc == 0, r.describe())
    answers = [x for x in r.lines if "i" in x]
    check(sorted(x["i"] for x in answers) == list(range(n)),
          f"every call answered once: {r.describe()}")
    check(all(x.get("result") == want for x in answers),
          f"every answer equals the harness's hostgroup.get: {r.describe()}")
    s = r.last("concurrent")
    check(s["answered"] == n and s["failed"] == 0, f"summary: {s}")
    check(s["max_in_flight"] == n, f"all {n} calls should be handed to libcurl at once: {s}")
    check(s["max_sockets"] >= 2, f"several connections should be open at once: {s}")
    say(f"{n} concurrent hostgroup.get: all answered in {s['seconds']:.2f}s, up to "
        f"{s['max_sockets']} connections at once (max_connections 8; php -S has "
        f"{z.php_workers} workers)")


def test_api_error(ctx):
    z = ctx.z
    r = driver(ctx.url, "host.create", {"host": "api-error-host"}, password=z.password)
    check(r.rc == 1, f"exit 1 expected: {r.describe()}")
    line = error_line(r)
    check("Rejected" in line and "host.create: Invalid params." in line and
          'Host "api-error-host" cannot be without host group.' in line,
          f"message and data of Zabbix's error expected: {line!r}")
    say(f"API error: {line}")
    r = driver(ctx.url, "nosuch.method", {}, password=z.password)
    check(r.rc == 1, r.describe())
    line = error_line(r)
    check('nosuch.method: Method not found. Incorrect API "nosuch".' in line, line)
    say(f"unknown method: {line}")
    # an API error is not retried: one call
    r = driver(ctx.url, "--retries", "3", "host.create", {"host": "x"}, "apiinfo.version", {},
               password=z.password)
    check(r.rc == 1 and "Retry" not in r.stderr and "retry" not in r.stderr,
          f"no retry for an API error: {r.describe()}")


def test_wrong_password(ctx):
    z = ctx.z
    pw = "Wr0ng-pa55word-4-test"
    # one failed attempt only: Zabbix blocks the account after 5 in a row
    r = driver(ctx.url, "apiinfo.version", {}, password=pw)
    check(r.rc == 1, f"exit 1 expected: {r.describe()}")
    line = error_line(r)
    check("Incorrect user name or password or account is temporarily blocked." in line,
          f"Zabbix's own message expected: {line!r}")
    check(pw not in r.stdout and pw not in r.stderr, f"the password was printed: {r.describe()}")
    check(r.stdout.strip() == "", f"nothing on stdout: {r.describe()}")
    say(f"wrong password: {line}")
    # the right one works again at once (one failure does not block the account)
    r = driver(ctx.url, "apiinfo.version", {}, password=z.password)
    check(r.rc == 0, r.describe())


def test_wrong_url(ctx):
    z = ctx.z
    port = free_port()
    url = f"http://{HOST}:{port}/"
    t0 = time.monotonic()
    pw = "Cl0sed-port-pa55word"
    r = driver(url, "--retries", "2", "--retry-base", "0.1", "apiinfo.version", {}, password=pw)
    took = time.monotonic() - t0
    check(r.rc == 1, r.describe())
    line = error_line(r)
    check(f"http://{HOST}:{port}/api_jsonrpc.php" in line and "Couldn't connect" in line and
          "(3 attempts)" in line and "Unavailable" in line,
          f"a refused connection, named, after 3 attempts: {line!r}")
    check(r.stderr.count("retry ") == 2, f"two retries logged: {r.describe()}")
    check(0.25 <= took < 20, f"backoff 0.1 s + 0.2 s expected, took {took:.2f}s")
    check(pw not in r.stdout + r.stderr, "password printed")
    say(f"closed port ({took:.2f}s): {line}")

    url = ctx.url + "nonexistent"
    r = driver(url, "apiinfo.version", {}, password=z.password)
    check(r.rc == 1, r.describe())
    line = error_line(r)
    want = (f"ProtocolError: not a Zabbix API at {ctx.url}nonexistent/api_jsonrpc.php: "
            f'apiinfo.version: HTTP 404, not a JSON-RPC reply: an HTML page titled '
            f'"404 Not Found"')
    check(line.startswith("error: " + want), f"expected {want!r}, got {line!r}")
    check("retry" not in r.stderr, f"a 404 is not retried: {r.describe()}")
    say(f"frontend path without the API: {line}")

    r = driver(ctx.url + "index.php", "apiinfo.version", {}, password=z.password)
    check(r.rc == 1, r.describe())
    line = error_line(r)
    check(f"not a Zabbix API at {ctx.url}index.php: apiinfo.version: HTTP 200" in line and
          "an HTML page titled" in line, f"the login page is not the API: {line!r}")
    say(f"the frontend's login page: {line}")

    r = driver("ftp://127.0.0.1/", "apiinfo.version", {})
    check(r.rc == 1 and "InvalidArgument" in error_line(r), r.describe())


def test_api_token(ctx):
    z = ctx.z
    tokenid = z.api("token.create", {"name": "trapline-api-test", "userid": "1"})["tokenids"][0]
    token = z.api("token.generate", [tokenid])[0]["token"]
    say(f"API token {tokenid} generated ({len(token)} characters)")
    r = driver(ctx.url, "host.get", {"output": ["hostid", "host"]}, token=token)
    check(r.rc == 0, r.describe())
    check(r.lines[0] == {"connected": {"version": z.version}}, r.describe())
    want = z.api("host.get", {"output": ["hostid", "host"]})
    check(r.results() == [("host.get", want)], f"host.get with the token: {r.describe()}")
    counts = r.last("calls")["calls_by_method"]
    check(counts == {"apiinfo.version": 1, "host.get": 2},
          f"no user.login with a token; host.get once to check it, once asked: {counts}")
    check(token not in r.stdout + r.stderr, "the token was printed")
    # the token's last use is recorded by Zabbix: it really authenticated the calls
    lastaccess = z.api("token.get", {"tokenids": [tokenid], "output": ["lastaccess"]})
    check(int(lastaccess[0]["lastaccess"]) > 0, f"token lastaccess: {lastaccess}")

    bad = token[:-8] + "00000000"
    r = driver(ctx.url, "host.get", {}, token=bad)
    check(r.rc == 1, r.describe())
    line = error_line(r)
    # 6.0 answers "Not authorized." to an unknown 64-character API token ("Session terminated,
    # re-login, please." to an unknown 32-character session id)
    check("the configured token is not accepted: host.get: Invalid params. Not authorized."
          in line, f"a wrong token is refused clearly: {line!r}")
    check(bad not in r.stdout + r.stderr, f"the wrong token was printed: {r.describe()}")
    say(f"wrong token: {line}")


def test_session_renewed(ctx):
    z = ctx.z
    argv_calls = ["--sleep", "3", "hostgroup.get", {"output": ["groupid"], "limit": 1},
                  "hostgroup.get", {"output": ["groupid"], "limit": 1}]

    import threading
    result = {}

    def run():
        result["run"] = driver(ctx.url, *argv_calls, password=z.password)
    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)  # logged in, first call answered, sleeping
    n = z.pg.psql_value("WITH d AS (DELETE FROM sessions WHERE userid = 1 RETURNING 1) "
                        "SELECT count(*) FROM d", db="zabbix")
    say(f"ended {n} sessions of Admin while the driver sleeps")
    t.join(60)
    r = result["run"]
    check(r.rc == 0, f"the second call should succeed after a new login: {r.describe()}")
    counts = r.last("calls")["calls_by_method"]
    check(counts == {"apiinfo.version": 1, "user.login": 2, "hostgroup.get": 3},
          f"one renewal: user.login twice, the refused hostgroup.get sent again: {counts}")
    say(f"session renewed: {counts}")


def test_no_credentials(ctx):
    z = ctx.z
    r = driver(ctx.url, "apiinfo.version", {})
    check(r.rc == 0 and r.results() == [("apiinfo.version", z.version)], r.describe())
    r = driver(ctx.url, "host.get", {})
    check(r.rc == 1 and "Not authorized." in error_line(r), r.describe())


if __name__ == "__main__":
    sys.exit(run_checks([test_login_and_get, test_concurrent, test_api_error,
                         test_wrong_password, test_wrong_url, test_api_token,
                         test_session_renewed, test_no_credentials],
                        setup=setup, teardown=teardown))
