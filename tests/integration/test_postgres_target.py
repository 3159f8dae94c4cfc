"""PostgresTarget (collector/postgres_target.cc) against real PostgreSQL servers, through
tests/tools/postgres_target_driver (one PostgresTarget on a loop, JSON lines out).

  test_values_match_server     backends, database size, max_connections, connections as the
                               server's own views say; databases discovered; application_name
  test_size_interval           database sizes only every size_interval (first tick, then about
                               every 4th at 1 s / 0.25 s; the default: once a minute), the rest
                               every tick; the server backend's CPU per tick with and without
                               (printed); a mistyped option refused
  test_password_sources        password, password file, keyword/value string, PGPASSFILE (.pgpass
                               untouched when no password is configured)
  test_auth_failure            wrong password: one-line "password authentication failed", exit 1,
                               retries with backoff (no storm)
  test_refused_and_multi_host  refused: "Connection refused"; a dead host first in a multi-host
                               URI: libpq moves to the next socket and the target follows it
  test_unsupported_version     a server saying 11.5: "unsupported PostgreSQL version 11.5",
                               backoff between attempts
  test_sslmode                 sslmode passed through: require against a plain server fails
                               clearly; require and verify-full against a TLS server work, and
                               pg_stat_ssl shows the session encrypted
  test_without_pg_monitor      a role without pg_monitor: warnings, the rest delivered; SELECT
                               revoked on pg_stat_replication: the tick's one statement fails
                               (a warning), then that statement fails alone, the
                               databases (the statement after it) are still delivered
  test_server_restart          stop + start, then SIGKILL + start on the same port: connection
                               lost, reconnect within the backoff, ticks resume
  test_stuck_statements        pg_database locked longer than a tick may take: tick deadline,
                               connect deadline, no crash, ticks resume, no pile-up of backends
  test_statement_timeout       a statement stuck on a lock is cancelled by the server's
                               statement_timeout: a warning, the rest delivered, no reconnect
  test_probe_cli               `trapline probe postgresql://...`: entities, values, auth error
  test_memory_per_connection   VmRSS over 200 connections, targets vs bare libpq connections
"""

import json
import os
import pwd
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    BackgroundProc, Failure, check, describe, fmt_argv, make_tmp, run_checks, say, trapline,
    wait_until)
from harness import HOST, PostgresServer, free_port  # noqa: E402

SUPER_PW = "super-pw"
MON_PW = "mon pw'x"  # a space and a quote: passed as a value, never spliced into a string
PLAIN_PW = "plain-pw"
# The database sizes in every tick (the default asks them once a minute), for the checks that
# read them from the last tick.
EVERY_TICK = ("--option", "size_interval=0")


def driver_bin() -> str:
    p = os.environ.get("TRAPLINE_PG_DRIVER")
    if not p:
        base = os.environ.get("TRAPLINE_BIN")
        d = os.path.dirname(base) if base else os.path.join(
            os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
        p = os.path.join(d, "postgres_target_driver")
    if not os.access(p, os.X_OK):
        raise Failure(f"postgres_target_driver not found at {p} (build the project)")
    return p


def parse_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line:
            out.append(json.loads(line))
    return out


class Run:
    """The JSON lines of one driver run, split by kind."""

    def __init__(self, lines, rc=None, stderr=""):
        self.lines = lines
        self.rc = rc
        self.stderr = stderr
        self.states = [x for x in lines if "state" in x]
        self.ticks = [x for x in lines if "tick" in x]
        self.entities = {(x["entity"], x["name"]) for x in lines if "entity" in x and "key" not in x}
        self.warnings = [x["warning"] for x in lines if "warning" in x]

    def readings_of_tick(self, n: int) -> dict:
        """{key: value} of the n-th delivered tick (1-based; -1: the last)."""
        groups, cur = [], {}
        for x in self.lines:
            if "key" in x:
                cur[x["key"]] = x["value"]
            elif "tick" in x:
                groups.append(cur)
                cur = {}
        check(groups, lambda: f"no tick delivered; lines: {self.lines[:20]} stderr: {self.stderr}")
        return groups[n - 1] if n > 0 else groups[n]

    def failures(self) -> list[str]:
        return [s["error"] for s in self.states if s["state"] == "failed"]

    def describe(self) -> str:
        return (f"exit {self.rc}; states {self.states}; {len(self.ticks)} ticks; warnings "
                f"{self.warnings[:10]}; stderr {self.stderr[-1500:]!r}")


def run_driver(uri: str, *args, seconds: float = 2.5, env=None, timeout: float = 60) -> Run:
    argv = [driver_bin(), uri, "--seconds", str(seconds)] + [str(a) for a in args]
    say(f"$ {fmt_argv(argv)}")
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)
    return Run(parse_lines(cp.stdout), cp.returncode, cp.stderr)


class Background:
    """A driver run in the background; lines() reads what it printed so far."""

    def __init__(self, ctx, uri: str, *args, seconds: float, name: str):
        argv = [driver_bin(), uri, "--seconds", str(seconds)] + [str(a) for a in args]
        self.proc = BackgroundProc(argv, ctx.tmp, name)

    def run(self) -> Run:
        return Run(parse_lines(self.proc.stdout()), None, self.proc.stderr())

    def finish(self, timeout: float = 60) -> Run:
        rc = self.proc.wait(timeout)
        r = self.run()
        r.rc = rc
        return r


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("pg-target")
        os.chmod(self.tmp, 0o755)
        self.pg = PostgresServer(password=SUPER_PW)
        self.pg.start()
        self.pg.create_role("monitor", password=MON_PW)
        self.pg.psql("GRANT pg_monitor TO monitor")
        self.pg.create_role("plain", password=PLAIN_PW)
        self.pg.create_db("app1")
        self.pg.create_db("app2")
        self.pwfile = os.path.join(self.tmp, "monitor.pw")
        with open(self.pwfile, "w") as f:
            f.write(MON_PW + "\n")
        os.chmod(self.pwfile, 0o600)

    def uri(self, user="monitor", db="postgres", port=None, query="") -> str:
        return f"postgresql://{user}@{HOST}:{port or self.pg.port}/{db}" + (
            "?" + query if query else "")

    def sql(self, q: str, db: str = "postgres"):
        return self.pg.psql(q, db=db)

    def value(self, q: str, db: str = "postgres"):
        return self.pg.psql_value(q, db=db)

    def close(self):
        self.pg.close()


def setup():
    return Ctx()


def teardown(ctx):
    ctx.close()


# --------------------------------------------------------------------------------------------


def hold_sessions(ctx, db: str, n: int, seconds: int) -> list[subprocess.Popen]:
    """n sessions in `db` that stay for `seconds` (psql running pg_sleep)."""
    env = dict(os.environ, PGPASSWORD=SUPER_PW)
    procs = []
    for _ in range(n):
        procs.append(subprocess.Popen(
            [f"{ctx.pg.bindir}/psql", "-X", "-q", "-h", HOST, "-p", str(ctx.pg.port), "-U",
             "postgres", "-d", db, "-c", f"SELECT pg_sleep({seconds})"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=env))
    return procs


def test_values_match_server(ctx):
    sessions = hold_sessions(ctx, "app1", 3, 30)
    try:
        wait_until(lambda: int(ctx.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app1'")) == 3, 10,
            "3 sessions in app1")
        bg = Background(ctx, ctx.uri(), "--password-file", ctx.pwfile, *EVERY_TICK, seconds=4,
                        name="values")
        wait_until(lambda: len(bg.run().ticks) >= 2, 10, "two ticks")
        # The server's own view, right after a tick.
        backends_app1 = int(ctx.value(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'app1'"))
        clients = int(ctx.value(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"))
        size_app1 = int(ctx.value("SELECT pg_database_size('app1')"))
        size_pg = int(ctx.value("SELECT pg_database_size('postgres')"))
        max_conn = int(ctx.value("SHOW max_connections"))
        ours = ctx.sql("SELECT datname, usename FROM pg_stat_activity "
                       "WHERE application_name = 'trapline'")
        r = bg.finish()
        check(r.rc == 0, r.describe)
        got = r.readings_of_tick(-1)
        say(f"server: app1 backends {backends_app1}, client backends {clients}, app1 size "
            f"{size_app1}, max_connections {max_conn}; target: "
            f"{got.get('postgresql.db.backends[app1]')}, "
            f"{got.get('postgresql.connections.total')}, {got.get('postgresql.db.size[app1]')}, "
            f"{got.get('postgresql.connections.max')}")
        check(ours == [("postgres", "monitor")],
              f"one session with application_name trapline, as monitor in postgres: {ours}")
        check(abs(got["postgresql.db.backends[app1]"] - backends_app1) <= 2,
              f"db.backends[app1] {got['postgresql.db.backends[app1]']} vs {backends_app1}")
        check(abs(got["postgresql.connections.total"] - clients) <= 2,
              f"connections.total {got['postgresql.connections.total']} vs {clients}")
        check(got["postgresql.db.size[app1]"] == size_app1,
              f"db.size[app1] {got['postgresql.db.size[app1]']} vs pg_database_size {size_app1}")
        check(abs(got["postgresql.db.size[postgres]"] - size_pg) <= 256 * 1024,
              f"db.size[postgres] {got['postgresql.db.size[postgres]']} vs {size_pg}")
        check(got["postgresql.connections.max"] == max_conn == 300,
              f"connections.max {got['postgresql.connections.max']} vs {max_conn}")
        dbs = {n for k, n in r.entities if k == "database"}
        check(dbs == {"postgres", "app1", "app2"}, f"database entities {dbs}")
        check(not r.warnings, f"no warnings with pg_monitor: {r.warnings}")
        check(len(r.ticks) >= 3, f"a tick a second for 4 s: {len(r.ticks)}")
        check([s["state"] for s in r.states] == ["connected"], r.describe)
    finally:
        for p in sessions:
            p.kill()
            p.wait()
        ctx.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = 'app1' AND pid <> pg_backend_pid()")


def test_password_sources(ctx):
    r = run_driver(ctx.uri(db="app1"), "--password", MON_PW, seconds=1.5)
    check(r.rc == 0 and r.ticks, r.describe)
    kv = f"host={HOST} port={ctx.pg.port} user=monitor dbname=app2 sslmode=disable"
    r = run_driver(kv, "--password-file", ctx.pwfile, seconds=1.5)
    check(r.rc == 0 and r.ticks, lambda: "keyword/value string: " + r.describe())
    # No password configured: libpq's own sources (PGPASSFILE here) still work.
    pgpass = os.path.join(ctx.tmp, "pgpass")
    with open(pgpass, "w") as f:
        f.write(f"{HOST}:{ctx.pg.port}:*:monitor:{MON_PW.replace(chr(92), chr(92) * 2)}\n")
    os.chmod(pgpass, 0o600)
    r = run_driver(ctx.uri(), seconds=1.5, env={"PGPASSFILE": pgpass})
    check(r.rc == 0 and r.ticks, lambda: "PGPASSFILE: " + r.describe())
    # A configured password wins over .pgpass.
    r = run_driver(ctx.uri(), "--password", "wrong", seconds=1.5, env={"PGPASSFILE": pgpass})
    check(r.rc == 1, lambda: "configured wrong password must win: " + r.describe())
    missing = os.path.join(ctx.tmp, "no-such-file")
    r = run_driver(ctx.uri(), "--password-file", missing, seconds=1)
    check(r.rc == 1 and f"password_file {missing}: cannot open" in r.stderr, r.describe)


def test_auth_failure(ctx):
    r = run_driver(ctx.uri(), "--password", "wrong", "--reconnect-base", "0.5",
                   "--reconnect-max", "8", seconds=4.2)
    check(r.rc == 1, r.describe)
    errs = r.failures()
    check(errs, r.describe)
    for e in errs:
        check('password authentication failed for user "monitor"' in e and "\n" not in e,
              f"one-line auth error: {e!r}")
    check('password authentication failed for user "monitor"' in r.stderr, r.describe)
    # base 0.5 s doubling (+-20%): attempts at about 0, 0.5, 1.5, 3.5 s.
    check(3 <= len(errs) <= 5, lambda: f"{len(errs)} attempts in 4.2 s (backoff?): {r.states}")
    check(r.states[-1]["retries"] == len(errs), r.describe)


def test_refused_and_multi_host(ctx):
    dead = free_port()
    r = run_driver(ctx.uri(port=dead), "--password", MON_PW, "--reconnect-base", "5", seconds=1)
    check(r.rc == 1 and r.failures() and "Connection refused" in r.failures()[0], r.describe)
    # libpq tries the dead port, closes that socket, then opens another to the live one.
    uri = f"postgresql://monitor@{HOST}:{dead},{HOST}:{ctx.pg.port}/postgres"
    r = run_driver(uri, "--password", MON_PW, seconds=2)
    check(r.rc == 0 and len(r.ticks) >= 2, lambda: "multi-host: " + r.describe())
    check([s["state"] for s in r.states] == ["connected"], r.describe)


class FakeOldServer:
    """Speaks just enough of the protocol to say server_version 11.5: refuses SSL and GSS
    encryption ('N'), answers the startup packet with AuthenticationOk, ParameterStatus,
    BackendKeyData and ReadyForQuery, then waits for the client to hang up. Counts
    connections."""

    def __init__(self, version="11.5"):
        self.version = version
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _read(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        try:
            c.settimeout(10)
            while True:
                (n,) = struct.unpack("!i", self._read(c, 4))
                body = self._read(c, n - 4)
                (code,) = struct.unpack("!i", body[:4])
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                    c.sendall(b"N")
                    continue
                break
            param = b"server_version\0" + self.version.encode() + b"\0"
            c.sendall(b"R" + struct.pack("!ii", 8, 0) +
                      b"S" + struct.pack("!i", 4 + len(param)) + param +
                      b"K" + struct.pack("!iii", 12, 4242, 1) +
                      b"Z" + struct.pack("!i", 5) + b"I")
            while c.recv(4096):
                pass
        except (EOFError, OSError):
            pass
        finally:
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def test_unsupported_version(ctx):
    fake = FakeOldServer("11.5")
    try:
        r = run_driver(f"postgresql://monitor@{HOST}:{fake.port}/postgres", "--password", "x",
                       "--reconnect-base", "0.5", seconds=3.2)
    finally:
        fake.close()
    check(r.rc == 1, r.describe)
    errs = r.failures()
    check(errs and all(e.startswith("unsupported PostgreSQL version 11.5") for e in errs),
          r.describe)
    check("unsupported PostgreSQL version 11.5" in r.stderr, r.describe)
    # 0, ~0.5, ~1.5 s (+-20%): no reconnect storm.
    check(2 <= fake.connections <= 4, f"{fake.connections} connections in 3.2 s")


def make_cert(dirpath: str) -> tuple[str, str]:
    crt, key = os.path.join(dirpath, "server.crt"), os.path.join(dirpath, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", f"/CN={HOST}", "-addext",
                    f"subjectAltName=IP:{HOST}"], check=True, capture_output=True)
    os.chmod(key, 0o600)
    return crt, key


def test_sslmode(ctx):
    r = run_driver(ctx.uri(query="sslmode=require"), "--password", MON_PW, seconds=1)
    check(r.rc == 1 and r.failures() and
          "server does not support SSL, but SSL was required" in r.failures()[0], r.describe)
    tls = PostgresServer(password=SUPER_PW)
    try:
        certdir = os.path.join(tls.dir, "certs")
        os.makedirs(certdir)
        crt, key = make_cert(certdir)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (certdir, crt, key):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        tls.settings.update({"ssl": "on", "ssl_cert_file": crt, "ssl_key_file": key})
        tls.start()
        tls.create_role("monitor", password=MON_PW)
        tls.psql("GRANT pg_monitor TO monitor")
        uri = f"postgresql://monitor@{HOST}:{tls.port}/postgres?sslmode=require"
        bg = Background(ctx, uri, "--password", MON_PW, seconds=3, name="tls")
        wait_until(lambda: bg.run().ticks, 10, "a tick over TLS")
        ssl = tls.psql("SELECT s.ssl, s.version IS NOT NULL FROM pg_stat_ssl s "
                       "JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'trapline'")
        r = bg.finish()
        check(r.rc == 0, r.describe)
        check(ssl == [("t", "t")], f"pg_stat_ssl of the trapline session: {ssl}")
        # verify-full with our own root certificate: the name (an IP SAN) and chain check out.
        r = run_driver(f"postgresql://monitor@{HOST}:{tls.port}/postgres?sslmode=verify-full"
                       f"&sslrootcert={crt}", "--password", MON_PW, seconds=1.5)
        check(r.rc == 0 and r.ticks, lambda: "verify-full: " + r.describe())
        # verify-full without a root certificate: refused by libpq, one line.
        r = run_driver(f"postgresql://monitor@{HOST}:{tls.port}/postgres?sslmode=verify-full"
                       f"&sslrootcert={os.path.join(ctx.tmp, 'none.crt')}", "--password", MON_PW,
                       seconds=1)
        check(r.rc == 1 and r.failures() and "root certificate file" in r.failures()[0],
              r.describe)
    finally:
        tls.close()


def test_without_pg_monitor(ctx):
    r = run_driver(ctx.uri(user="plain", db="app1"), "--password", PLAIN_PW, *EVERY_TICK,
                   seconds=2.2)
    check(r.rc == 0 and r.ticks, r.describe)
    got = r.readings_of_tick(-1)
    check(any("pg_monitor" in w for w in r.warnings), f"a pg_monitor warning: {r.warnings}")
    for k in ("postgresql.connections.max", "postgresql.db.size[app1]",
              "postgresql.db.backends[app2]", "postgresql.locks.total", "postgresql.uptime"):
        check(k in got, f"{k} delivered without pg_monitor; got {sorted(got)[:80]}")
    # A DBA revokes a view: that statement fails, the statements after it still run.
    # (System views are per database: revoke in the database the target connects to.)
    ctx.sql("REVOKE SELECT ON pg_catalog.pg_stat_replication FROM PUBLIC", db="app1")
    try:
        r = run_driver(ctx.uri(user="plain", db="app1"), "--password", PLAIN_PW, *EVERY_TICK,
                   seconds=2.2)
    finally:
        ctx.sql("GRANT SELECT ON pg_catalog.pg_stat_replication TO PUBLIC", db="app1")
    check(r.rc == 0 and r.ticks, r.describe)
    failed = [w for w in r.warnings if w.startswith("replication")]
    check(failed and "permission denied for view pg_stat_replication" in failed[0],
          f"a warning for the revoked view: {r.warnings}")
    # The one statement per tick failed as a whole: the statements went one by one instead.
    fallback = [w for w in r.warnings if w.startswith("tick query failed")]
    check(fallback and "permission denied for view pg_stat_replication" in fallback[0],
          f"a warning for the failed tick statement: {r.warnings}")
    got = r.readings_of_tick(-1)
    check("postgresql.db.size[app1]" in got and "postgresql.db.commits[app2]" in got,
          f"databases (after replication) still delivered: {sorted(got)}")
    check("postgresql.replication.standbys" not in got, "no standby count from a failed statement")
    check([s["state"] for s in r.states] == ["connected"], r.describe)


def test_server_restart(ctx):
    # --timeout 3: under load, a connect attempt made while the server is coming back can be
    # accepted and then not answered; it is abandoned after the timeout and retried.
    bg = Background(ctx, ctx.uri(), "--password", MON_PW, "--reconnect-base", "0.5",
                    "--reconnect-max", "2", "--timeout", "3", seconds=60, name="restart")
    try:
        wait_until(lambda: len(bg.run().ticks) >= 2, 10, "two ticks")
        for how in ("stop", "kill"):
            n_failed = len(bg.run().failures())
            # Counted before the stop: the target may reconnect before ctx.pg.start() returns
            # (it did in CI), so a count taken after it would wait for one connect too many.
            connects = len([s for s in bg.run().states if s["state"] == "connected"])
            t0 = time.monotonic()
            say(f"{how} the server")
            getattr(ctx.pg, how)()
            wait_until(lambda: len(bg.run().failures()) > n_failed, 10, "connection lost")
            lost = bg.run().failures()[n_failed]
            check("\n" not in lost, f"one line: {lost!r}")
            if how == "stop":
                check("terminating connection due to administrator command" in lost or
                      "server closed the connection" in lost, f"reason: {lost!r}")
            time.sleep(1.5)
            ctx.pg.start()
            up = time.monotonic()
            try:
                wait_until(lambda: len([s for s in bg.run().states if s["state"] == "connected"])
                           > connects, 20, "reconnected")
            except Failure as e:  # say what the target went through meanwhile
                raise Failure(f"{e}\n{bg.run().describe()}") from None
            took = time.monotonic() - up
            ticks = len(bg.run().ticks)
            wait_until(lambda: len(bg.run().ticks) >= ticks + 2, 10, "ticks after restart")
            failed_during = len(bg.run().failures()) - n_failed
            say(f"{how}: lost after {lost!r}; reconnected {took:.1f}s after the server was up; "
                f"{failed_during} failed attempts while down ({time.monotonic() - t0:.1f}s)")
            # The longest backoff (2 s + 20% jitter), plus one attempt that may hang until
            # its 3 s timeout, plus slack for a loaded machine.
            check(took <= 2 * 1.2 + 3 + 1.5,
                  f"reconnect {took:.1f}s after start (max backoff 2 s, timeout 3 s)")
            check(failed_during <= 8, f"{failed_during} attempts while down: a storm?")
        check(bg.proc.alive(), "driver still running")
    finally:
        if ctx.pg.running is False:
            ctx.pg.start()
        bg.proc.kill9()


def test_stuck_statements(ctx):
    bg = Background(ctx, ctx.uri(), "--password", MON_PW, *EVERY_TICK, "--timeout", "2",
                    "--reconnect-base", "0.5", "--reconnect-max", "1", seconds=30, name="stuck")
    locker = None
    try:
        wait_until(lambda: len(bg.run().ticks) >= 2, 10, "two ticks")
        env = dict(os.environ, PGPASSWORD=SUPER_PW)
        locker = subprocess.Popen(
            [f"{ctx.pg.bindir}/psql", "-X", "-q", "-h", HOST, "-p", str(ctx.pg.port), "-U",
             "postgres", "-d", "postgres", "-c",
             "BEGIN; LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE; "
             "SELECT pg_sleep(6); COMMIT;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        t_lock = time.monotonic()
        ticks_before = len(bg.run().ticks)
        locker.wait(20)
        check(locker.returncode == 0, f"locker: {locker.stderr.read()}")
        released = time.monotonic()
        r = bg.run()
        stalls = [e for e in r.failures() if "no reply within 2000 ms" in e or "connect:" in e]
        timeouts = [w for w in r.warnings if "statement timeout" in w]
        say(f"locked {released - t_lock:.1f}s: {len(r.ticks) - ticks_before} ticks, "
            f"failures {r.failures()}, statement-timeout warnings {timeouts[:3]}")
        check(stalls or timeouts, lambda: "the lock went unnoticed: " + r.describe())
        ticks = len(r.ticks)
        wait_until(lambda: len(bg.run().ticks) >= ticks + 2, 15, "ticks after the lock")
        last = bg.run().readings_of_tick(-1)
        check("postgresql.db.size[app1]" in last and "postgresql.uptime" in last,
              f"full data after the lock: {sorted(last)}")
        # Abandoned backends are cancelled by statement_timeout or leave when they find the
        # client gone: no pile-up.
        wait_until(lambda: int(ctx.value("SELECT count(*) FROM pg_stat_activity "
                                         "WHERE application_name = 'trapline'")) == 1, 10,
                   "one trapline session left")
        check(bg.proc.alive(), "driver still running")
    finally:
        if locker and locker.poll() is None:
            locker.kill()
        bg.proc.kill9()


def test_statement_timeout(ctx):
    # timeout 10 s: statement_timeout 8 s. pg_database locked for 9 s: the statement that
    # waits for it is cancelled by the server after 8 s, the others run once the lock is gone,
    # and the tick still ends before its 10 s deadline: a warning, no reconnect.
    bg = Background(ctx, ctx.uri(), "--password", MON_PW, *EVERY_TICK, "--timeout", "10",
                    "--period", "0.2", seconds=30, name="statement-timeout")
    try:
        wait_until(lambda: len(bg.run().ticks) >= 2, 10, "two ticks")
        env = dict(os.environ, PGPASSWORD=SUPER_PW)
        cp = subprocess.run(
            [f"{ctx.pg.bindir}/psql", "-X", "-q", "-h", HOST, "-p", str(ctx.pg.port), "-U",
             "postgres", "-d", "postgres", "-c",
             "BEGIN; LOCK TABLE pg_catalog.pg_database IN ACCESS EXCLUSIVE MODE; "
             "SELECT pg_sleep(9); COMMIT;"], capture_output=True, text=True, env=env, timeout=30)
        check(cp.returncode == 0, f"locker: {cp.stderr}")
        wait_until(lambda: any("statement timeout" in w for w in bg.run().warnings), 5,
                   "a statement-timeout warning")
        r = bg.run()
        say(f"warnings: {sorted(set(r.warnings))}")
        ticks = len(r.ticks)
        wait_until(lambda: len(bg.run().ticks) >= ticks + 2, 10, "ticks after the lock")
        r = bg.run()
        check([s["state"] for s in r.states] == ["connected"],
              lambda: "the connection survived: " + r.describe())
        check("postgresql.db.size[app1]" in r.readings_of_tick(-1), "full data after the lock")
    finally:
        bg.proc.kill9()


def test_size_interval(ctx):
    # The database sizes (pg_database_size(): a stat() of every file of every database) only
    # every size_interval; every other column of the same statement every tick.
    r = run_driver(ctx.uri(), "--password", MON_PW, "--period", "0.25", "--option",
                   "size_interval=1", seconds=3.2)
    check(r.rc == 0 and len(r.ticks) >= 8, r.describe)
    ticks = [r.readings_of_tick(i + 1) for i in range(len(r.ticks))]
    with_size = [i for i, t in enumerate(ticks) if "postgresql.db.size[app1]" in t]
    say(f"size_interval=1, period 0.25: {len(ticks)} ticks, sizes in ticks {with_size}")
    check(with_size and with_size[0] == 0, "the first tick has the sizes")
    check(all(3 <= b - a <= 5 for a, b in zip(with_size, with_size[1:])) and len(with_size) >= 2,
          f"sizes about every 4th tick: {with_size}")
    check(all("postgresql.db.commits[app1]" in t for t in ticks), "db.commits in every tick")
    check(not r.warnings, f"no warnings: {r.warnings}")
    # The default: once a minute, so within a few seconds only the first tick.
    r = run_driver(ctx.uri(), "--password", MON_PW, "--period", "0.25", seconds=2.2)
    ticks = [r.readings_of_tick(i + 1) for i in range(len(r.ticks))]
    check(len(ticks) >= 5 and [i for i, t in enumerate(ticks)
                               if "postgresql.db.size[app1]" in t] == [0],
          f"default: sizes in the first tick only: {r.describe()}")
    # The server's CPU per tick with and without the sizes: its backend, measured by the
    # driver's session from /proc (the server runs here).
    costs = {}
    for interval in ("0", "60"):
        bg = Background(ctx, ctx.uri(), "--password", MON_PW, "--period", "0.1", "--option",
                        f"size_interval={interval}", seconds=20, name=f"size-{interval}")
        try:
            wait_until(lambda: len(bg.run().ticks) >= 3, 10, "three ticks")
            pid = int(ctx.value("SELECT pid FROM pg_stat_activity "
                                "WHERE application_name = 'trapline'"))
            n0, c0 = len(bg.run().ticks), proc_cpu_ms(pid)
            time.sleep(4)
            n1, c1 = len(bg.run().ticks), proc_cpu_ms(pid)
        finally:
            bg.proc.kill9()
        costs[interval] = (c1 - c0) / max(1, n1 - n0)
    say(f"server backend CPU per tick: sizes every tick {costs['0']:.3f} ms, "
        f"once a minute {costs['60']:.3f} ms")
    # A typo is a start-up error naming the option, not a silent default.
    cp = trapline("probe", ctx.uri(), "--password-file", ctx.pwfile, "--option",
                  "size_intervl=5", "--seconds", "2")
    check(cp.returncode != 0 and "unknown option 'size_intervl'" in cp.stderr, describe(cp))


def proc_cpu_ms(pid: int) -> float:
    """A process's CPU time so far, from the scheduler's nanosecond count."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6


def test_probe_cli(ctx):
    """`trapline probe` runs the same PostgresTarget (collector.cc's MakeTarget)."""
    uri = ctx.uri(db="app1")
    cp = trapline("probe", uri, "--password-file", ctx.pwfile, "--seconds", "2.5", "--format",
                  "json", timeout=30)
    check(cp.returncode == 0, lambda: f"probe exit {cp.returncode}: {cp.stderr[-2000:]}")
    lines = parse_lines(cp.stdout)
    dbs = {x["name"] for x in lines if x.get("entity") == "database"}
    check(dbs == {"postgres", "app1", "app2"}, f"probe entities {dbs}")
    samples = {x["key"]: x["value"] for x in lines if "key" in x}
    size = int(ctx.value("SELECT pg_database_size('app2')"))
    check(samples.get("postgresql.db.size[app2]") == size,
          f"probe db.size[app2] {samples.get('postgresql.db.size[app2]')} vs {size}")
    check(samples.get("postgresql.connections.max") == 300, f"connections.max: {samples}")
    bad = os.path.join(ctx.tmp, "bad.pw")
    with open(bad, "w") as f:
        f.write("wrong\n")
    cp = trapline("probe", uri, "--password-file", bad, "--seconds", "2", timeout=30)
    check(cp.returncode != 0 and
          'password authentication failed for user "monitor"' in cp.stderr,
          lambda: f"probe with a wrong password: exit {cp.returncode}, stderr {cp.stderr!r}")


def test_memory_per_connection(ctx):
    n = 200

    def measure(*extra):
        r = run_driver(ctx.uri(), "--password", MON_PW, "--connections", n, *extra,
                       seconds=60, timeout=120)
        check(r.rc == 0, r.describe)
        mem = [x["memory"] for x in r.lines if "memory" in x][0]
        wait_until(lambda: int(ctx.value("SELECT count(*) FROM pg_stat_activity "
                                         "WHERE application_name = 'trapline'")) == 0, 20,
                   "the connections gone")
        return mem

    bare = measure("--bare")
    targets = measure()
    check(targets["connected"] == n + 1, f"all connected: {targets}")
    kib = 1024.0
    rss = targets["per_connection_bytes"] - bare["per_connection_bytes"]
    heap = targets["heap_per_connection_bytes"] - bare["heap_per_connection_bytes"]
    say(f"per connection over {n}: VmRSS targets {targets['per_connection_bytes'] / kib:.1f} KiB, "
        f"bare libpq {bare['per_connection_bytes'] / kib:.1f} KiB (difference {rss / kib:.1f} "
        f"KiB); malloc'd targets {targets['heap_per_connection_bytes'] / kib:.1f} KiB, bare "
        f"libpq {bare['heap_per_connection_bytes'] / kib:.1f} KiB (difference {heap / kib:.1f} "
        f"KiB)")
    # Beyond libpq's own buffers: at most 64 KiB, by either measure. (Everything included,
    # libpq's 2 x 16 KiB buffers too, stays under 64 KiB of RSS as well.)
    check(rss <= 64 * kib and heap <= 64 * kib, f"RSS {rss / kib:.1f} KiB, heap {heap / kib:.1f} "
          "KiB per connection beyond bare libpq: more than 64 KiB")
    check(targets["per_connection_bytes"] <= 64 * kib,
          f"VmRSS per connection, all included: {targets['per_connection_bytes'] / kib:.1f} KiB")


CHECKS = [
    test_values_match_server,
    test_size_interval,
    test_password_sources,
    test_auth_failure,
    test_refused_and_multi_host,
    test_unsupported_version,
    test_sslmode,
    test_without_pg_monitor,
    test_server_restart,
    test_stuck_statements,
    test_statement_timeout,
    test_probe_cli,
    test_memory_per_connection,
]

if __name__ == "__main__":
    sys.exit(run_checks(CHECKS, setup=setup, teardown=teardown, limit_s=180))
