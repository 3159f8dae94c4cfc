"""discovery/trapline-discover (the cron script) on this machine, with real PostgreSQL, Redis and
sshd started by the harness on their own free ports.

  test_dry_run_report     --dry-run under dash: valid JSON in the report format (every field's
                          type, no unknown field), host facts equal to this machine's, the test's
                          PostgreSQL (port, data directory, version), Redis (port, version) and
                          sshd (port); wall time measured and printed (< 3 s as a sanity bound)
  test_posix_sh           sh -n and dash -n, checkbashisms and shellcheck -s sh when installed
  test_not_root           run as `nobody`: the socket owners are not visible, the same three
                          services are still found (process names, command lines, sshd_config)
                          and a warning says why the report may be incomplete
  test_hostile_names      a host name with quotes, backslashes, control characters, UTF-8 and an
                          invalid byte, and a PostgreSQL whose data directory has a quote, a
                          backslash, a space and UTF-8: the JSON stays valid and decodes to what
                          was given
  test_untrusted_binary   a listening program named redis-server that writes a marker when run
                          (owned by nobody in a temp folder; owned by nobody under /opt; owned by
                          root in a world-writable folder under /opt), run by nobody: the script
                          run as root never runs it (no marker), reports the port without a
                          version and warns why
  test_many_services      a process named memcached listening on 300 ports: the report keeps
                          256 services (the coordinator's limit), sshd, PostgreSQL and Redis among
                          them, and warns about the ones left out
  test_no_ss              ss not on PATH: non-zero exit, one line naming ss and iproute2
  test_bad_options        unknown option, missing values, a bad URL, a config file with an
                          unknown key: exit 2 with a one-line reason
  test_registry_unreachable  nothing listens at --registry: exit 3, one line
  test_registry_refuses   a small HTTP server answering 403 {"error": ...}: exit 4 and the
                          server's reason printed; the request carried the bearer token from
                          --token-file and a body in the report format (no "warnings")
  test_enrolment_token    that server answering 201 {"token": ...}: the token stored in
                          STATE_DIR/token with mode 0600 and sent on the next run instead of the
                          enrolment secret
  test_config_file        REGISTRY= / TOKEN_FILE= / STATE_DIR= / HOSTNAME= from --config
  test_end_to_end         a real `trapline coordinator` ([discovery] enrolment secret, gone after
                          1 report): the first run enrols and stores the host token (0600), the
                          registry has the host with sshd, PostgreSQL (data directory, version)
                          and Redis on the test's ports; the host enabled in one click gets
                          tasks; the next run uses the host token; Redis stopped and the script
                          run again: its service is gone (audited) and its task stops
"""

import http.server
import ipaddress
import json
import os
import pwd
import re
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    SOURCE, LongLivedProc, check, describe, make_tmp, run, run_checks, say, trapline_bin,
    wait_until)
import test_coordinator_api as api_test  # noqa: E402
from harness import PostgresServer, RedisServer, SshServer, free_port  # noqa: E402

SCRIPT = os.path.join(SOURCE, "discovery", "trapline-discover")
SECRET = "enrol-secret-3b9f1c2d7e"
HOST_TOKEN = "f" * 16 + "0123456789abcdef" * 3

SERVICE_KEYS = {"kind", "port", "name", "version", "data_directory"}
HOST_KEYS = {"name", "fqdn", "os", "kernel", "addresses", "cpus", "memory_bytes"}


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("discovery-script")
        os.chmod(self.tmp, 0o755)  # `nobody` runs the script from here in test_not_root
        self.pg = PostgresServer()
        self.redis = RedisServer()
        self.ssh = SshServer()
        for s in (self.pg, self.redis, self.ssh):
            s.start()
        say(f"PostgreSQL {self.pg.port} ({self.pg.datadir}), Redis {self.redis.port}, "
            f"sshd {self.ssh.port}")
        self.token_file = os.path.join(self.tmp, "enrolment.secret")
        with open(self.token_file, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(self.token_file, 0o600)

    def close(self):
        for s in (self.ssh, self.redis, self.pg):
            s.close()


def discover(*args, env=None, shell="dash", timeout=30.0, user=None):
    argv = [shell, SCRIPT, *args]
    if user:
        pw = pwd.getpwnam(user)
        argv = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"] + argv
    if env is None:
        return run(argv, timeout=timeout)
    say(f"$ {' '.join(str(a) for a in argv)}  (PATH={env.get('PATH')})")
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


def one_line_failure(cp, status, *words):
    check(cp.returncode == status, lambda: f"want exit {status}: {describe(cp)}")
    lines = cp.stderr.strip().splitlines()
    check(len(lines) == 1, lambda: f"want one line on stderr, got {len(lines)}: {describe(cp)}")
    check(lines[0].startswith("trapline-discover: "), f"no program prefix: {lines[0]!r}")
    for w in words:
        check(w in lines[0], f"{w!r} not in {lines[0]!r}")
    say(f"exit {cp.returncode}: {lines[0]}")
    return lines[0]


def check_schema(report, dry_run=True):
    """The report format of the contract (what the coordinator's parser accepts)."""
    allowed = {"version", "script", "host", "services"} | ({"warnings"} if dry_run else set())
    check(set(report) <= allowed and {"version", "script", "host", "services"} <= set(report),
          f"top-level keys {sorted(report)}")
    check(report["version"] == 1, f"version {report['version']!r}")
    check(report["script"] == "trapline-discover 1.0", f"script {report['script']!r}")
    host = report["host"]
    check(set(host) <= HOST_KEYS and "name" in host, f"host keys {sorted(host)}")
    check(isinstance(host["name"], str) and host["name"], f"host.name {host['name']!r}")
    for k in ("fqdn", "os", "kernel"):  # the name is sent as given (the registry judges it)
        if k in host:
            check(isinstance(host[k], str) and host[k] and
                  not any(ord(c) < 32 or ord(c) == 127 for c in host[k]), f"host.{k} {host[k]!r}")
    for k in ("cpus", "memory_bytes"):
        check(isinstance(host.get(k), int) and host[k] > 0, f"host.{k} {host.get(k)!r}")
    check(isinstance(host["addresses"], list), "host.addresses is not a list")
    for a in host["addresses"]:
        ip = ipaddress.ip_address(a)  # raises on a prefix length or garbage
        check(not ip.is_loopback, f"loopback address {a} reported")
    seen = set()
    for s in report["services"]:
        check(set(s) <= SERVICE_KEYS, f"service keys {sorted(s)}")
        check(s["kind"] in ("ssh", "postgresql", "redis", "generic"), f"kind {s}")
        check(isinstance(s["port"], int) and 1 <= s["port"] <= 65535, f"port {s}")
        check(("name" in s) == (s["kind"] == "generic"), f"name only for generic: {s}")
        if "data_directory" in s:
            check(s["data_directory"].startswith("/"), f"data_directory {s}")
        key = (s["kind"], s.get("name"), s["port"])
        check(key not in seen, f"service {key} twice")
        seen.add(key)
    if "warnings" in report:
        check(all(isinstance(w, str) for w in report["warnings"]), "warnings not strings")


def service(report, kind, port):
    found = [s for s in report["services"] if s["kind"] == kind and s["port"] == port]
    check(found, lambda: f"no {kind} on port {port} in {json.dumps(report['services'])}")
    return found[0]


def pg_version(ctx) -> str:
    out = subprocess.run([f"{ctx.pg.bindir}/postgres", "--version"], capture_output=True,
                         text=True).stdout  # "postgres (PostgreSQL) 15.8 (Debian 15.8-...)"
    return out.split("(PostgreSQL)")[1].split()[0]


def redis_version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split(" v=")[1].split()[0]


def check_test_services(ctx, report):
    pg = service(report, "postgresql", ctx.pg.port)
    check(pg.get("data_directory") == os.path.realpath(ctx.pg.datadir),
          f"PostgreSQL data directory {pg.get('data_directory')!r}, want {ctx.pg.datadir}")
    check(pg.get("version") == pg_version(ctx), f"PostgreSQL version {pg.get('version')!r}, "
                                                f"want {pg_version(ctx)}")
    r = service(report, "redis", ctx.redis.port)
    check(r.get("version") == redis_version(), f"Redis version {r.get('version')!r}")
    service(report, "ssh", ctx.ssh.port)
    say(f"found {pg}, {r}, ssh {ctx.ssh.port}")


# --------------------------------------------------------------------------------------------


def test_dry_run_report(ctx):
    times = []
    for _ in range(5):
        t0 = time.monotonic()
        cp = discover("--dry-run")
        times.append(time.monotonic() - t0)
        check(cp.returncode == 0, lambda: describe(cp))
    say("wall time of --dry-run, 5 runs: " + ", ".join(f"{t * 1000:.0f} ms" for t in times) +
        f" (median {statistics.median(times) * 1000:.0f} ms)")
    check(statistics.median(times) < 3.0, f"median {statistics.median(times):.2f}s (sanity bound)")
    report = json.loads(cp.stdout)
    check_schema(report)
    check_test_services(ctx, report)
    host = report["host"]
    with open("/proc/sys/kernel/hostname") as f:
        check(host["name"] == f.read().strip(), f"host.name {host['name']!r}")
    check(host["kernel"] == os.uname().release, f"host.kernel {host['kernel']!r}")
    with open("/etc/os-release") as f:
        pretty = [ln.split("=", 1)[1].strip().strip('"') for ln in f
                  if ln.startswith("PRETTY_NAME=")][0]
    check(host["os"] == pretty, f"host.os {host['os']!r}, want {pretty!r}")
    check(host["cpus"] == os.sysconf("SC_NPROCESSORS_ONLN"), f"host.cpus {host['cpus']}")
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) * 1024
    check(host["memory_bytes"] == mem, f"host.memory_bytes {host['memory_bytes']}, want {mem}")
    check(host["addresses"], "no address reported")
    say(f"host {json.dumps(host)}; {len(report['services'])} services; "
        f"warnings {report.get('warnings', [])}")


def test_posix_sh(ctx):
    for sh in ("sh", "dash"):
        cp = run([sh, "-n", SCRIPT])
        check(cp.returncode == 0, lambda: describe(cp))
    with open(SCRIPT) as f:
        check(f.readline().strip() == "#!/bin/sh", "the script's first line is not #!/bin/sh")
    check(os.access(SCRIPT, os.X_OK), f"{SCRIPT} is not executable")
    for tool, argv in (("checkbashisms", ["checkbashisms", "--posix", SCRIPT]),
                       ("shellcheck", ["shellcheck", "-s", "sh", SCRIPT])):
        if shutil.which(tool):
            cp = run(argv)
            check(cp.returncode == 0, lambda: describe(cp))
        else:
            say(f"{tool} not installed: skipped")


def test_not_root(ctx):
    if os.geteuid() != 0:
        say("not root: this check needs to switch to `nobody`; skipped")
        return
    t0 = time.monotonic()
    cp = discover("--dry-run", user="nobody")
    took = time.monotonic() - t0
    check(cp.returncode == 0, lambda: describe(cp))
    report = json.loads(cp.stdout)
    check_schema(report)
    check_test_services(ctx, report)
    warnings = " ".join(report.get("warnings", []))
    check("not running as root" in warnings, f"no warning about the missing owners: {warnings!r}")
    say(f"as nobody in {took * 1000:.0f} ms; warnings: {report['warnings']}")


def test_hostile_names(ctx):
    name = b'we"ird\\host\x01\t\n\x1f \xc3\xa9 \xe2\x82\xac \xff\xfe end'
    want = 'we"ird\\host\x01\t\n\x1f \u00e9 \u20ac \ufffd\ufffd end'
    argv = ["dash", SCRIPT, "--dry-run", "--hostname", name]
    say(f"$ dash trapline-discover --dry-run --hostname {name!r}")
    cp = subprocess.run(argv, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    check(cp.returncode == 0, lambda: f"exit {cp.returncode}: {cp.stderr!r}")
    text = cp.stdout.decode("utf-8")  # strict: invalid UTF-8 would raise here
    report = json.loads(text)
    check(report["host"]["name"] == want, f"name {report['host']['name']!r}, want {want!r}")
    check_schema(report)
    say(f"name came back as {report['host']['name']!r}")
    # a real PostgreSQL whose data directory has a quote, a backslash, a space and UTF-8
    pg = PostgresServer(dir=os.path.join(ctx.tmp, 'pg "odd\\ dir\u00e9'))
    try:
        pg.start()
        cp = discover("--dry-run")
        check(cp.returncode == 0, lambda: describe(cp))
        got = service(json.loads(cp.stdout), "postgresql", pg.port)
        check(got.get("data_directory") == pg.datadir,
              f"data directory {got.get('data_directory')!r}, want {pg.datadir!r}")
        say(f"odd data directory came back as {got['data_directory']!r}")
    finally:
        pg.close()


FAKE_REDIS_C = r"""
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    FILE *f = fopen(MARKER, "a");
    if (f) { fprintf(f, "uid=%d\n", (int)getuid()); fclose(f); }
    puts("Redis server v=6.6.6 sha=00000000:0");
    return 0;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons(atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 1)) return 1;
  puts("listening");
  fflush(stdout);
  pause();
  return 0;
}
"""


def test_untrusted_binary(ctx):
    if os.geteuid() != 0:
        say("not root: the exploit needs the script to run as root; skipped")
        return
    nobody = pwd.getpwnam("nobody")
    marker = os.path.join(ctx.tmp, "fake-redis-ran")
    src = os.path.join(ctx.tmp, "fake-redis.c")
    with open(src, "w") as f:
        f.write(FAKE_REDIS_C)
    built = os.path.join(ctx.tmp, "fake-redis")
    cp = run(["cc", "-O0", f'-DMARKER="{marker}"', "-o", built, src])
    check(cp.returncode == 0, lambda: describe(cp))
    os.makedirs("/opt", exist_ok=True)
    opt = tempfile.mkdtemp(prefix="trapline-discovery-", dir="/opt")  # removed below
    try:
        os.chmod(opt, 0o755)
        tmpdir = os.path.join(ctx.tmp, "untrusted")
        os.makedirs(tmpdir, exist_ok=True)
        os.chown(tmpdir, nobody.pw_uid, nobody.pw_gid)
        loose = os.path.join(opt, "loose")
        os.makedirs(loose)
        os.chmod(loose, 0o777)
        # (folder, owner of the binary, what the warning names)
        cases = [(tmpdir, nobody.pw_uid, "not under /usr or /opt"),
                 (opt, nobody.pw_uid, "is not owned by root"),
                 (loose, 0, "writable by its group or by everyone")]
        for folder, owner, why in cases:
            exe = os.path.join(folder, "redis-server")
            shutil.copy(built, exe)
            os.chown(exe, owner, 0 if owner == 0 else nobody.pw_gid)
            os.chmod(exe, 0o755)
            port = free_port()
            proc = subprocess.Popen(["setpriv", f"--reuid={nobody.pw_uid}",
                                     f"--regid={nobody.pw_gid}", "--clear-groups", exe, str(port)],
                                    stdout=subprocess.PIPE, text=True)
            try:
                check(proc.stdout.readline().strip() == "listening", f"{exe} did not listen")
                with open(f"/proc/{proc.pid}/comm") as f:
                    check(f.read().strip() == "redis-server", "the fake's name is not redis-server")
                cp = discover("--dry-run")
                check(cp.returncode == 0, lambda: describe(cp))
                check(not os.path.exists(marker),
                      lambda: f"the script ran {exe} (as root): {open(marker).read()!r}")
                report = json.loads(cp.stdout)
                fake = service(report, "redis", port)
                check("version" not in fake, f"a version for the untrusted binary: {fake}")
                warnings = [w for w in report.get("warnings", []) if f"port {port}" in w]
                check(any("not run" in w and why in w for w in warnings),
                      f"no warning naming {why!r} for port {port}: {warnings}")
                check_test_services(ctx, report)  # the trusted Redis and PostgreSQL still have one
                say(f"{exe} (uid {owner}) on port {port} not run; warning: {warnings}")
            finally:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(opt, ignore_errors=True)


LISTENER_PY = r"""
import socket, sys, time
with open("/proc/self/comm", "w") as f:
    f.write("memcached")
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    socks.append(s)
print("listening", flush=True)
time.sleep(120)
"""


def test_many_services(ctx):
    proc = subprocess.Popen([sys.executable, "-c", LISTENER_PY, "300"], stdout=subprocess.PIPE,
                            text=True)
    try:
        check(proc.stdout.readline().strip() == "listening", "the listener did not start")
        t0 = time.monotonic()
        cp = discover("--dry-run")
        took = time.monotonic() - t0
        check(cp.returncode == 0, lambda: describe(cp))
        report = json.loads(cp.stdout)
        check_schema(report)
        n = len(report["services"])
        check(n == 256, f"{n} services reported, want 256 (the coordinator's limit)")
        check_test_services(ctx, report)
        kinds = [s["kind"] for s in report["services"]]
        first_generic = kinds.index("generic")
        check("generic" not in kinds[:first_generic] and
              all(k == "generic" for k in kinds[first_generic:]),
              f"generic services are not last: {kinds}")
        dropped = [w for w in report.get("warnings", []) if "left out" in w and "256" in w]
        check(dropped, f"no warning about the services left out: {report.get('warnings')}")
        say(f"{n} services in {took * 1000:.0f} ms; {dropped[0]}")
    finally:
        proc.kill()
        proc.wait()


def path_without(tmp, missing):
    """A PATH folder with links to the tools the script uses, except `missing`."""
    d = os.path.join(tmp, f"path-without-{missing}")
    os.makedirs(d, exist_ok=True)
    for tool in ("ss", "ip", "awk", "sed", "tr", "cut", "head", "readlink", "hostname", "timeout",
                 "od", "sleep", "curl", "logger", "mkdir", "mv", "chmod", "rm", "getconf",
                 "uname", "redis-server", "dash", "sh"):
        p = shutil.which(tool)
        if tool != missing and p and not os.path.exists(os.path.join(d, tool)):
            os.symlink(p, os.path.join(d, tool))
    return d


def test_no_ss(ctx):
    env = dict(os.environ, PATH=path_without(ctx.tmp, "ss"))
    cp = discover("--dry-run", env=env, shell="/bin/dash")
    one_line_failure(cp, 1, "ss", "iproute2")
    check(cp.stdout == "", f"a report was printed anyway: {cp.stdout[:200]!r}")


def test_bad_options(ctx):
    one_line_failure(discover("--frobnicate"), 2, "unknown option '--frobnicate'")
    one_line_failure(discover("--registry"), 2, "--registry needs a value")
    one_line_failure(discover("--registry", "ftp://x", "--token-file", ctx.token_file), 2,
                     "http:// or https://")
    one_line_failure(discover("--jitter", "soon", "--dry-run"), 2, "--jitter")
    one_line_failure(discover("--registry", "https://127.0.0.1:1", "--token-file", ctx.token_file,
                              "--cacert", os.path.join(ctx.tmp, "no-ca.pem")), 2, "CA file")
    one_line_failure(discover("--config", os.path.join(ctx.tmp, "nope.conf"), "--dry-run"), 2,
                     "does not exist")
    conf = os.path.join(ctx.tmp, "bad.conf")
    with open(conf, "w") as f:
        f.write("# comment\nREGISTRY=http://127.0.0.1:1\nGONE_AFTER=2\n")
    one_line_failure(discover("--config", conf, "--dry-run"), 2, f"{conf}:3", "GONE_AFTER")
    one_line_failure(discover("--registry", "http://127.0.0.1:1", "--config", "/dev/null"), 2,
                     "no token", "--token-file")
    cp = discover("--help")
    check(cp.returncode == 0 and "--dry-run" in cp.stdout and "--registry" in cp.stdout,
          lambda: describe(cp))


def test_registry_unreachable(ctx):
    port = free_port()
    t0 = time.monotonic()
    cp = discover("--registry", f"http://127.0.0.1:{port}", "--token-file", ctx.token_file,
                  "--state-dir", os.path.join(ctx.tmp, "state-unreachable"))
    took = time.monotonic() - t0
    line = one_line_failure(cp, 3, "cannot reach the registry", f"127.0.0.1:{port}")
    check(SECRET not in line, "the secret is in the error line")
    say(f"failed in {took * 1000:.0f} ms")


class FakeRegistry:
    """An HTTP server answering POST /api/v1/discovery with a chosen status and JSON body, and
    recording what it was sent (the script's side of the wire contract; the coordinator's
    own endpoint is tested by test_discovery_api.py)."""

    def __init__(self):
        self.requests = []
        self.answers = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((self.path, dict(self.headers), body))
                status, answer = outer.answers.pop(0) if outer.answers else (500, {})
                text = isinstance(answer, str)
                data = answer.encode() if text else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_registry_refuses(ctx):
    reg = FakeRegistry()
    try:
        reason = 'host.name \'x"y\' has a character other than letters, digits and \'._-\''
        reg.answers.append((403, {"error": reason}))
        cp = discover("--registry", reg.url + "/", "--token-file", ctx.token_file,
                      "--state-dir", os.path.join(ctx.tmp, "state-refused"))
        line = one_line_failure(cp, 4, "answered 403", reason)
        check("enrolment secret" in line, f"the line does not say which token was used: {line}")
        check(len(reg.requests) == 1, f"{len(reg.requests)} requests")
        path, headers, body = reg.requests[0]
        check(path == "/api/v1/discovery", f"path {path}")
        check(headers.get("Authorization") == f"Bearer {SECRET}", f"headers {headers}")
        check(headers.get("Content-Type") == "application/json", f"headers {headers}")
        report = json.loads(body)
        check_schema(report, dry_run=False)
        check_test_services(ctx, report)
        # a 500 with a body that is not JSON: its text is the reason
        reg.answers.append((500, "database is down"))
        cp = discover("--registry", reg.url, "--token-file", ctx.token_file,
                      "--state-dir", os.path.join(ctx.tmp, "state-refused"))
        one_line_failure(cp, 4, "answered 500", "database is down")
    finally:
        reg.close()


def test_enrolment_token(ctx):
    reg = FakeRegistry()
    state = os.path.join(ctx.tmp, "state-enrol")
    try:
        reg.answers.append((201, {"host": "vm", "token": HOST_TOKEN, "enrolled": True}))
        cp = discover("--registry", reg.url, "--token-file", ctx.token_file, "--state-dir", state)
        check(cp.returncode == 0, lambda: describe(cp))
        check("enrolled" in cp.stdout, lambda: describe(cp))
        token_path = os.path.join(state, "token")
        with open(token_path) as f:
            check(f.read().strip() == HOST_TOKEN, "stored token differs")
        mode = stat.S_IMODE(os.stat(token_path).st_mode)
        check(mode == 0o600, f"token file mode {oct(mode)}")
        check(HOST_TOKEN not in cp.stdout + cp.stderr, "the token was printed")
        say(f"stored {token_path} mode {oct(mode)}; {cp.stdout.strip()}")
        reg.answers.append((200, {"host": "vm", "services": 3, "enrolled": False}))
        cp = discover("--registry", reg.url, "--token-file", ctx.token_file, "--state-dir", state)
        check(cp.returncode == 0, lambda: describe(cp))
        check(reg.requests[1][1].get("Authorization") == f"Bearer {HOST_TOKEN}",
              f"second report sent {reg.requests[1][1].get('Authorization')!r}")
        say(cp.stdout.strip())
        # a refused host token: the line says which file to remove
        reg.answers.append((401, {"error": "unknown or revoked host token"}))
        cp = discover("--registry", reg.url, "--token-file", ctx.token_file, "--state-dir", state)
        one_line_failure(cp, 4, "answered 401", "unknown or revoked host token", token_path)
        # a 201 whose token could break the header is refused, nothing stored
        state2 = os.path.join(ctx.tmp, "state-enrol-bad")
        reg.answers.append((201, {"host": "vm", "token": "abc\r\nX-Evil: 1", "enrolled": True}))
        cp = discover("--registry", reg.url, "--token-file", ctx.token_file, "--state-dir", state2)
        one_line_failure(cp, 4, "token")
        check(not os.path.exists(os.path.join(state2, "token")), "a bad token was stored")
    finally:
        reg.close()


def test_config_file(ctx):
    reg = FakeRegistry()
    state = os.path.join(ctx.tmp, "state-config")
    conf = os.path.join(ctx.tmp, "discover.conf")
    with open(conf, "w") as f:
        f.write(f"# trapline-discover\nREGISTRY = \"{reg.url}\"\nTOKEN_FILE={ctx.token_file}\n"
                f"STATE_DIR='{state}'\n\nHOSTNAME=db-conf-01\n")
    try:
        reg.answers.append((200, {"host": "db-conf-01", "services": 3, "enrolled": False}))
        cp = discover("--config", conf)
        check(cp.returncode == 0, lambda: describe(cp))
        _, headers, body = reg.requests[0]
        check(headers.get("Authorization") == f"Bearer {SECRET}", f"headers {headers}")
        report = json.loads(body)
        check(report["host"]["name"] == "db-conf-01", f"host {report['host']}")
        say(cp.stdout.strip())
    finally:
        reg.close()


class Registry:
    """A `trapline coordinator` with [http] and [discovery] over a registry database on the
    test's PostgreSQL (which the script also reports: a registry is a PostgreSQL too). call()
    and ok() are test_coordinator_api's (API token api_test.TOKEN)."""

    call = api_test.Ctx.call
    ok = api_test.Ctx.ok

    def __init__(self, ctx, gone_after):
        self.pg = ctx.pg
        self.pg.create_db("registry")
        self.port = free_port()
        api_token = os.path.join(ctx.tmp, "api.token")
        with open(api_token, "w") as f:
            f.write(api_test.TOKEN + "\n")
        os.chmod(api_token, 0o600)
        config = os.path.join(ctx.tmp, "co.toml")
        with open(config, "w") as f:
            f.write(f'[coordinator]\nname = "co1"\nregistry = "{self.pg.url(db="registry")}"\n\n'
                    f'[http]\nlisten = "127.0.0.1:{self.port}"\napi_token_file = "{api_token}"\n\n'
                    f'[discovery]\nenrolment_secret_file = "{ctx.token_file}"\n'
                    f'gone_after_reports = {gone_after}\nburst = 20\n')
        self.coord = LongLivedProc([trapline_bin(), "coordinator", "--config", config], ctx.tmp,
                                   "co1")
        wait_until(lambda: "leader: acquired" in self.coord.stderr() or not self.coord.alive(),
                   20, "the coordinator to lead")
        check(self.coord.alive(), lambda: self.coord.output())
        self.url = f"http://127.0.0.1:{self.port}"

    def sql(self, q):
        return self.pg.psql(q, db="registry")

    def close(self):
        self.coord.end()


def test_end_to_end(ctx):
    co = Registry(ctx, gone_after=1)
    state = os.path.join(ctx.tmp, "state-e2e")
    host = "disc-e2e-01"
    args = ("--registry", co.url, "--token-file", ctx.token_file, "--state-dir", state,
            "--hostname", host)
    try:
        cp = discover(*args)
        check(cp.returncode == 0 and "enrolled" in cp.stdout, lambda: describe(cp))
        say(cp.stdout.strip())
        with open(os.path.join(state, "token")) as f:
            token = f.read().strip()
        check(re.fullmatch(r"[0-9a-f]{64}", token), f"stored token {token!r}")
        check(stat.S_IMODE(os.stat(os.path.join(state, "token")).st_mode) == 0o600, "mode")
        rows = co.sql("SELECT s.plugin, s.port, s.gone, s.details::text FROM services s JOIN hosts "
                      f"h ON h.id = s.host_id WHERE h.name = '{host}' ORDER BY s.plugin, s.port")
        say(f"registry: {rows}")
        got = {(p, int(port)): (gone, json.loads(d)) for p, port, gone, d in rows}
        for key in (("linux", ctx.ssh.port), ("postgresql", ctx.pg.port), ("redis", ctx.redis.port)):
            check(key in got and got[key][0] == "f", f"{key} not in the registry: {rows}")
        pg_details = got[("postgresql", ctx.pg.port)][1]
        check(pg_details.get("data_directory") == os.path.realpath(ctx.pg.datadir) and
              pg_details.get("version") == pg_version(ctx), f"postgresql details {pg_details}")
        check(got[("redis", ctx.redis.port)][1].get("version") == redis_version(), "redis version")
        one = co.ok("GET", f"/api/v1/hosts/{host}")
        api_ports = {(s["plugin"], s["port"]) for s in one["services"]}
        check({("linux", ctx.ssh.port), ("postgresql", ctx.pg.port),
               ("redis", ctx.redis.port)} <= api_ports, f"API shows {api_ports}")

        co.ok("PATCH", f"/api/v1/hosts/{host}", {"enabled": True, "services": "all"})
        redis_task = (f"SELECT count(*) FROM tasks t JOIN services s ON s.id = t.service_id "
                      f"JOIN hosts h ON h.id = s.host_id WHERE h.name = '{host}' "
                      f"AND s.plugin = 'redis' AND s.port = {ctx.redis.port}")
        wait_until(lambda: co.sql(redis_task) == [("1",)], 10, "a task for the test's Redis")
        # the test's own sshd and PostgreSQL (other servers on this machine may come and go
        # between reports: other tests run here too)
        own_tasks = (f"SELECT s.plugin, s.port FROM tasks t JOIN services s ON s.id = "
                     f"t.service_id JOIN hosts h ON h.id = s.host_id WHERE h.name = '{host}' "
                     f"AND (s.plugin, s.port) IN (('linux', {ctx.ssh.port}), "
                     f"('postgresql', {ctx.pg.port})) ORDER BY 1")
        check(co.sql(own_tasks) == [("linux", str(ctx.ssh.port)),
                                    ("postgresql", str(ctx.pg.port))],
              lambda: f"tasks of sshd and PostgreSQL: {co.sql(own_tasks)}")

        cp = discover(*args)  # with the stored host token now
        check(cp.returncode == 0 and "reported" in cp.stdout, lambda: describe(cp))
        say(cp.stdout.strip())

        ctx.redis.stop()
        cp = discover(*args)
        check(cp.returncode == 0, lambda: describe(cp))
        say(cp.stdout.strip())
        gone = co.sql(f"SELECT s.gone FROM services s JOIN hosts h ON h.id = s.host_id WHERE "
                      f"h.name = '{host}' AND s.plugin = 'redis' AND s.port = {ctx.redis.port}")
        check(gone == [("t",)], f"the stopped Redis is not gone: {gone}")
        t0 = time.monotonic()
        wait_until(lambda: co.sql(redis_task) == [("0",)], 10, "the gone Redis's task to stop")
        say(f"Redis gone; its task removed {time.monotonic() - t0:.2f}s after the report")
        check(co.sql(own_tasks) == [("linux", str(ctx.ssh.port)),
                                    ("postgresql", str(ctx.pg.port))],
              lambda: f"the other tasks changed: {co.sql(own_tasks)}")
        audit = co.sql("SELECT actor, action FROM audit_log WHERE action = 'service.gone'")
        check(("discovery", "service.gone") in audit, f"audit: {audit}")
        log = co.coord.stderr()
        check(SECRET not in log and token not in log, "a secret is in the coordinator's log")
    finally:
        co.close()
        ctx.redis.start()


CHECKS = [test_dry_run_report, test_posix_sh, test_not_root, test_hostile_names,
          test_untrusted_binary, test_many_services, test_no_ss,
          test_bad_options, test_registry_unreachable, test_registry_refuses,
          test_enrolment_token, test_config_file, test_end_to_end]

if __name__ == "__main__":
    sys.exit(run_checks(CHECKS, setup=Ctx, teardown=lambda c: c.close(), limit_s=120))
