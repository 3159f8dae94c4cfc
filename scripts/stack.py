#!/usr/bin/python3
"""A local trapline stack on 127.0.0.1, built on the test harness (tests/harness).

  stack.py up     [--dir DIR] [--env-file F] [--fresh] [--no-targets] [--server-port N]
                  [--frontend-port N]
      Zabbix 6.0 server + frontend (own PostgreSQL), a registry database `trapline` in that
      PostgreSQL, and monitoring targets (Redis, sshd; the PostgreSQL itself). State lives in
      DIR (default ./.stack) and is reused by the next `up` (same ports when free). When
      everything is up it writes the env file (shell `export` lines; DIR/env.sh) and prints
      where to look, then runs until SIGINT/SIGTERM/SIGHUP and stops everything.
  stack.py check  [--dir DIR]
      Bring a stack up (temp folder unless --dir), verify the API login and a value sent
      through the trapper into history, tear down. Exit 0 on success.
  stack.py verify --env-file F [--demo [--timeout S]]
      Check a running stack described by an env file (API version + login). With --demo, also
      the quick start's cluster (scripts/quickstart-demo.sh): panel, collectors, the Zabbix
      hosts it builds and their values. Exit 0 if fine.
"""

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from harness import (  # noqa: E402
    HOST,
    api_call,
    HarnessError,
    RedisServer,
    SshServer,
    ZabbixStack,
    port_is_free,
)


def say(msg=""):
    print(msg, flush=True)


class Stop(Exception):
    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _on_signal(signum, _frame):
    # first signal: stop (from wherever we are: startup or waiting); later ones: ignored
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Stop(signum)


def install_signal_handlers():
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # an ignored signal stays ignored (nohup; a background job of a script such as
        # quickstart.sh, which stops its demo processes first and then sends SIGTERM)
        if signal.getsignal(s) != signal.SIG_IGN:
            signal.signal(s, _on_signal)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def reusable(port):
    return port if isinstance(port, int) and port_is_free(port) else None


class LocalStack:
    """ZabbixStack + registry DB + targets, in one folder."""

    def __init__(self, dir, targets=True, server_port=None, frontend_port=None):
        self.dir = os.path.abspath(dir)
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.ports_path = os.path.join(self.dir, "ports.json")
        saved = load_json(self.ports_path)
        self.zabbix = ZabbixStack(dir=os.path.join(self.dir, "zabbix"), server_port=server_port,
                                  frontend_port=frontend_port)
        self.redis = self.ssh = None
        if targets:
            self.redis = RedisServer(dir=os.path.join(self.dir, "redis"),
                                     port=reusable(saved.get("redis")))
            self.ssh = SshServer(dir=os.path.join(self.dir, "ssh"),
                                 port=reusable(saved.get("ssh")))

    def servers(self):
        return [s for s in (self.zabbix, self.redis, self.ssh) if s is not None]

    def start(self):
        self.zabbix.start()
        pg = self.zabbix.pg
        if not pg.role_exists("trapline"):
            pg.create_role("trapline")
        if not pg.db_exists("trapline"):
            pg.create_db("trapline", owner="trapline")
        for s in (self.redis, self.ssh):
            if s is not None:
                s.start()
        with open(self.ports_path, "w") as f:
            json.dump({"redis": self.redis.port if self.redis else None,
                       "ssh": self.ssh.port if self.ssh else None}, f)
        return self

    def dead(self):
        """Names of components that stopped running on their own."""
        out = []
        z = self.zabbix
        if not z.pg.running:
            out.append("PostgreSQL")
        if not z.server_running:
            out.append("Zabbix server")
        if not (z._frontend and z._frontend.alive()):
            out.append("Zabbix frontend (php -S)")
        for name, s in (("Redis", self.redis), ("sshd", self.ssh)):
            if s is not None and not s.running:
                out.append(name)
        return out

    def close(self):
        errors = []
        for s in reversed(self.servers()):
            try:
                s.close()
            except Exception as e:  # noqa: BLE001 - stop the rest anyway
                errors.append(f"{type(s).__name__}: {e}")
        if errors:
            raise HarnessError("; ".join(errors))

    def env(self):
        z = self.zabbix
        e = {
            "TRAPLINE_STACK_DIR": self.dir,
            "ZBX_SERVER_HOST": HOST,
            "ZBX_SERVER_PORT": str(z.server_port),
            "ZBX_API_URL": z.api_url,
            "ZBX_FRONTEND_URL": z.frontend_url,
            "ZBX_API_USER": z.user,
            "ZBX_API_PASSWORD": z.password,
            "ZBX_SERVER_CONF": z.server_conf,
            "ZBX_SERVER_LOG": z.server_log,
            "TRAPLINE_DB_DSN": z.pg.dsn("trapline", "trapline"),
            "TARGET_PG_DSN": z.pg.dsn("postgres"),
            "TARGET_PG_PORT": str(z.pg.port),
        }
        if self.redis:
            e.update({"TARGET_REDIS_HOST": HOST, "TARGET_REDIS_PORT": str(self.redis.port),
                      "TARGET_REDIS_URL": self.redis.url()})
        if self.ssh:
            e.update({"TARGET_SSH_HOST": HOST, "TARGET_SSH_PORT": str(self.ssh.port),
                      "TARGET_SSH_USER": self.ssh.user, "TARGET_SSH_KEY": self.ssh.key_ed25519,
                      "TARGET_SSH_KEY_RSA": self.ssh.key_rsa,
                      "TARGET_SSH_KNOWN_HOSTS": self.ssh.known_hosts})
        return e


def write_env_file(path, env):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("# written by scripts/stack.py; source it: . " + shlex.quote(path) + "\n")
        for k, v in env.items():
            f.write(f"export {k}={shlex.quote(v)}\n")
    os.replace(tmp, path)


def summary(st: LocalStack, env_file):
    z = st.zabbix
    lines = [
        "",
        "=" * 72,
        f"  Zabbix {z.version} frontend:  {z.frontend_url}",
        f"  login:                  {z.user} / {z.password}",
        f"  Zabbix server (trapper): {HOST}:{z.server_port}",
        f"  Zabbix API:             {z.api_url}",
        f"  PostgreSQL:             {z.pg.dsn('postgres')}  (Zabbix DB `zabbix`, "
        "registry DB `trapline`)",
    ]
    if st.redis:
        lines.append(f"  Redis target:           {HOST}:{st.redis.port}")
    if st.ssh:
        lines.append(f"  SSH target:             {st.ssh.user}@{HOST} -p {st.ssh.port} "
                     f"-i {st.ssh.key_ed25519}")
    lines += [
        f"  logs:                   {z.server_log}",
        f"                          {z.frontend_log}",
        f"                          {z.pg.log_path}",
        f"  environment:            . {env_file}",
        "  (everything listens on 127.0.0.1 only; from another machine use an SSH tunnel,",
        f"   e.g. ssh -L {z.frontend_port}:127.0.0.1:{z.frontend_port} this-host)",
        "=" * 72,
        "",
    ]
    say("\n".join(lines))


def zabbix_api(api_url):
    """A Zabbix API caller: call(method, params, auth=None) -> result; an API error raises."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method, params, auth=None):
        body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
        if auth:
            body["auth"] = auth
        req = urllib.request.Request(api_url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json-rpc"})
        with opener.open(req, timeout=30) as r:
            reply = json.load(r)
        if "error" in reply:
            raise HarnessError(f"{method} at {api_url}: {reply['error']}")
        return reply["result"]

    return call


def verify_api(api_url, user="Admin", password="zabbix"):
    """(version, session token): the API answers and the login works."""
    call = zabbix_api(api_url)
    version = call("apiinfo.version", {})
    token = call("user.login", {"username": user, "password": password})
    users = call("user.get", {"output": ["username"], "filter": {"username": user}}, token)
    if not users:
        raise HarnessError(f"user.get found no {user!r} after login")
    return version, token


# What scripts/quickstart-demo.sh puts in the registry, and its collectors' own hosts (their
# self_host, built by the leader's zabbix-sync): Zabbix host -> plugin.
DEMO_HOSTS = {"quickstart-linux": "linux", "quickstart-postgresql": "postgresql",
              "quickstart-redis": "redis", "trapline-quickstart-collector-1": "trapline",
              "trapline-quickstart-collector-2": "trapline"}


def mem_total_bytes():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise HarnessError("/proc/meminfo has no MemTotal")


def verify_demo(env, zbx_token, timeout):
    """The quick start's trapline part, end to end: the panel answers and its admin login
    works, both collectors are active, every demo host has a Zabbix host with a dashboard and
    fresh values (the linux host's memory total equal to this machine's), and this machine
    waits on the Discovery page. Waits up to `timeout` s for what is still coming; raises
    HarnessError naming what did not come."""
    stack_dir = env["TRAPLINE_STACK_DIR"]

    def read(name):
        try:
            with open(os.path.join(stack_dir, name)) as f:
                return f.read().strip()
        except OSError as e:
            raise HarnessError(f"{name} is missing from {stack_dir}: did the demo run? ({e})")

    panel, api_token, admin_pw = read("panel.url"), read("api.token"), read("admin.password")
    call = zabbix_api(env["ZBX_API_URL"])
    mem_total = mem_total_bytes()
    discovered = socket.gethostname()
    t0 = time.monotonic()
    missing = ["(not checked yet)"]
    while True:
        missing = []
        status, st, _ = api_call(panel, "GET", "/api/v1/status", token=api_token)
        if status != 200 or st.get("role") != "leader" or not st.get("registry_connected"):
            missing.append(f"the coordinator as leader with its registry (status {status}: {st})")
        status, cols, _ = api_call(panel, "GET", "/api/v1/collectors", token=api_token)
        active = [c["name"] for c in (cols if isinstance(cols, list) else cols.get("collectors", []))
                  if c.get("state") == "active"] if status == 200 else []
        if len(active) < 2:
            missing.append(f"two active collectors (active: {active})")
        hosts = {h["host"]: h for h in call("host.get", {
            "output": ["host", "hostid"], "filter": {"host": list(DEMO_HOSTS)}}, zbx_token)}
        for name, plugin in DEMO_HOSTS.items():
            if name not in hosts:
                missing.append(f"Zabbix host {name}")
                continue
            items = call("item.get", {"hostids": hosts[name]["hostid"],
                                      "output": ["key_", "lastclock", "lastvalue"]}, zbx_token)
            fresh = [i for i in items if time.time() - int(i["lastclock"]) < 60]
            if len(fresh) < 8:
                missing.append(f"values on {name} ({len(fresh)} of {len(items)} items fresh)")
            dash = call("dashboard.get", {"output": ["name"],
                                          "search": {"name": name}}, zbx_token)
            if not dash:
                missing.append(f"a dashboard for {name}")
            if plugin == "trapline":
                tasks = [i for i in items if i["key_"] == "trapline.targets" and
                         int(i["lastclock"])]
                if not tasks or float(tasks[0]["lastvalue"]) < 1:
                    missing.append(f"trapline.targets >= 1 on {name} (a collector with tasks)")
            if plugin == "linux":
                mem = [i for i in items if i["key_"] == "linux.mem.total" and int(i["lastclock"])]
                if not mem or float(mem[0]["lastvalue"]) != mem_total:
                    missing.append(f"linux.mem.total = {mem_total} (MemTotal) on {name} "
                                   f"(Zabbix has {mem[0]['lastvalue'] if mem else 'none'})")
        status, found, _ = api_call(
            panel, "GET", "/api/v1/hosts?enabled=false&q=" + urllib.parse.quote(discovered),
            token=api_token)
        if status != 200 or not any(h.get("name") == discovered and h.get("discovered")
                                    for h in found.get("hosts", [])):
            missing.append(f"this machine ({discovered!r}) on the Discovery page")
        if not missing:
            break
        if time.monotonic() - t0 > timeout:
            raise HarnessError(f"after {timeout:.0f} s still missing: " + "; ".join(missing))
        time.sleep(3)
    status, session, _ = api_call(panel, "POST", "/api/v1/session",
                                  body={"user": "admin", "password": admin_pw})
    if status != 200 or session.get("role") != "admin":
        raise HarnessError(f"the panel's admin login: {status} {session}")
    return time.monotonic() - t0


def cmd_up(args):
    install_signal_handlers()
    dir = os.path.abspath(args.dir)
    env_file = os.path.abspath(args.env_file or os.path.join(dir, "env.sh"))
    if os.path.exists(env_file):
        os.unlink(env_file)
    if args.fresh and os.path.exists(dir):
        say(f"stack: --fresh: removing {dir}")
        shutil.rmtree(dir)
    st = None
    rc = 0
    try:
        st = LocalStack(dir, targets=not args.no_targets, server_port=args.server_port,
                        frontend_port=args.frontend_port)
        say(f"stack: starting in {dir} (first run builds a cached Zabbix database: ~20 s)")
        t0 = time.monotonic()
        st.start()
        verify_api(st.zabbix.api_url)
        write_env_file(env_file, st.env())
        say(f"stack: up in {time.monotonic() - t0:.1f}s")
        summary(st, env_file)
        while True:
            time.sleep(1)
            dead = st.dead()
            if dead:
                say(f"stack: ERROR: {', '.join(dead)} stopped unexpectedly")
                say(st.zabbix.log_tail(30))
                rc = 1
                break
    except Stop as s:
        say(f"stack: {s} received, stopping everything")
    except (HarnessError, OSError) as e:
        say(f"stack: ERROR: {e}")
        rc = 1
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if os.path.exists(env_file):
            os.unlink(env_file)
        if st is not None:
            try:
                st.close()
                say(f"stack: stopped (Zabbix server, frontend, PostgreSQL"
                    f"{', Redis, sshd' if st.redis else ''}); state: {dir}")
            except Exception as e:  # noqa: BLE001
                say(f"stack: ERROR while stopping: {e}")
                rc = 1
    return rc


def cmd_check(args):
    install_signal_handlers()
    tmp = None
    dir = args.dir
    if not dir:
        parent = os.environ.get("TRAPLINE_TEST_TMP") or None
        tmp = dir = tempfile.mkdtemp(prefix="trapline-check-", dir=parent)
    st = None
    rc = 1
    t0 = time.monotonic()
    try:
        st = LocalStack(dir, targets=not args.no_targets)
        st.start()
        version, _ = verify_api(st.zabbix.api_url)
        z = st.zabbix
        host = f"stack-check-{int(time.time())}"
        ids = z.create_trapper_host(host, [("check.value", 3)])
        res = z.send(host, "check.value", 42)
        if res["processed"] != 1:
            raise HarnessError(f"trapper did not accept the check value: {res}")
        rows = z.wait_for_history(ids["check.value"], count=1, timeout=30)
        if rows[0][2] != 42:
            raise HarnessError(f"history has {rows}, want 42")
        z.api("host.delete", [str(z.hostid(host))])
        if st.redis and st.redis.command("PING") != "PONG":
            raise HarnessError("redis target does not answer PING")
        if st.ssh:
            st.ssh.ssh("true")
        say(f"stack check: OK (Zabbix {version}; API login, trapper -> history; "
            f"{time.monotonic() - t0:.1f}s)")
        rc = 0
    except Stop as s:
        say(f"stack check: interrupted by {s}")
    except (HarnessError, OSError) as e:
        say(f"stack check: FAILED: {e}")
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if st is not None:
            try:
                st.close()
            except Exception as e:  # noqa: BLE001
                say(f"stack check: ERROR while stopping: {e}")
                rc = 1
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


def cmd_verify(args):
    env = {}
    with open(args.env_file) as f:
        for line in f:
            if line.startswith("export "):
                k, _, v = line[7:].strip().partition("=")
                env[k] = shlex.split(v)[0] if v else ""
    try:
        version, token = verify_api(env["ZBX_API_URL"], env.get("ZBX_API_USER", "Admin"),
                                    env.get("ZBX_API_PASSWORD", "zabbix"))
        say(f"stack verify: OK: Zabbix {version} at {env['ZBX_API_URL']}, login "
            f"{env.get('ZBX_API_USER', 'Admin')} works; server port {env.get('ZBX_SERVER_PORT')}")
        if args.demo:
            waited = verify_demo(env, token, args.timeout)
            say(f"stack verify: OK: the demo after {waited:.0f} s: coordinator leader, two active "
                f"collectors, Zabbix hosts {', '.join(DEMO_HOSTS)} with dashboards and fresh "
                f"values (linux.mem.total = this machine's MemTotal; the collectors' own hosts "
                f"with their targets), this machine on the "
                f"Discovery page, the panel's admin login")
    except (HarnessError, OSError, KeyError, ValueError) as e:
        say(f"stack verify: FAILED: {e}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start the stack and run until a signal")
    up.add_argument("--dir", default=os.path.join(ROOT, ".stack"))
    up.add_argument("--env-file")
    up.add_argument("--fresh", action="store_true", help="remove DIR first")
    up.add_argument("--no-targets", action="store_true", help="no Redis/sshd targets")
    up.add_argument("--server-port", type=int)
    up.add_argument("--frontend-port", type=int)
    ck = sub.add_parser("check", help="bring up, verify, tear down")
    ck.add_argument("--dir", help="state folder (default: a temporary one, removed after)")
    ck.add_argument("--no-targets", action="store_true")
    vf = sub.add_parser("verify", help="verify a running stack from its env file")
    vf.add_argument("--env-file", required=True)
    vf.add_argument("--demo", action="store_true",
                    help="also the quick start's trapline part (scripts/quickstart-demo.sh)")
    vf.add_argument("--timeout", type=float, default=240,
                    help="seconds to wait for the demo's values (default 240)")
    args = p.parse_args()
    return {"up": cmd_up, "check": cmd_check, "verify": cmd_verify}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
