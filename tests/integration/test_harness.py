#!/usr/bin/python3
"""Integration test of the test harness itself: every server for real, then teardown checks.

Run: PYTHONPATH=tests python3 tests/integration/test_harness.py  (CTest sets PYTHONPATH)
Prints one line per test and a final "N passed, M failed"; exit code 0 only if all passed.
"""

import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from harness import (  # noqa: E402
    HOST,
    PostgresServer,
    PsqlError,
    RedisServer,
    SshServer,
    ZabbixStack,
    free_port,
    make_base_dir,
    port_is_free,
)
from harness.servers import _proc_table  # noqa: E402

TESTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


class Failure(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failure(msg)


# --------------------------------------------------------------------------------------------
# teardown checks


def snapshot(server):
    """Everything a server owns now: (pid, starttime) of its processes, its ports and folder."""
    table = _proc_table()
    procs = {p: table[p][3] for p in server.processes() if p in table}
    return {"procs": procs, "ports": list(server.ports()), "dir": server.dir}


def cmdline_mentions(path):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if path in cmd and state not in ("Z", "X"):
            out.append((int(name), cmd.strip()))
    return out


def assert_torn_down(snap, what, dir_removed=True):
    table = _proc_table()
    left = [p for p, st in snap["procs"].items()
            if p in table and table[p][3] == st and table[p][2] not in ("Z", "X")]
    check(not left, f"{what}: processes still alive after teardown: {left}")
    stray = cmdline_mentions(snap["dir"])
    check(not stray, f"{what}: processes still mention {snap['dir']}: {stray}")
    for port in snap["ports"]:
        check(port_is_free(port), f"{what}: port {port} still in use after teardown")
    if dir_removed:
        check(not os.path.exists(snap["dir"]), f"{what}: folder {snap['dir']} not removed")


def proc_user(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return pwd.getpwuid(int(line.split()[1])).pw_name
    return None


def listening_addresses(port):
    """Local addresses with a LISTEN socket on port (from /proc/net/tcp and tcp6)."""
    out = []
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, st = parts[1], parts[3]
                    ip_hex, port_hex = addr.split(":")
                    if st == "0A" and int(port_hex, 16) == port:
                        if v6:
                            out.append("v6:" + ip_hex)
                        else:
                            out.append(socket.inet_ntoa(bytes.fromhex(ip_hex)[::-1]))
        except OSError:
            pass
    return out


# --------------------------------------------------------------------------------------------
# tests


def test_ports_and_dirs():
    ports = {free_port() for _ in range(20)}
    check(len(ports) == 20, "free_port returned a port twice")
    low = free_port(20000, 32767)
    check(20000 <= low <= 32767 and port_is_free(low), f"free_port(20000, 32767) gave {low}")
    with socket.socket() as s:
        s.bind((HOST, 0))
        s.listen()
        check(not port_is_free(s.getsockname()[1]), "port_is_free() true for a listening port")
    parent = tempfile.mkdtemp(prefix="trapline-parent-")
    old = os.environ.get("TRAPLINE_TEST_TMP")
    os.environ["TRAPLINE_TEST_TMP"] = parent
    try:
        d = make_base_dir("x")
    finally:
        if old is None:
            del os.environ["TRAPLINE_TEST_TMP"]
        else:
            os.environ["TRAPLINE_TEST_TMP"] = old
    check(os.path.dirname(d) == parent, f"TRAPLINE_TEST_TMP not honoured: {d}")
    check(os.stat(d).st_mode & 0o777 == 0o755, f"{d} is not mode 0755")
    os.rmdir(d)
    os.rmdir(parent)


def test_postgres():
    with PostgresServer() as pg:
        rows = pg.psql("SELECT 1")
        check(rows == [("1",)], f"SELECT 1 returned {rows}")
        # the real client against dsn(), independent of the harness's psql()
        cp = subprocess.run(["/usr/bin/psql", pg.dsn(), "-XAtc", "SELECT 40 + 2"],
                            capture_output=True, text=True)
        check(cp.returncode == 0 and cp.stdout.strip() == "42",
              f"/usr/bin/psql via dsn failed: {cp.stdout} {cp.stderr}")
        rows = pg.psql("SELECT NULL, '', E'a\\tb\\nc', 'x,y'")
        check(rows == [(None, "", "a\tb\nc", "x,y")], f"psql() parsing: {rows}")
        pg.create_role("app", password="pw")
        pg.create_db("appdb", owner="app")
        check(pg.db_exists("appdb"), "create_db did not create appdb")
        check(pg.psql("SELECT current_user", db="appdb", user="app") == [("app",)],
              "cannot connect as role app")
        postmaster = pg.pgids()[0]
        if os.geteuid() == 0:
            check(proc_user(postmaster) == "postgres",
                  f"postmaster runs as {proc_user(postmaster)}, not postgres")
        addrs = listening_addresses(pg.port)
        check(addrs == [HOST], f"postgres listens on {addrs}, want only {HOST}")
        # restart on the same port keeps the data (outage tests)
        port = pg.port
        pg.stop()
        check(port_is_free(port), "port busy after stop()")
        pg.start()
        check(pg.port == port and pg.db_exists("appdb"), "restart lost port or data")
        snap = snapshot(pg)
        check(len(snap["procs"]) >= 3, f"expected postmaster + children, got {snap['procs']}")
    assert_torn_down(snap, "postgres")

    with PostgresServer(password="s3cret") as pg:
        check(pg.psql("SELECT 1") == [("1",)], "password cluster: SELECT 1 failed")
        try:
            pg.psql("SELECT 1", password="wrong")
            raise Failure("wrong password was accepted")
        except PsqlError:
            pass
        check("password=s3cret" in pg.dsn(), f"dsn lacks the password: {pg.dsn()}")
        snap = snapshot(pg)
    assert_torn_down(snap, "postgres with password")


def raw_redis(port, *commands):
    """PING etc. over a raw socket, inline commands, no harness helpers."""
    with socket.create_connection((HOST, port), timeout=5) as s:
        f = s.makefile("rb")
        replies = []
        for c in commands:
            s.sendall(c.encode() + b"\r\n")
            replies.append(f.readline().decode().rstrip("\r\n"))
        return replies


def test_redis():
    with RedisServer() as r:
        check(raw_redis(r.port, "PING") == ["+PONG"], "PING over a raw socket failed")
        check(r.command("SET", "k", "v") == "OK" and r.command("GET", "k") == "v",
              "SET/GET failed")
        check(r.command("CONFIG", "GET", "save") == ["save", ""], "persistence is not off")
        check(listening_addresses(r.port) == [HOST], "redis listens beyond 127.0.0.1")
        snap = snapshot(r)
    assert_torn_down(snap, "redis")

    with RedisServer(password="s3cret", users={"app": "apppw"}) as r:
        check(raw_redis(r.port, "PING")[0].startswith("-NOAUTH"), "PING without AUTH accepted")
        check(raw_redis(r.port, "AUTH s3cret", "PING") == ["+OK", "+PONG"],
              "AUTH with requirepass failed")
        check(raw_redis(r.port, "AUTH app apppw", "PING") == ["+OK", "+PONG"],
              "AUTH as ACL user failed")
        snap = snapshot(r)
    assert_torn_down(snap, "redis with password")


def test_ssh():
    with SshServer() as s:
        check(re.fullmatch(rf"\[127\.0\.0\.1\]:{s.port} ssh-ed25519 \S+", s.known_hosts_line),
              f"bad known_hosts line: {s.known_hosts_line}")
        for key in (s.key_ed25519, s.key_rsa):
            cp = subprocess.run(["ssh", "-F", "none", "-i", key, "-p", str(s.port),
                                 "-o", f"UserKnownHostsFile={s.known_hosts}",
                                 "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
                                 "-o", "IdentitiesOnly=yes", f"{s.user}@127.0.0.1", "true"],
                                capture_output=True, text=True, timeout=30)
            check(cp.returncode == 0, f"ssh -i {key} true failed: {cp.stderr}"
                  + s.log_tail(20))
        out = s.ssh("cat", "/proc/loadavg", key="rsa").stdout
        check(re.match(r"[\d.]+ [\d.]+ [\d.]+ \d+/\d+ \d+", out), f"odd /proc/loadavg: {out!r}")
        local = os.path.join(s.dir, "loadavg.copy")
        batch = os.path.join(s.dir, "sftp.batch")
        with open(batch, "w") as f:
            f.write(f"get /proc/loadavg {local}\n")
        cp = subprocess.run(s.sftp_argv(batch), capture_output=True, text=True, timeout=30)
        check(cp.returncode == 0, f"sftp -b failed: {cp.stderr}" + s.log_tail(20))
        with open(local) as f:
            got = f.read()
        check(re.match(r"[\d.]+ [\d.]+ [\d.]+ \d+/\d+ \d+", got),
              f"sftp get of /proc/loadavg (size 0 file) gave {got!r}")
        # a wrong host key must be refused: the known_hosts line really pins this server
        bad = os.path.join(s.dir, "bad_known_hosts")
        with open(bad, "w") as f:
            f.write(f"[127.0.0.1]:{s.port} ssh-ed25519 "
                    "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
        argv = s.ssh_argv("true")
        argv = [a.replace(f"UserKnownHostsFile={s.known_hosts}", f"UserKnownHostsFile={bad}")
                for a in argv]
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        check(cp.returncode != 0, "ssh accepted a host key that is not the server's")
        check(listening_addresses(s.port) == [HOST], "sshd listens beyond 127.0.0.1")
        snap = snapshot(s)
    assert_torn_down(snap, "sshd")


def api_raw(url, method, params, auth=None):
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if auth:
        body["auth"] = auth
    req = urllib.request.Request(url, data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json-rpc"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=30) as r:
        return json.load(r)


def test_zabbix():
    t0 = time.monotonic()
    with ZabbixStack() as z:
        up = time.monotonic() - t0
        # the API, raw: version needs no login, then user.login as Admin/zabbix
        v = api_raw(z.api_url, "apiinfo.version", {})
        check(v.get("result", "").startswith("6.0"), f"apiinfo.version: {v}")
        token = api_raw(z.api_url, "user.login", {"username": "Admin", "password": "zabbix"})
        check(isinstance(token.get("result"), str) and len(token["result"]) >= 32,
              f"user.login: {token}")
        check(z.version.startswith("6.0"), f"z.version = {z.version}")
        users = z.api("user.get", {"output": ["username"]})
        check("Admin" in [u["username"] for u in users], f"user.get: {users}")
        # the frontend's UI answers too (index.php renders the login page)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(z.frontend_url + "index.php", timeout=30) as r:
            page = r.read().decode("utf-8", "replace")
        check("Zabbix" in page and "name" in page, "index.php did not render the login page")
        check(listening_addresses(z.server_port) == [HOST], "zabbix_server listens beyond lo")
        check(listening_addresses(z.frontend_port) == [HOST], "php -S listens beyond lo")
        if os.geteuid() == 0:
            check(proc_user(z.pgids()[0]) == "zabbix", "zabbix_server does not run as zabbix")

        # trapper host + items, config cache, a value from the reference zabbix_sender
        t1 = time.monotonic()
        ids = z.create_trapper_host("harness-test", [("test.float", 0), ("test.uint", 3)])
        cache = time.monotonic() - t1
        cp = subprocess.run(["/usr/bin/zabbix_sender", "-z", "127.0.0.1", "-p",
                             str(z.server_port), "-s", "harness-test", "-k", "test.uint",
                             "-o", "42"], capture_output=True, text=True, timeout=30)
        check(cp.returncode == 0 and "processed: 1; failed: 0" in cp.stdout,
              f"zabbix_sender: rc {cp.returncode}: {cp.stdout} {cp.stderr}")
        rows = z.wait_for_history(ids["test.uint"], count=1, timeout=20)
        check(len(rows) == 1 and rows[0][2] == 42, f"history_uint: {rows}")
        raw = z.pg.psql(f"SELECT value FROM history_uint WHERE itemid = {ids['test.uint']}",
                        db="zabbix")
        check(raw == [("42",)], f"psql on history_uint: {raw}")
        now = int(time.time())
        res = z.send_values([("harness-test", "test.float", 1.25, now, 1),
                             ("harness-test", "test.float", 2.5, now, 2)])
        check(res["processed"] == 2 and res["failed"] == 0, f"send_values: {res}")
        rows = z.wait_for_history(("harness-test", "test.float"), count=2)
        check([r[1:] for r in rows] == [(1, 1.25), (2, 2.5)], f"history: {rows}")
        res = z.send("harness-test", "no.such.key", 1)
        check(res["failed"] == 1, f"an unknown key was not counted failed: {res}")

        # outage: the server alone stops (its port frees), DB and frontend stay, then back
        z.stop_server()
        check(port_is_free(z.server_port), "server port busy after stop_server()")
        check(z.api("apiinfo.version", auth=False).startswith("6.0"), "frontend died with server")
        check(z.pg.psql("SELECT 1") == [("1",)], "DB died with the server")
        z.start_server()
        res = z.send("harness-test", "test.uint", 43)
        check(res["processed"] == 1, f"send after restart: {res}")
        z.wait_for_history(ids["test.uint"], count=2)
        z.kill_server()
        check(port_is_free(z.server_port), "server port busy after kill_server()")
        z.start_server()
        snap = snapshot(z)
        check(len(snap["procs"]) > 10, f"expected many zabbix/postgres processes: {snap}")
        t2 = time.monotonic()
    down = time.monotonic() - t2
    assert_torn_down(snap, "zabbix stack")
    print(f"    zabbix: up {up:.1f}s, item in config cache {cache:.1f}s, teardown {down:.1f}s")


CHILD = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, {tests!r})
    from harness import RedisServer, PostgresServer, ZabbixStack
    servers = [RedisServer().start(), PostgresServer().start()]
    if sys.argv[2] == "zabbix":
        servers.append(ZabbixStack().start())
    info = {{"pids": [p for s in servers for p in s.processes()],
             "dirs": [s.dir for s in servers], "ports": [s.ports() for s in servers]}}
    print(json.dumps(info), flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)          # atexit must clean up
    time.sleep(120)          # wait for a signal
""")


def run_child(mode, sig=None, with_zabbix=False):
    env = dict(os.environ, TRAPLINE_HARNESS_QUIET="1")
    p = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=TESTS_DIR), mode,
                          "zabbix" if with_zabbix else "-"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = p.stdout.readline()
    if not line:
        raise Failure(f"child ({mode}) failed to start servers: {p.stderr.read()}")
    info = json.loads(line)
    table = _proc_table()
    info["procs"] = {pid: table[pid][3] for pid in info["pids"] if pid in table}
    if sig:
        p.send_signal(sig)
    rc = p.wait(60)
    return rc, info, p.stderr.read()


def check_child_cleanup(info, what):
    for d, ports in zip(info["dirs"], info["ports"]):
        assert_torn_down({"procs": info["procs"], "ports": ports, "dir": d}, what)


def test_teardown_on_signals_and_exit():
    rc, info, err = run_child("wait", signal.SIGTERM)
    check(rc == 128 + signal.SIGTERM, f"SIGTERM: child exit code {rc}: {err}")
    check_child_cleanup(info, "SIGTERM")
    rc, info, err = run_child("wait", signal.SIGINT)
    check(rc != 0, f"SIGINT: child exit code {rc}")
    check_child_cleanup(info, "SIGINT")
    rc, info, err = run_child("exit")
    check(rc == 0, f"exit: child exit code {rc}: {err}")
    check_child_cleanup(info, "atexit")
    # SIGKILL of the parent: no cleanup code runs in it; its watchdog stops the servers
    # (php -S workers, zabbix_server children, postgres backends) and removes the folders
    rc, info, err = run_child("wait", signal.SIGKILL, with_zabbix=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        table = _proc_table()
        busy = [p for p, st in info["procs"].items() if p in table and table[p][3] == st
                and table[p][2] not in ("Z", "X")]
        if not busy and not any(os.path.exists(d) for d in info["dirs"]):
            break
        time.sleep(0.1)
    check_child_cleanup(info, "SIGKILL of the parent")


TESTS = [test_ports_and_dirs, test_postgres, test_redis, test_ssh, test_zabbix,
         test_teardown_on_signals_and_exit]


def main():
    only = sys.argv[1:]
    passed = failed = 0
    t_all = time.monotonic()
    for t in TESTS:
        if only and t.__name__ not in only:
            continue
        t0 = time.monotonic()
        try:
            t()
        except Exception:  # noqa: BLE001 - report and go on
            failed += 1
            print(f"FAIL {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            traceback.print_exc()
            sys.stdout.flush()
        else:
            passed += 1
            print(f"ok   {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
    print(f"total {time.monotonic() - t_all:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
