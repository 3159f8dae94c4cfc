"""Real servers on free loopback ports, in temporary folders, for trapline's tests.

Everything listens on 127.0.0.1 only. Every server runs in its own process group (its own
session); stop()/kill() end the whole group and any descendants, and so do SIGINT, SIGTERM,
SIGHUP (when the program has not installed its own handlers) and interpreter exit (atexit).
When the process that started them dies without cleaning up (SIGKILL, CTest timeout), a
watchdog process (watchdog.py, one per harness process, in its own session) stops the servers
and removes the temporary folders; the main server processes also get a parent-death signal
(servers started from the main thread).

Classes (each is a context manager: `with RedisServer() as r: ...`):

    PostgresServer  private cluster (initdb; the postmaster in the foreground), run as `postgres`
    RedisServer     redis-server with its own config, no persistence by default
    SshServer       sshd with its own host key, user keys (ed25519, RSA), known_hosts line
    ZabbixStack     Zabbix 6.0 server + frontend (php -S) over its own PostgresServer

Lifecycle common to all: start() (idempotent), stop() (processes end, files stay, start() again
reuses the same port and data), kill() (SIGKILL, files stay), close() (stop() and remove the
folder if the harness created it). Folders: `tempfile.mkdtemp()` under $TRAPLINE_TEST_TMP (or the
system default), removed at close()/exit unless keep=True or TRAPLINE_KEEP_TMP=1.

Logs stay in each server's folder; a server that fails to start raises ServerError whose
message carries the tail of its logs. Progress lines go to stderr with a "[harness]" prefix
(silence them with TRAPLINE_HARNESS_QUIET=1).
"""

from __future__ import annotations

from .watchdog import proc_table
import atexit
import csv
import fcntl
import gzip
import hashlib
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HOST = "127.0.0.1"

_QUIET = os.environ.get("TRAPLINE_HARNESS_QUIET", "") not in ("", "0")


def _log(msg: str) -> None:
    if not _QUIET:
        print(f"[harness] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# errors


class HarnessError(RuntimeError):
    """Something in the harness failed; the message says what and where."""


class ServerError(HarnessError):
    """A server failed to start or stop; the message carries the tail of its logs."""

    def __init__(self, message: str, logs=()):
        self.logs = [p if isinstance(p, tuple) else (p, 0) for p in logs]
        super().__init__(message + _tails(self.logs))


class PsqlError(HarnessError):
    pass


class RedisError(HarnessError):
    pass


class ZabbixApiError(HarnessError):
    def __init__(self, method: str, error: dict):
        self.method = method
        self.code = error.get("code")
        self.message = error.get("message", "")
        self.data = error.get("data", "")
        super().__init__(f"Zabbix API {method} failed: {self.code} {self.message} {self.data}")


class _PortInUse(Exception):
    pass


def _tail(path: str, lines: int = 40, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(offset if offset <= size else 0, size - 64 * 1024)
            f.seek(start)
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return "(not written)"
    except OSError as e:
        return f"(cannot read: {e})"
    return "\n".join(data.splitlines()[-lines:])


def _tails(logs, lines: int = 40) -> str:
    out = []
    for path, offset in logs:
        out.append(f"\n---- tail of {path} ----\n{_tail(path, lines, offset)}")
    if out:
        out.append("\n---- end of logs ----")
    return "".join(out)


def _read_since(path: str, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------
# ports and folders

_ports_lock = threading.Lock()
_handed_out: set[int] = set()


def free_port(low: int | None = None, high: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (never the same one twice per
    process). Without a range the kernel picks one (ephemeral range, 32768-60999 here); with
    low/high a random port in [low, high] is probed (Zabbix accepts ListenPort 1024-32767)."""
    import random
    with _ports_lock:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind((HOST, random.randint(low, high) if low else 0))
                except OSError:
                    continue
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise HarnessError(f"free_port: no free port found in [{low}, {high}]")


def port_is_free(port: int) -> bool:
    """True when a server could bind 127.0.0.1:port now (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def make_base_dir(name: str = "stack") -> str:
    """A fresh folder (mode 0755, so the `postgres` and `zabbix` users can reach it)."""
    parent = os.environ.get("TRAPLINE_TEST_TMP") or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"trapline-{name}-", dir=parent)
    os.chmod(path, 0o755)
    return path


def _user(name: str | None):
    return pwd.getpwnam(name) if name else None


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def _check_reachable(path: str, user: str | None) -> None:
    """Raise a clear error when `user` cannot traverse every folder leading to `path`."""
    if not user or os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    groups = {g for g in os.getgrouplist(user, pw.pw_gid)}
    p = os.path.abspath(path)
    parts = []
    while True:
        parts.append(p)
        if p == "/":
            break
        p = os.path.dirname(p)
    for d in reversed(parts):
        if not os.path.exists(d):
            break
        st = os.stat(d)
        mode = st.st_mode
        ok = (st.st_uid == pw.pw_uid and mode & 0o100) or (st.st_gid in groups and mode & 0o010) \
            or (mode & 0o001)
        if not ok:
            raise HarnessError(
                f"user {user!r} cannot reach {path}: folder {d} has mode {oct(mode & 0o777)} "
                f"(owner uid {st.st_uid}); chmod o+x {d} or point TRAPLINE_TEST_TMP at a "
                f"folder every user can traverse (e.g. /tmp)")


def _chown_tree(path: str, user: str | None) -> None:
    if not user or os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            try:
                os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid, follow_symlinks=False)
            except FileNotFoundError:
                pass


def _mkdir(path: str, user: str | None = None, mode: int = 0o755) -> str:
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if user and os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


_SOCK_MAX = 107


def _socket_dir(preferred: str, user: str | None, longest_name: int) -> tuple[str, bool]:
    """preferred if short enough for AF_UNIX paths, else a short folder under /tmp (temp=True)."""
    if len(preferred) + 1 + longest_name <= _SOCK_MAX - 4:
        return _mkdir(preferred, user, 0o755), False
    d = tempfile.mkdtemp(prefix="trapline-sock-", dir="/tmp")
    _watchdog(f"dir {d}")
    os.chmod(d, 0o755)
    if user and os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d, True


# --------------------------------------------------------------------------------------------
# processes


# pid -> (ppid, pgrp, state, starttime) for every process; shared with the watchdog, which
# runs as a script of its own.
_proc_table = proc_table


def processes_in_groups(pgids, descendants: bool = True) -> list[int]:
    """Live (non-zombie) processes whose process group is one of pgids, and (by default) all
    their descendants (PostgreSQL backends and sshd sessions run in sessions of their own)."""
    pgids = set(pgids)
    table = _proc_table()
    roots = [pid for pid, (_pp, pg, _st, _t) in table.items() if pg in pgids]
    pids = _tree(roots, table) if descendants else roots
    return sorted(p for p in pids if table[p][2] not in ("Z", "X"))


def _tree(root_pids, table) -> dict[int, int]:
    """root_pids and all their descendants -> starttime."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pg, _st, _t) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, list(root_pids)
    while todo:
        pid = todo.pop()
        if pid in out or pid not in table:
            continue
        out[pid] = table[pid][3]
        todo.extend(children.get(pid, []))
    return out


def _alive_same(pid: int, starttime: int, table=None) -> bool:
    table = table if table is not None else _proc_table()
    info = table.get(pid)
    return bool(info) and info[3] == starttime and info[2] not in ("Z", "X")


_SETPRIV = "/usr/bin/setpriv"

_wd_lock = threading.Lock()
_wd: subprocess.Popen | None = None


def _watchdog(line: str) -> None:
    """Tell the watchdog process (watchdog.py; started on first use, in its own session) about
    a server process or folder; it cleans them up if this process dies without doing so."""
    global _wd
    if os.environ.get("TRAPLINE_NO_WATCHDOG") == "1":
        return
    with _wd_lock:
        if _wd is None or _wd.poll() is not None:
            _wd = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(
                os.path.abspath(__file__)), "watchdog.py")], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        try:
            _wd.stdin.write((line + "\n").encode())
            _wd.stdin.flush()
        except OSError:
            pass


class _Proc:
    """One server process in its own session/process group, its output appended to a log file."""

    def __init__(self, name, argv, log_path, run_as=None, env=None, cwd=None,
                 stop_signal=signal.SIGTERM, pdeathsig=signal.SIGTERM):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.run_as = run_as
        self.env = env
        self.cwd = cwd
        self.stop_signal = stop_signal
        self.pdeathsig = pdeathsig
        self.popen: subprocess.Popen | None = None
        self.log_offset = 0

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    def start(self):
        argv = list(self.argv)
        wrap = []
        if self.run_as and self.run_as != _current_user():
            pw = pwd.getpwnam(self.run_as)
            wrap += [f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
        if self.pdeathsig and threading.current_thread() is threading.main_thread():
            wrap += [f"--pdeathsig={signal.Signals(self.pdeathsig).name[3:]}"]
        if wrap:
            argv = [_SETPRIV] + wrap + ["--"] + argv
        self.log_offset = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        with open(self.log_path, "ab") as logf:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=self.env, cwd=self.cwd, close_fds=True)
        _watchdog(f"proc {self.popen.pid} {int(self.stop_signal)}")
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def _members(self):
        table = _proc_table()
        roots = [self.popen.pid] + [p for p, (_pp, pg, _s, _t) in table.items()
                                    if pg == self.popen.pid]
        return _tree(roots, table)

    def stop(self, timeout: float = 30.0, sig=None) -> None:
        """Signal the main process, wait, then SIGKILL whatever is left of its group and tree."""
        if self.popen is None:
            return
        members = self._members()
        if self.alive():
            try:
                os.kill(self.popen.pid, sig or self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _log(f"{self.name} (pid {self.popen.pid}) did not stop within {timeout:.0f}s: "
                     "SIGKILL")
        self._kill_rest(members)

    def kill(self) -> None:
        if self.popen is None:
            return
        self._kill_rest(self._members())

    def _kill_rest(self, members) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        table = _proc_table()
        for pid, st in members.items():
            if _alive_same(pid, st, table):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            pass
        _watchdog(f"unproc {self.popen.pid}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            table = _proc_table()
            left = [p for p, st in members.items() if _alive_same(p, st, table)]
            left += processes_in_groups([self.popen.pid], descendants=False)
            if not left:
                return
            time.sleep(0.02)
        raise HarnessError(f"{self.name}: processes {sorted(set(left))} survived SIGKILL")


def _run(argv, run_as=None, check=True, timeout=300, input=None, env=None, what=None, cwd=None):
    """Run a helper command (optionally as another user); raise HarnessError with its output."""
    argv = [str(a) for a in argv]
    if run_as and run_as != _current_user():
        pw = pwd.getpwnam(run_as)
        argv = [_SETPRIV, f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                "--"] + argv
    try:
        cp = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env,
                            cwd=cwd)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"{what or argv[0]}: timed out after {timeout}s: {' '.join(argv)}") from e
    if check and cp.returncode != 0:
        out = (cp.stdout or b"").decode("utf-8", "replace")[-4000:]
        err = (cp.stderr or b"").decode("utf-8", "replace")[-4000:]
        raise HarnessError(f"{what or argv[0]} failed (exit {cp.returncode}): {' '.join(argv)}\n"
                           f"stdout: {out}\nstderr: {err}")
    return cp


# --------------------------------------------------------------------------------------------
# registry of live servers; cleanup on exit and on signals

_live_lock = threading.RLock()
_LIVE: list = []
_handlers_installed = False


def live_servers() -> list:
    with _live_lock:
        return list(_LIVE)


def cleanup_all() -> None:
    """close() every server this process started and has not closed yet (newest first)."""
    with _live_lock:
        servers = list(reversed(_LIVE))
    for s in servers:
        try:
            s.close()
        except BaseException as e:  # noqa: BLE001 - keep cleaning up
            print(f"[harness] cleanup of {s!r} failed: {e}", file=sys.stderr, flush=True)


def _on_signal(signum, _frame):
    _log(f"received {signal.Signals(signum).name}: stopping all servers")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass
    cleanup_all()
    if signum == signal.SIGINT:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed or threading.current_thread() is not threading.main_thread():
        return
    _handlers_installed = True
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        cur = signal.getsignal(sig)
        if cur in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(sig, _on_signal)


atexit.register(cleanup_all)


def _register(server) -> None:
    if getattr(server, "_parent", None) is not None:
        return
    with _live_lock:
        if server not in _LIVE:
            _LIVE.append(server)
    _install_handlers()


def _unregister(server) -> None:
    with _live_lock:
        if server in _LIVE:
            _LIVE.remove(server)


# --------------------------------------------------------------------------------------------
# base class


class Server:
    """Base of every server: a folder, a port, processes, logs."""

    kind = "server"
    stop_timeout = 30.0

    def __init__(self, dir: str | None = None, port: int | None = None, keep: bool | None = None):
        self._own_dir = dir is None
        self.dir = os.path.abspath(dir) if dir else make_base_dir(self.kind)
        os.makedirs(self.dir, exist_ok=True)
        self.host = HOST
        self.port = port
        self._auto_port = port is None
        self.keep = keep if keep is not None else os.environ.get("TRAPLINE_KEEP_TMP") == "1"
        self._procs: list[_Proc] = []
        self._temp_dirs: list[str] = []
        self._parent = None
        self._closed = False
        if self._own_dir and not self.keep:
            _watchdog(f"dir {self.dir}")

    def __repr__(self):
        return f"<{type(self).__name__} {self.host}:{self.port} dir={self.dir}>"

    # -- lifecycle
    @property
    def running(self) -> bool:
        return bool(self._procs) and all(p.alive() for p in self._procs)

    def _reopen(self):
        """After close(): recreate the folder so start() works again."""
        if self._closed and not os.path.isdir(self.dir):
            os.makedirs(self.dir)
            os.chmod(self.dir, 0o755)
            if self._own_dir and not self.keep:
                _watchdog(f"dir {self.dir}")
        self._closed = False

    def start(self):
        if self.running:
            return self
        self._reopen()
        _register(self)
        attempts = 4 if self._auto_port else 1
        t0 = time.monotonic()
        for attempt in range(attempts):
            if self.port is None or (self._auto_port and not port_is_free(self.port)):
                self.port = free_port()
            try:
                self._start()
            except _PortInUse:
                self._kill_procs()
                if attempt + 1 == attempts:
                    raise ServerError(f"{self.kind}: port {self.port} kept being taken",
                                      self.log_files())
                _log(f"{self.kind}: port {self.port} taken meanwhile; trying another")
                self.port = free_port()
                continue
            except BaseException:
                self._kill_procs()
                raise
            _log(f"{self.kind} up on {self.host}:{self.port} in {time.monotonic() - t0:.1f}s "
                 f"({self.dir})")
            self._auto_port = False  # a restart keeps the port (clients reconnect to it)
            return self
        raise AssertionError("unreachable")

    def _start(self):
        raise NotImplementedError

    def stop(self):
        """Stop the processes (gracefully, then SIGKILL); files and port stay for start()."""
        errors = []
        for p in reversed(self._procs):
            try:
                p.stop(self.stop_timeout)
            except HarnessError as e:
                errors.append(str(e))
        self._procs = []
        if errors:
            raise HarnessError("; ".join(errors))

    def kill(self):
        """SIGKILL every process of this server (files stay)."""
        self._kill_procs()

    def _kill_procs(self):
        for p in reversed(self._procs):
            p.kill()
        self._procs = []

    def close(self):
        """stop() and remove the folder if the harness created it (unless keep)."""
        if self._closed:
            return
        try:
            self.stop()
        finally:
            self._closed = True
            _unregister(self)
            for d in self._temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
                _watchdog(f"undir {d}")
            self._temp_dirs = []
            if self._own_dir and not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
                _watchdog(f"undir {self.dir}")
            elif self._own_dir:
                _log(f"kept {self.dir}")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()
        return False

    # -- introspection
    def log_files(self) -> list:
        return [(p.log_path, p.log_offset) for p in self._procs]

    def log_tail(self, lines: int = 40) -> str:
        return _tails([(p, 0) for p, _o in self.log_files()], lines)

    def pgids(self) -> list[int]:
        return [p.pid for p in self._procs if p.popen]

    def processes(self) -> list[int]:
        return processes_in_groups(self.pgids())

    def ports(self) -> list[int]:
        return [self.port] if self.port else []

    # -- helpers for subclasses
    def _wait(self, check, timeout, what, proc: _Proc, logs=None):
        logs = logs or [(proc.log_path, proc.log_offset)]
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                text = "".join(_read_since(p, o) for p, o in logs)
                if self._auto_port and "Address already in use" in text:
                    raise _PortInUse()
                raise ServerError(f"{self.kind}: {proc.name} exited with code "
                                  f"{proc.popen.returncode} while waiting for {what} "
                                  f"(command: {' '.join(proc.argv)})", logs)
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{self.kind}: timed out after {timeout:.0f}s waiting for {what} "
                                  f"(pid {proc.pid}, command: {' '.join(proc.argv)})", logs)
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# PostgreSQL


def pg_bin_dir() -> str:
    env = os.environ.get("TRAPLINE_PG_BIN")
    if env:
        return env
    base = "/usr/lib/postgresql"
    versions = sorted((int(v) for v in os.listdir(base) if v.isdigit()
                       and os.path.exists(f"{base}/{v}/bin/postgres")), reverse=True) \
        if os.path.isdir(base) else []
    if not versions:
        raise HarnessError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin "
                           "(run scripts/deps.sh)")
    return f"{base}/{versions[0]}/bin"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


_NULL = "\x1a<NULL>\x1a"


class PostgresServer(Server):
    """A private PostgreSQL cluster on 127.0.0.1:port, run as user `postgres` when root.

    Fields: port, dir, datadir, sockdir, bindir, superuser, password, log_path.
    Auth: trust (or scram-sha-256 over TCP when password= is given; the superuser gets it).
    Durability is off (fsync, synchronous_commit, full_page_writes): it is a test database.
    """

    kind = "postgres"
    DEFAULT_SETTINGS = {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "300",
        "shared_buffers": "128MB",
        "logging_collector": "off",
        "log_destination": "stderr",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        "timezone": "UTC",
    }

    def __init__(self, dir=None, port=None, password=None, settings=None, superuser="postgres",
                 keep=None, init_from=None):
        super().__init__(dir, port, keep)
        self.bindir = pg_bin_dir()
        try:
            self.major = int(os.path.basename(os.path.dirname(self.bindir)))
        except ValueError:
            self.major = 15
        self.superuser = superuser
        self.password = password
        self.settings = dict(self.DEFAULT_SETTINGS, **(settings or {}))
        self.run_as = "postgres" if os.geteuid() == 0 else None
        self.init_from = init_from
        self.datadir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.sockdir = None

    def _prepare(self):
        _check_reachable(self.dir, self.run_as)
        _mkdir(self.dir, self.run_as, 0o755)
        if self.sockdir is None:
            self.sockdir, temp = _socket_dir(os.path.join(self.dir, "sock"), self.run_as, 24)
            if temp:
                self._temp_dirs.append(self.sockdir)
        if not os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            self._init()

    def _init(self):
        t0 = time.monotonic()
        if os.path.exists(self.datadir):
            shutil.rmtree(self.datadir)
        if self.init_from:
            _run(["cp", "-a", self.init_from, self.datadir], what="copy of cached PGDATA")
            _chown_tree(self.datadir, self.run_as)
            os.chmod(self.datadir, 0o700)
            _log(f"postgres: PGDATA copied from {self.init_from} in "
                 f"{time.monotonic() - t0:.1f}s")
            return
        argv = [f"{self.bindir}/initdb", "-D", self.datadir, "-U", self.superuser, "-E", "UTF8",
                "--locale=C", "--no-sync", "--auth=trust"]
        pwfile = None
        if self.password:
            pwfile = os.path.join(self.dir, ".pwfile")
            with open(pwfile, "w") as f:
                f.write(self.password + "\n")
            _chown_tree(pwfile, self.run_as)
            argv += [f"--pwfile={pwfile}"]
        try:
            cp = _run(argv, run_as=self.run_as, check=False, cwd=self.dir)
        finally:
            if pwfile:
                os.unlink(pwfile)
        with open(os.path.join(self.dir, "initdb.log"), "wb") as f:
            f.write(cp.stdout + cp.stderr)
        if cp.returncode != 0:
            raise ServerError(f"postgres: initdb failed (exit {cp.returncode})",
                              [os.path.join(self.dir, "initdb.log")])
        host_auth = "scram-sha-256" if self.password else "trust"
        with open(os.path.join(self.datadir, "pg_hba.conf"), "w") as f:
            f.write("# written by the trapline test harness\n"
                    "local all all trust\n"
                    f"host all all 127.0.0.1/32 {host_auth}\n")
        _chown_tree(self.datadir, self.run_as)
        _log(f"postgres: initdb in {time.monotonic() - t0:.1f}s")

    def _start(self):
        self._prepare()
        argv = [f"{self.bindir}/postgres", "-D", self.datadir, "-p", str(self.port),
                "-c", f"listen_addresses={HOST}", "-c", f"unix_socket_directories={self.sockdir}"]
        for k, v in self.settings.items():
            argv += ["-c", f"{k}={v}"]
        proc = _Proc("postgres", argv, self.log_path, run_as=self.run_as, cwd=self.dir,
                     stop_signal=signal.SIGINT, pdeathsig=signal.SIGQUIT)
        self._procs = [proc.start()]
        self._wait(self._ready, 60, "PostgreSQL to accept connections", proc)

    def _ready(self) -> bool:
        cp = subprocess.run([f"{self.bindir}/pg_isready", "-q", "-h", HOST, "-p", str(self.port),
                             "-t", "1"], capture_output=True)
        return cp.returncode == 0

    # -- client helpers
    def _env(self, password=None):
        env = dict(os.environ)
        env["PGCONNECT_TIMEOUT"] = "10"
        env["PGCLIENTENCODING"] = "UTF8"
        env.pop("PGSERVICE", None)
        pw = password if password is not None else self.password
        if pw:
            env["PGPASSWORD"] = pw
        return env

    def _psql_argv(self, db, user):
        return [f"{self.bindir}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p",
                str(self.port), "-U", user or self.superuser, "-d", db]

    def psql(self, sql: str, db: str = "postgres", user: str | None = None,
             password: str | None = None, timeout: float = 120) -> list[tuple]:
        """Run SQL (statements separated by ';') and return the last statement's rows as tuples
        of str (None for NULL)."""
        argv = self._psql_argv(db, user) + ["--csv", "-t", "-P", f"null={_NULL}", "-c", sql]
        cp = subprocess.run(argv, capture_output=True, timeout=timeout, env=self._env(password))
        if cp.returncode != 0:
            raise PsqlError(f"psql on {HOST}:{self.port}/{db} as {user or self.superuser} failed "
                            f"(exit {cp.returncode}): {cp.stderr.decode('utf-8', 'replace').strip()}"
                            f"\nSQL: {sql[:2000]}")
        text = cp.stdout.decode("utf-8", "replace")
        rows = []
        for rec in csv.reader(io.StringIO(text)):
            rows.append(tuple(None if v == _NULL else v for v in rec) if rec else ("",))
        return rows

    def psql_value(self, sql: str, db: str = "postgres", user: str | None = None):
        rows = self.psql(sql, db, user)
        return rows[0][0] if rows and rows[0] else None

    def psql_script(self, script: str | bytes, db: str = "postgres", user: str | None = None,
                    single_transaction: bool = True, timeout: float = 600) -> None:
        """Feed a whole SQL script through psql's stdin (ON_ERROR_STOP)."""
        data = script.encode() if isinstance(script, str) else script
        argv = self._psql_argv(db, user) + (["-1"] if single_transaction else []) + ["-f", "-"]
        cp = subprocess.run(argv, input=data, capture_output=True, timeout=timeout,
                            env=self._env())
        if cp.returncode != 0:
            raise PsqlError(f"psql script on {HOST}:{self.port}/{db} failed (exit {cp.returncode}):"
                            f" {cp.stderr.decode('utf-8', 'replace').strip()[-4000:]}")

    def import_sql_gz(self, path: str, db: str, user: str | None = None) -> None:
        with gzip.open(path, "rb") as f:
            self.psql_script(f.read(), db=db, user=user)

    def create_role(self, name: str, password: str | None = None, superuser: bool = False,
                    login: bool = True) -> None:
        opts = ["LOGIN" if login else "NOLOGIN"] + (["SUPERUSER"] if superuser else [])
        if password is not None:
            opts.append(f"PASSWORD {sql_literal(password)}")
        self.psql(f"CREATE ROLE {_sql_ident(name)} {' '.join(opts)}")

    def create_db(self, name: str, owner: str | None = None, template: str | None = None) -> None:
        sql = f"CREATE DATABASE {_sql_ident(name)}"
        if owner:
            sql += f" OWNER {_sql_ident(owner)}"
        if template and self.major < 15:
            sql += f" TEMPLATE {_sql_ident(template)}"
        elif template:
            # FILE_COPY: a checkpoint and a file copy, much faster than the WAL_LOG default
            sql += f" TEMPLATE {_sql_ident(template)} STRATEGY FILE_COPY"
        self.psql(sql)

    def drop_db(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {_sql_ident(name)} WITH (FORCE)")

    def db_exists(self, name: str) -> bool:
        return bool(self.psql(f"SELECT 1 FROM pg_database WHERE datname = {sql_literal(name)}"))

    def role_exists(self, name: str) -> bool:
        return bool(self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = {sql_literal(name)}"))

    def dsn(self, db: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        """libpq key=value connection string (TCP to 127.0.0.1)."""
        s = f"host={HOST} port={self.port} dbname={db} user={user or self.superuser}"
        pw = password if password is not None else (self.password if not user or
                                                    user == self.superuser else None)
        if pw:
            s += f" password={pw}"
        return s

    def url(self, db: str = "postgres", user: str | None = None, password: str | None = None) -> str:
        from urllib.parse import quote
        user = user or self.superuser
        pw = password if password is not None else (self.password if user == self.superuser
                                                    else None)
        cred = quote(user, safe="") + (":" + quote(pw, safe="") if pw else "")
        return f"postgresql://{cred}@{HOST}:{self.port}/{quote(db, safe='')}"


# --------------------------------------------------------------------------------------------
# Redis


def _resp_encode(args) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise RedisError("connection closed by redis")
    t, rest = line[:1], line[1:-2]
    if t == b"+":
        return rest.decode()
    if t == b"-":
        raise RedisError(rest.decode())
    if t == b":":
        return int(rest)
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise RedisError(f"unexpected reply {line!r}")


def redis_command(port: int, *args, password: str | None = None, user: str | None = None,
                  host: str = HOST, timeout: float = 5.0):
    """Send one command over a fresh raw socket (AUTH first when a password is given)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        f = s.makefile("rb")
        if password is not None:
            s.sendall(_resp_encode(["AUTH", user, password] if user else ["AUTH", password]))
            _resp_read(f)
        s.sendall(_resp_encode(args))
        return _resp_read(f)


class RedisServer(Server):
    """redis-server on 127.0.0.1:port with its own config; no persistence by default.

    password= sets requirepass (the default user); users={name: password} adds ACL users with
    full access. Fields: port, dir, password, users, conf_path, log_path.
    """

    kind = "redis"

    def __init__(self, dir=None, port=None, password=None, users=None, persistence=False,
                 extra_conf=None, keep=None):
        super().__init__(dir, port, keep)
        self.password = password
        self.users = dict(users or {})
        self.persistence = persistence
        self.extra_conf = extra_conf or {}
        self.conf_path = os.path.join(self.dir, "redis.conf")
        self.log_path = os.path.join(self.dir, "redis.log")

    def _write_conf(self):
        lines = [
            "# written by the trapline test harness",
            f"bind {HOST}", f"port {self.port}", "protected-mode yes", "daemonize no",
            "supervised no", f"dir {self.dir}", 'logfile ""',
            f"pidfile {os.path.join(self.dir, 'redis.pid')}", "databases 16",
        ]
        if self.persistence:
            lines += ["save 60 1", "appendonly yes"]
        else:
            lines += ['save ""', "appendonly no"]
        if self.password:
            lines.append(f"requirepass {self.password}")
        for name, pw in self.users.items():
            lines.append(f"user {name} on >{pw} ~* &* +@all")
        for k, v in self.extra_conf.items():
            lines.append(f"{k} {v}")
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def _start(self):
        self._write_conf()
        proc = _Proc("redis-server", ["/usr/bin/redis-server", self.conf_path], self.log_path,
                     cwd=self.dir)
        self._procs = [proc.start()]
        self._wait(lambda: self.command("PING", timeout=1) == "PONG", 30, "PING -> PONG", proc)

    def command(self, *args, password: str | None = None, user: str | None = None,
                timeout: float = 5.0):
        """One command over a raw socket; authenticates with the server's password by default."""
        if password is None and user is None:
            password = self.password
        return redis_command(self.port, *args, password=password, user=user, timeout=timeout)

    def ping(self) -> bool:
        return self.command("PING") == "PONG"

    def url(self, db: int = 0, user: str | None = None, password: str | None = None) -> str:
        pw = password if password is not None else (self.users.get(user) if user else
                                                    self.password)
        cred = f"{user or ''}:{pw}@" if pw else ""
        return f"redis://{cred}{HOST}:{self.port}/{db}"


# --------------------------------------------------------------------------------------------
# SSH


class SshServer(Server):
    """sshd -D on 127.0.0.1:port with its own config, host key and user keys.

    Fields: port, user, dir, config_path, log_path, host_key (private key path),
    host_key_pub (its public key line), known_hosts (path), known_hosts_line
    ("[127.0.0.1]:PORT ssh-ed25519 ..."), key_ed25519 and key_rsa (private key paths;
    ".pub" next to them), authorized_keys (path; both public keys are in it).
    Methods: ssh_argv(*cmd), sftp_argv(batch_file), ssh(*cmd), client_options().
    """

    kind = "sshd"

    def __init__(self, dir=None, port=None, user=None, extra_config=None, keep=None,
                 rsa_bits=3072):
        super().__init__(dir, port, keep)
        self.user = user or _current_user()
        self.extra_config = extra_config or {}
        self.rsa_bits = rsa_bits
        self.config_path = os.path.join(self.dir, "sshd_config")
        self.log_path = os.path.join(self.dir, "sshd.log")
        self.host_key = os.path.join(self.dir, "ssh_host_ed25519_key")
        self.key_ed25519 = os.path.join(self.dir, "id_ed25519")
        self.key_rsa = os.path.join(self.dir, "id_rsa")
        self.authorized_keys = os.path.join(self.dir, "authorized_keys")
        self.known_hosts = os.path.join(self.dir, "known_hosts")
        self.host_key_pub = ""
        self.known_hosts_line = ""

    def _keygen(self, path, ktype, bits=None, comment="trapline-test"):
        if os.path.exists(path) and os.path.exists(path + ".pub"):
            return
        for p in (path, path + ".pub"):
            if os.path.exists(p):
                os.unlink(p)
        argv = ["/usr/bin/ssh-keygen", "-q", "-t", ktype, "-N", "", "-C", comment, "-f", path]
        if bits:
            argv[2:2] = ["-b", str(bits)]
        _run(argv, what=f"ssh-keygen {ktype}")

    def _prepare(self):
        t0 = time.monotonic()
        self._keygen(self.host_key, "ed25519", comment="trapline-test-host")
        self._keygen(self.key_ed25519, "ed25519")
        self._keygen(self.key_rsa, "rsa", bits=self.rsa_bits)
        with open(self.host_key + ".pub") as f:
            self.host_key_pub = " ".join(f.read().split()[:2])
        pubs = []
        for k in (self.key_ed25519, self.key_rsa):
            with open(k + ".pub") as f:
                pubs.append(f.read().strip())
        with open(self.authorized_keys, "w") as f:
            f.write("\n".join(pubs) + "\n")
        os.chmod(self.authorized_keys, 0o644)
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        _log(f"sshd: keys ready in {time.monotonic() - t0:.1f}s")

    def _write_config(self):
        cfg = {
            "ListenAddress": f"{HOST}:{self.port}",
            "Port": str(self.port),
            "AddressFamily": "inet",
            "HostKey": self.host_key,
            "PidFile": os.path.join(self.dir, "sshd.pid"),
            "AuthorizedKeysFile": self.authorized_keys,
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "PermitRootLogin": "prohibit-password",
            "AllowUsers": self.user,
            "StrictModes": "no",
            "UsePAM": "no",
            "X11Forwarding": "no",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "UseDNS": "no",
            "MaxStartups": "200:30:400",
            "MaxSessions": "64",
            "MaxAuthTries": "10",
            "LogLevel": "VERBOSE",
            "Subsystem": "sftp /usr/lib/openssh/sftp-server",
        }
        cfg.update(self.extra_config)
        with open(self.config_path, "w") as f:
            f.write("# written by the trapline test harness\n")
            for k, v in cfg.items():
                f.write(f"{k} {v}\n")
        self.known_hosts_line = f"[{HOST}]:{self.port} {self.host_key_pub}"
        with open(self.known_hosts, "w") as f:
            f.write(self.known_hosts_line + "\n")

    def _start(self):
        if not self.host_key_pub:
            self._prepare()
        self._write_config()
        cp = _run(["/usr/sbin/sshd", "-t", "-f", self.config_path], check=False)
        if cp.returncode != 0:
            raise ServerError(f"sshd: config test failed: {cp.stderr.decode().strip()} "
                              f"({self.config_path})")
        proc = _Proc("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", self.config_path], self.log_path,
                     cwd=self.dir)
        self._procs = [proc.start()]
        self._wait(self._banner, 30, "the SSH-2.0 banner", proc)

    def _banner(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=1) as s:
            s.settimeout(1)
            return s.recv(64).startswith(b"SSH-2.0")

    def key(self, which: str = "ed25519") -> str:
        return {"ed25519": self.key_ed25519, "rsa": self.key_rsa}.get(which, which)

    def client_options(self, key: str = "ed25519") -> list[str]:
        """ssh/sftp options: this key only, this known_hosts only, no config files, batch mode."""
        return ["-F", "none", "-i", self.key(key), "-o", "IdentitiesOnly=yes", "-o",
                "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o",
                f"UserKnownHostsFile={self.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
                "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"]

    def ssh_argv(self, *command: str, key: str = "ed25519", user: str | None = None) -> list[str]:
        return (["/usr/bin/ssh"] + self.client_options(key) +
                ["-p", str(self.port), f"{user or self.user}@{HOST}", "--"] + list(command))

    def sftp_argv(self, batch_file: str, key: str = "ed25519", user: str | None = None) -> list[str]:
        return (["/usr/bin/sftp", "-b", batch_file] + self.client_options(key) +
                ["-P", str(self.port), f"{user or self.user}@{HOST}"])

    def ssh(self, *command: str, key: str = "ed25519", check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        cp = subprocess.run(self.ssh_argv(*command, key=key), capture_output=True, text=True,
                            timeout=timeout)
        if check and cp.returncode != 0:
            raise HarnessError(f"ssh to {HOST}:{self.port} ({key}) `{' '.join(command)}` failed "
                               f"(exit {cp.returncode}): {cp.stderr.strip()}"
                               + _tails([(self.log_path, 0)], 20))
        return cp


# --------------------------------------------------------------------------------------------
# Zabbix 6.0 server + frontend

ZBX_SQL_DIR = "/usr/share/zabbix-server-pgsql"
ZBX_SQL_FILES = ("schema.sql.gz", "images.sql.gz", "data.sql.gz")
ZBX_FRONTEND_SRC = "/usr/share/zabbix"
ZBX_SERVER_BIN = "/usr/sbin/zabbix_server"
ZBX_SENDER_BIN = "/usr/bin/zabbix_sender"
ZBX_TEMPLATE_DB = "zabbix_template"
_CACHE_FORMAT = b"trapline-zabbix-template-v1"

# value_type -> history table
HISTORY_TABLES = {0: "history", 1: "history_str", 2: "history_log", 3: "history_uint",
                  4: "history_text"}


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _template_cache_key(bindir: str) -> str:
    h = hashlib.sha256(_CACHE_FORMAT)
    h.update(subprocess.run([f"{bindir}/postgres", "--version"], capture_output=True).stdout)
    for name in ZBX_SQL_FILES:
        h.update(name.encode())
        h.update(_file_sha256(os.path.join(ZBX_SQL_DIR, name)).encode())
    return h.hexdigest()[:16]


def default_cache_dir() -> str | None:
    """$TRAPLINE_CACHE_DIR (empty or "none" disables the cache), else /var/tmp/trapline-cache."""
    v = os.environ.get("TRAPLINE_CACHE_DIR")
    if v is None:
        return "/var/tmp/trapline-cache"
    return None if v.strip() in ("", "none", "0") else v


def _build_template(pg: PostgresServer) -> None:
    t0 = time.monotonic()
    if not pg.role_exists("zabbix"):
        pg.create_role("zabbix")
    pg.drop_db(ZBX_TEMPLATE_DB)
    pg.create_db(ZBX_TEMPLATE_DB, owner="zabbix")
    for name in ZBX_SQL_FILES:
        path = os.path.join(ZBX_SQL_DIR, name)
        if not os.path.exists(path):
            raise HarnessError(f"missing {path}: install zabbix-server-pgsql (scripts/deps.sh)")
        pg.import_sql_gz(path, db=ZBX_TEMPLATE_DB, user="zabbix")
    pg.psql("VACUUM ANALYZE", db=ZBX_TEMPLATE_DB)
    pg.psql("CHECKPOINT")
    _log(f"zabbix: template database {ZBX_TEMPLATE_DB} imported in {time.monotonic() - t0:.1f}s")


def cached_template_datadir(cache_dir: str) -> str:
    """A PGDATA (cluster stopped) holding role `zabbix` and database zabbix_template, built once
    per (PostgreSQL version, Zabbix SQL files) under cache_dir and reused afterwards."""
    bindir = pg_bin_dir()
    key = _template_cache_key(bindir)
    major = os.path.basename(os.path.dirname(bindir))
    entry = os.path.join(cache_dir, f"zabbix-template-pg{major}-{key}")
    data, marker = os.path.join(entry, "data"), os.path.join(entry, "READY")
    if os.path.exists(marker):
        return data
    os.makedirs(cache_dir, exist_ok=True)
    os.chmod(cache_dir, 0o755)
    with open(os.path.join(cache_dir, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(marker):
            return data
        for other in os.listdir(cache_dir):  # builds that died half-way (we hold the lock)
            if other.startswith(".build-"):
                shutil.rmtree(os.path.join(cache_dir, other), ignore_errors=True)
        _log(f"zabbix: building the template cluster cache in {entry} (once; ~15 s)")
        build = tempfile.mkdtemp(prefix=".build-", dir=cache_dir)
        os.chmod(build, 0o755)
        # wal_level=minimal: tables created in the import's transaction are not WAL-logged
        pg = PostgresServer(dir=build, keep=True, settings={
            "wal_level": "minimal", "max_wal_senders": "0", "min_wal_size": "32MB",
            "max_wal_size": "1GB"})
        try:
            pg.start()
            _build_template(pg)
            pg.stop()
            # clean shutdown: drop the import's recycled WAL segments (halves the copy)
            _run([f"{pg.bindir}/pg_resetwal", "-D", pg.datadir], run_as=pg.run_as,
                 what="pg_resetwal of the template cluster")
        except BaseException:
            pg.kill()
            shutil.rmtree(build, ignore_errors=True)
            raise
        finally:
            _unregister(pg)
        if os.path.exists(entry):
            shutil.rmtree(entry)
        os.rename(build, entry)
        os.sync()
        with open(marker, "w") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S\n"))
        # drop stale entries of other versions
        for other in os.listdir(cache_dir):
            if other.startswith("zabbix-template-") and other != os.path.basename(entry):
                shutil.rmtree(os.path.join(cache_dir, other), ignore_errors=True)
    return data


def _sender_quote(v) -> str:
    s = str(v)
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class ZabbixStack(Server):
    """Zabbix 6.0 server + frontend over a PostgresServer of its own, on 127.0.0.1.

    Fields (after start()): server_port, frontend_port, frontend_url, api_url, pg
    (PostgresServer; database `zabbix`, role `zabbix`), server_conf (path), server_log (path),
    frontend_dir, frontend_log, version (apiinfo.version), user/password (Admin/zabbix).
    `port` is the server (trapper) port.

    dir: keep state there (reused on the next start: existing database, same ports if free);
    default: a fresh temp folder removed at close().
    cache_dir: where the template cluster is cached (default default_cache_dir()).
    server_conf: extra/overriding zabbix_server.conf options, e.g. {"StartTrappers": 10}.
    disable_default_host: disable the "Zabbix server" host of a fresh database (it polls an
    agent on 127.0.0.1:10050 that does not exist).
    """

    kind = "zabbix"
    stop_timeout = 60.0
    user = "Admin"
    password = "zabbix"

    SERVER_CONF_DEFAULTS = {
        "LogType": "file",
        "LogFileSize": "0",
        "DebugLevel": "3",
        "CacheUpdateFrequency": "1",
        "StartPollers": "1",
        "StartPollersUnreachable": "1",
        "StartPingers": "0",
        "StartDiscoverers": "0",
        "StartHTTPPollers": "0",
        "StartTimers": "1",
        "StartEscalators": "1",
        "StartAlerters": "1",
        "StartHistoryPollers": "1",
        "StartLLDProcessors": "1",
        "StartODBCPollers": "0",
        "StartProxyPollers": "0",
        "StartReportWriters": "0",
        "StartJavaPollers": "0",
        "StartVMwareCollectors": "0",
        "StartSNMPTrapper": "0",
        "StartIPMIPollers": "0",
        "StartTrappers": "5",
        "StartDBSyncers": "4",
        "StartPreprocessors": "3",
        "StatsAllowedIP": HOST,
        "AllowUnsupportedDBVersions": "1",
        "LogSlowQueries": "3000",
        "Timeout": "4",
    }

    PHP_INI = {
        "post_max_size": "16M",
        "upload_max_filesize": "2M",
        "max_execution_time": "300",
        "max_input_time": "300",
        "memory_limit": "512M",
        "date.timezone": "UTC",
        "display_errors": "0",
        "log_errors": "1",
        "opcache.enable_cli": "1",
    }

    def __init__(self, dir=None, server_port=None, frontend_port=None, db_port=None,
                 cache_dir: str | None | bool = True, server_conf=None, disable_default_host=True,
                 php_workers=4, keep=None):
        super().__init__(dir, server_port, keep)
        self.zabbix_user = "zabbix" if os.geteuid() == 0 else None
        self.cache_dir = default_cache_dir() if cache_dir is True else (cache_dir or None)
        self.extra_server_conf = {k: str(v) for k, v in (server_conf or {}).items()}
        self.disable_default_host = disable_default_host
        self.php_workers = php_workers
        self.state_path = os.path.join(self.dir, "state.json")
        state = {}
        if os.path.exists(self.state_path):
            try:
                with open(self.state_path) as f:
                    state = json.load(f)
            except (OSError, ValueError):
                state = {}
        self._fixed_frontend_port = frontend_port is not None
        self.frontend_port = frontend_port or self._reusable(state.get("frontend_port"))
        if server_port is None and self._reusable(state.get("server_port")):
            self.port = state["server_port"]  # still auto: may move when taken
        db_port = db_port or self._reusable(state.get("db_port"))
        self.pg = PostgresServer(dir=os.path.join(self.dir, "pg"), port=db_port, keep=True)
        self.pg._parent = self
        self.zdir = os.path.join(self.dir, "zabbix")
        self.server_conf = os.path.join(self.zdir, "zabbix_server.conf")
        self.server_log = os.path.join(self.zdir, "zabbix_server.log")
        self.server_out = os.path.join(self.zdir, "zabbix_server.out")
        self.frontend_root = os.path.join(self.dir, "frontend")
        self.frontend_dir = os.path.join(self.frontend_root, "ui")
        self.frontend_log = os.path.join(self.frontend_root, "php.log")
        self.version = None
        self._server: _Proc | None = None
        self._frontend: _Proc | None = None
        self._token = None
        self._api_id = 0
        self._sockdir = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @staticmethod
    def _reusable(port):
        return port if isinstance(port, int) and port_is_free(port) else None

    # -- properties
    @property
    def server_port(self) -> int | None:
        return self.port

    @property
    def frontend_url(self) -> str:
        return f"http://{HOST}:{self.frontend_port}/"

    @property
    def api_url(self) -> str:
        return self.frontend_url + "api_jsonrpc.php"

    @property
    def running(self) -> bool:
        return self.pg.running and self._server is not None and self._server.alive() and \
            self._frontend is not None and self._frontend.alive()

    @property
    def server_running(self) -> bool:
        return self._server is not None and self._server.alive()

    def ports(self) -> list[int]:
        return [p for p in (self.port, self.frontend_port, self.pg.port) if p]

    def pgids(self) -> list[int]:
        return [p.pid for p in (self._server, self._frontend) if p and p.popen] + self.pg.pgids()

    def log_files(self) -> list:
        out = [(self.server_log, 0), (self.server_out, 0), (self.frontend_log, 0),
               (self.pg.log_path, 0)]
        return [(p, o) for p, o in out if os.path.exists(p)]

    # -- lifecycle
    def start(self):
        if self.running:
            return self
        self._reopen()
        self.pg._closed = False
        _register(self)
        t0 = time.monotonic()
        try:
            self._start_db()
            self._write_frontend()
            if not self.server_running:
                self._start_server()
            if not (self._frontend and self._frontend.alive()):
                self._start_frontend()
            self.version = self.api("apiinfo.version", {}, auth=False)
        except BaseException:
            self._kill_all()
            raise
        self._auto_port = False  # restarts keep the ports (clients reconnect to them)
        self._fixed_frontend_port = True
        self._save_state()
        _log(f"zabbix {self.version} up in {time.monotonic() - t0:.1f}s: server "
             f"{HOST}:{self.port}, frontend {self.frontend_url}, db {HOST}:{self.pg.port} "
             f"({self.dir})")
        return self

    def _save_state(self):
        with open(self.state_path, "w") as f:
            json.dump({"server_port": self.port, "frontend_port": self.frontend_port,
                       "db_port": self.pg.port}, f)

    def _start_db(self):
        fresh = not os.path.exists(os.path.join(self.pg.datadir, "PG_VERSION"))
        if fresh and self.cache_dir:
            try:
                _check_reachable(self.cache_dir, self.pg.run_as)
                self.pg.init_from = cached_template_datadir(self.cache_dir)
            except (OSError, HarnessError) as e:
                _log(f"zabbix: template cache {self.cache_dir} unusable ({e}); building the "
                     "template database in this cluster instead (~15 s)")
                self.pg.init_from = None
        self.pg.start()
        if not self.pg.db_exists("zabbix"):
            t0 = time.monotonic()
            if not self.pg.db_exists(ZBX_TEMPLATE_DB):
                _build_template(self.pg)
            self.pg.create_db("zabbix", owner="zabbix", template=ZBX_TEMPLATE_DB)
            if self.disable_default_host:
                self.pg.psql("UPDATE hosts SET status = 1 WHERE host = 'Zabbix server' "
                             "AND status = 0", db="zabbix")
            _log(f"zabbix: database cloned from {ZBX_TEMPLATE_DB} in {time.monotonic() - t0:.1f}s")

    def _write_server_conf(self):
        _check_reachable(self.dir, self.zabbix_user)
        _mkdir(self.zdir, self.zabbix_user, 0o755)
        if self._sockdir is None:
            self._sockdir, temp = _socket_dir(os.path.join(self.zdir, "sock"), self.zabbix_user,
                                              40)
            if temp:
                self._temp_dirs.append(self._sockdir)
        conf = {
            "ListenIP": HOST,
            "ListenPort": str(self.port),
            "LogFile": self.server_log,
            "PidFile": os.path.join(self.zdir, "zabbix_server.pid"),
            "SocketDir": self._sockdir,
            "TmpDir": self.zdir,
            "DBHost": HOST,
            "DBPort": str(self.pg.port),
            "DBName": "zabbix",
            "DBUser": "zabbix",
        }
        conf.update(self.SERVER_CONF_DEFAULTS)
        conf.update(self.extra_server_conf)
        with open(self.server_conf, "w") as f:
            f.write("# written by the trapline test harness\n")
            for k, v in conf.items():
                f.write(f"{k}={v}\n")
        os.chmod(self.server_conf, 0o644)

    # Zabbix accepts ListenPort 1024-32767: below the kernel's ephemeral range
    PORT_RANGE = (20000, 32767)

    def _start_server(self):
        attempts = 4 if self._auto_port else 1
        for attempt in range(attempts):
            if self.port is None or (self._auto_port and not port_is_free(self.port)):
                self.port = free_port(*self.PORT_RANGE)
            self._write_server_conf()
            if os.path.exists(self.server_log) and self.zabbix_user:
                _chown_tree(self.server_log, self.zabbix_user)
            log_offset = os.path.getsize(self.server_log) if os.path.exists(self.server_log) else 0
            proc = _Proc("zabbix_server", [ZBX_SERVER_BIN, "-f", "-c", self.server_conf],
                         self.server_out, run_as=self.zabbix_user, cwd=self.zdir)
            self._server = proc.start()
            logs = [(self.server_log, log_offset), (self.server_out, proc.log_offset)]

            def ready():
                return "started [trapper #1]" in _read_since(self.server_log, log_offset)
            try:
                t0 = time.monotonic()
                self._wait(ready, 60, "'started [trapper #1]' in its log", proc, logs)
                _log(f"zabbix: server ready on {HOST}:{self.port} in "
                     f"{time.monotonic() - t0:.1f}s")
                return
            except _PortInUse:
                proc.kill()
                self._server = None
                if attempt + 1 == attempts:
                    raise ServerError("zabbix: server port kept being taken", logs)
                self.port = free_port(*self.PORT_RANGE)

    def _write_frontend(self):
        t0 = time.monotonic()
        _mkdir(self.frontend_root)
        if os.path.exists(self.frontend_dir):
            shutil.rmtree(self.frontend_dir)
        # hard links (fast; PHP never writes its sources); the two files we change are
        # unlinked first and written anew, so /usr/share/zabbix stays untouched
        cp = _run(["cp", "-al", ZBX_FRONTEND_SRC, self.frontend_dir], check=False)
        if cp.returncode != 0:
            shutil.rmtree(self.frontend_dir, ignore_errors=True)
            _run(["cp", "-a", ZBX_FRONTEND_SRC, self.frontend_dir], what="copy of the frontend")
        conf_php = os.path.join(self.frontend_dir, "conf", "zabbix.conf.php")
        cfg_class = os.path.join(self.frontend_dir, "include", "classes", "core",
                                 "CConfigFile.php")
        with open(cfg_class) as f:
            src = f.read()
        new, n = re.subn(r"const CONFIG_FILE_PATH = '[^']*';",
                         f"const CONFIG_FILE_PATH = '{conf_php}';", src)
        if n != 1:
            raise HarnessError(f"cannot find CONFIG_FILE_PATH in {cfg_class}")
        os.unlink(cfg_class)
        with open(cfg_class, "w") as f:
            f.write(new)
        self._write_frontend_conf()
        _mkdir(os.path.join(self.frontend_root, "sessions"), mode=0o700)
        _log(f"zabbix: frontend copied to {self.frontend_dir} in {time.monotonic() - t0:.1f}s")

    def _write_frontend_conf(self):
        conf_php = os.path.join(self.frontend_dir, "conf", "zabbix.conf.php")
        if os.path.lexists(conf_php):
            os.unlink(conf_php)
        with open(conf_php, "w") as f:
            f.write(f"""<?php
// written by the trapline test harness
$DB['TYPE']     = 'POSTGRESQL';
$DB['SERVER']   = '{HOST}';
$DB['PORT']     = '{self.pg.port}';
$DB['DATABASE'] = 'zabbix';
$DB['USER']     = 'zabbix';
$DB['PASSWORD'] = '';
$DB['SCHEMA']   = '';
$DB['ENCRYPTION']  = false;
$DB['KEY_FILE']    = '';
$DB['CERT_FILE']   = '';
$DB['CA_FILE']     = '';
$DB['VERIFY_HOST'] = false;
$DB['CIPHER_LIST'] = '';
$DB['VAULT_URL']     = '';
$DB['VAULT_DB_PATH'] = '';
$DB['VAULT_TOKEN']   = '';
$DB['DOUBLE_IEEE754'] = true;
$ZBX_SERVER      = '{HOST}';
$ZBX_SERVER_PORT = '{self.port or 10051}';
$ZBX_SERVER_NAME = 'trapline test';
$IMAGE_FORMAT_DEFAULT = IMAGE_FORMAT_PNG;
""")

    def _start_frontend(self):
        auto = not self._fixed_frontend_port
        attempts = 4 if auto else 1
        for attempt in range(attempts):
            if self.frontend_port is None or (auto and not port_is_free(self.frontend_port)):
                self.frontend_port = free_port()
            self._write_frontend_conf()
            ini = dict(self.PHP_INI)
            ini["session.save_path"] = os.path.join(self.frontend_root, "sessions")
            ini["error_log"] = self.frontend_log
            argv = ["/usr/bin/php", "-S", f"{HOST}:{self.frontend_port}", "-t", self.frontend_dir]
            for k, v in ini.items():
                argv += ["-d", f"{k}={v}"]
            env = dict(os.environ)
            if self.php_workers and self.php_workers > 1:
                env["PHP_CLI_SERVER_WORKERS"] = str(self.php_workers)
            proc = _Proc("php -S", argv, self.frontend_log, env=env, cwd=self.frontend_dir)
            self._frontend = proc.start()

            def ready():
                return isinstance(self.api("apiinfo.version", {}, auth=False, timeout=5), str)
            try:
                t0 = time.monotonic()
                saved_auto, self._auto_port = self._auto_port, auto
                try:
                    self._wait(ready, 60, f"the API at {self.api_url}", proc)
                finally:
                    self._auto_port = saved_auto
                _log(f"zabbix: frontend ready at {self.frontend_url} in "
                     f"{time.monotonic() - t0:.1f}s")
                return
            except _PortInUse:
                proc.kill()
                self._frontend = None
                if attempt + 1 == attempts:
                    raise ServerError("zabbix: frontend port kept being taken", self.log_files())
                self.frontend_port = free_port()

    def stop(self):
        errors = []
        for p in (self._frontend, self._server):
            if p:
                try:
                    p.stop(self.stop_timeout)
                except HarnessError as e:
                    errors.append(str(e))
        self._frontend = self._server = None
        self._token = None
        try:
            self.pg.stop()
        except HarnessError as e:
            errors.append(str(e))
        if errors:
            raise HarnessError("; ".join(errors))

    def kill(self):
        self._kill_all()

    def close(self):
        try:
            super().close()
        finally:
            for d in self.pg._temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
                _watchdog(f"undir {d}")
            self.pg._temp_dirs = []

    def _kill_all(self):
        for p in (self._frontend, self._server):
            if p:
                p.kill()
        self._frontend = self._server = None
        self._token = None
        self.pg.kill()

    def _kill_procs(self):
        self._kill_all()

    # -- the Zabbix server alone (outage tests)
    def stop_server(self, timeout: float | None = None) -> None:
        """Stop zabbix_server gracefully (DB and frontend keep running); port becomes free."""
        if self._server:
            self._server.stop(timeout or self.stop_timeout)
        self._server = None
        if self.port and not wait_port_free(self.port, 10):
            raise HarnessError(f"zabbix: port {self.port} still busy after stopping the server")

    def kill_server(self) -> None:
        """SIGKILL zabbix_server and its children (values in its caches are lost)."""
        if self._server:
            self._server.kill()
        self._server = None

    def start_server(self) -> None:
        """Start zabbix_server again on the same port (waits for 'started [trapper #1]')."""
        if self.server_running:
            return
        saved, self._auto_port = self._auto_port, False
        try:
            self._start_server()
        finally:
            self._auto_port = saved

    def reset_db(self) -> None:
        """A fresh `zabbix` database cloned from the template (server restarted around it)."""
        was_running = self.server_running
        self.stop_server()
        self.pg.drop_db("zabbix")
        self.pg.create_db("zabbix", owner="zabbix", template=ZBX_TEMPLATE_DB)
        if self.disable_default_host:
            self.pg.psql("UPDATE hosts SET status = 1 WHERE host = 'Zabbix server'", db="zabbix")
        self._token = None
        if was_running:
            self.start_server()

    def reload_config_cache(self) -> None:
        """zabbix_server -R config_cache_reload (the configuration syncer syncs at once)."""
        _run([ZBX_SERVER_BIN, "-c", self.server_conf, "-R", "config_cache_reload"],
             run_as=self.zabbix_user, what="zabbix_server -R config_cache_reload", timeout=30)

    def stats(self) -> dict:
        """The server's internal statistics (`zabbix.stats` request on the trapper port)."""
        return self.trapper_request({"request": "zabbix.stats"})

    def trapper_request(self, obj: dict, timeout: float = 10.0) -> dict:
        """One JSON request over the ZBXD protocol to the server port; returns the reply."""
        import struct
        import zlib
        data = json.dumps(obj).encode()
        with socket.create_connection((HOST, self.port), timeout=timeout) as s:
            s.sendall(b"ZBXD\x01" + struct.pack("<II", len(data), 0) + data)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
        if len(buf) < 13 or buf[:4] != b"ZBXD":
            raise HarnessError(f"bad reply from zabbix trapper {HOST}:{self.port}: {buf[:64]!r}")
        flags = buf[4]
        if flags & 0x04:
            length, _res = struct.unpack("<QQ", buf[5:21])
            body = buf[21:21 + length]
        else:
            length, _res = struct.unpack("<II", buf[5:13])
            body = buf[13:13 + length]
        if flags & 0x02:
            body = zlib.decompress(body)
        return json.loads(body)

    def send_raw(self, values, timeout: float = 30.0) -> dict:
        """Send [(host, key, value[, clock[, ns]])] in one "sender data" request over the ZBXD
        protocol (no zabbix_sender; values may contain newlines). Returns processed/failed/
        total and the raw reply."""
        data = []
        for v in values:
            d = {"host": v[0], "key": v[1], "value": str(v[2])}
            if len(v) > 3:
                d["clock"] = int(v[3])
            if len(v) > 4:
                d["ns"] = int(v[4])
            data.append(d)
        reply = self.trapper_request({"request": "sender data", "data": data}, timeout)
        m = re.search(r"processed: (\d+); failed: (\d+); total: (\d+)", reply.get("info", ""))
        if reply.get("response") != "success" or not m:
            raise HarnessError(f"zabbix trapper {HOST}:{self.port} refused sender data: {reply}")
        return {"processed": int(m.group(1)), "failed": int(m.group(2)),
                "total": int(m.group(3)), "reply": reply}

    def _cache_item_count(self) -> int | None:
        st = self.stats()
        return (st.get("data") or {}).get("items")

    def _db_item_count(self) -> int:
        # what zabbix.stats counts as items: enabled items (plain and discovered; not discovery
        # rules, not prototypes) of monitored hosts
        return int(self.pg.psql_value(
            "SELECT count(*) FROM items i JOIN hosts h ON h.hostid = i.hostid "
            "WHERE h.status = 0 AND i.status = 0 AND i.flags IN (0, 4)", db="zabbix"))

    def wait_config_cache(self, timeout: float = 15.0) -> None:
        """Reload the configuration cache and wait until the server has loaded every enabled
        item of a monitored host (compares `zabbix.stats` items with the database)."""
        deadline = time.monotonic() + timeout
        self.reload_config_cache()
        want = self._db_item_count()
        have = None
        while time.monotonic() < deadline:
            try:
                have = self._cache_item_count()
            except (OSError, ValueError, HarnessError):
                have = None
            if have is not None and have >= want:
                return
            time.sleep(0.1)
        raise HarnessError(f"zabbix: configuration cache has {have} items, database {want}, "
                           f"after {timeout:.0f}s" + _tails([(self.server_log, 0)], 20))

    # -- API
    def api(self, method: str, params=None, auth: bool = True, timeout: float = 60.0):
        """JSON-RPC call to the frontend; logs in as Admin/zabbix once (6.0: token in `auth`)."""
        if params is None:
            params = {}
        body = {"jsonrpc": "2.0", "method": method, "params": params}
        if auth and method not in ("apiinfo.version", "user.login"):
            if self._token is None:
                self.login()
            body["auth"] = self._token
        self._api_id += 1
        body["id"] = self._api_id
        req = urllib.request.Request(self.api_url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json-rpc"})
        try:
            with self._opener.open(req, timeout=timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raise HarnessError(f"Zabbix API {method}: HTTP {e.code} from {self.api_url}: "
                               f"{e.read()[:2000]!r}") from e
        try:
            reply = json.loads(raw)
        except ValueError as e:
            raise HarnessError(f"Zabbix API {method}: not JSON from {self.api_url}: "
                               f"{raw[:2000]!r}") from e
        if "error" in reply:
            err = reply["error"]
            if auth and self._token and "re-login" in str(err.get("data", "")):
                self._token = None
                return self.api(method, params, auth, timeout)
            raise ZabbixApiError(method, err)
        return reply["result"]

    def login(self, user: str | None = None, password: str | None = None) -> str:
        self._token = self.api("user.login", {"username": user or self.user,
                                              "password": password or self.password}, auth=False)
        return self._token

    def hostgroup_id(self, name: str) -> str:
        got = self.api("hostgroup.get", {"filter": {"name": [name]}, "output": ["groupid"]})
        if got:
            return got[0]["groupid"]
        return self.api("hostgroup.create", {"name": name})["groupids"][0]

    def create_trapper_host(self, host: str, items, group: str = "trapline tests",
                            wait: bool = True, host_params: dict | None = None) -> dict:
        """Create a host (no interfaces) with trapper items and return {key: itemid}.

        items: (key, value_type) or (key, value_type, {extra item fields}) or item dicts
        (value_type 0 float, 1 char, 2 log, 3 unsigned, 4 text). With wait=True (default) it
        also waits until the server's configuration cache has the new items."""
        hp = {"host": host, "groups": [{"groupid": self.hostgroup_id(group)}]}
        hp.update(host_params or {})
        hostid = self.api("host.create", hp)["hostids"][0]
        objs = []
        for spec in items:
            if isinstance(spec, dict):
                obj = {"type": 2, "name": spec.get("key_")}
                obj.update(spec)
            else:
                key, vt, *rest = spec
                obj = {"name": key, "key_": key, "type": 2, "value_type": vt}
                if rest:
                    obj.update(rest[0])
            obj["hostid"] = hostid
            objs.append(obj)
        ids = self.api("item.create", objs)["itemids"] if objs else []
        if wait:
            self.wait_config_cache()
        return {o["key_"]: int(i) for o, i in zip(objs, ids)}

    def hostid(self, host: str) -> int | None:
        v = self.pg.psql_value(f"SELECT hostid FROM hosts WHERE host = {sql_literal(host)}",
                               db="zabbix")
        return int(v) if v else None

    def item(self, host: str, key: str) -> tuple[int, int] | None:
        """(itemid, value_type) of host's item `key`, read from the database."""
        rows = self.pg.psql("SELECT i.itemid, i.value_type FROM items i JOIN hosts h ON "
                            f"h.hostid = i.hostid WHERE h.host = {sql_literal(host)} AND "
                            f"i.key_ = {sql_literal(key)}", db="zabbix")
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def _resolve(self, item, value_type):
        if isinstance(item, (tuple, list)):
            found = self.item(*item)
            if not found:
                raise HarnessError(f"zabbix: no item {item[1]!r} on host {item[0]!r}")
            return found[0], value_type if value_type is not None else found[1]
        itemid = int(item)
        if value_type is None:
            v = self.pg.psql_value(f"SELECT value_type FROM items WHERE itemid = {itemid}",
                                   db="zabbix")
            if v is None:
                raise HarnessError(f"zabbix: no item with itemid {itemid}")
            value_type = int(v)
        return itemid, value_type

    def history(self, item, value_type: int | None = None, since: int | None = None) -> list:
        """[(clock, ns, value)] of an item, oldest first, read from the database.
        item: itemid or (host, key); value is float (type 0), int (3) or str."""
        itemid, vt = self._resolve(item, value_type)
        table = HISTORY_TABLES[vt]
        sql = f"SELECT clock, ns, value FROM {table} WHERE itemid = {itemid}"
        if since is not None:
            sql += f" AND clock >= {int(since)}"
        sql += " ORDER BY clock, ns"
        conv = float if vt == 0 else int if vt == 3 else str
        return [(int(c), int(n), conv(v)) for c, n, v in self.pg.psql(sql, db="zabbix")]

    def wait_for_history(self, item, count: int = 1, timeout: float = 30.0,
                         value_type: int | None = None, since: int | None = None) -> list:
        """Poll history() until it has at least `count` rows; return them."""
        itemid, vt = self._resolve(item, value_type)
        deadline = time.monotonic() + timeout
        rows = []
        while time.monotonic() < deadline:
            rows = self.history(itemid, vt, since)
            if len(rows) >= count:
                return rows
            time.sleep(0.2)
        raise HarnessError(f"zabbix: item {item} (itemid {itemid}, {HISTORY_TABLES[vt]}) has "
                           f"{len(rows)} of {count} values after {timeout:.0f}s; server "
                           f"{'running' if self.server_running else 'NOT running'}"
                           + _tails([(self.server_log, 0)], 20))

    # -- the reference sender
    def send(self, host: str, key: str, value, clock: int | None = None,
             ns: int | None = None) -> dict:
        """Send one value with /usr/bin/zabbix_sender; returns processed/failed/total."""
        return self.send_values([(host, key, value) + ((clock,) if clock is not None else ()) +
                                 ((ns,) if ns is not None else ())])

    def send_values(self, values) -> dict:
        """values: [(host, key, value[, clock[, ns]])] (single-line values: zabbix_sender's input
        format has no newlines; use send_raw() for those); one zabbix_sender run. Returns
        {"processed", "failed", "total", "rc", "output"} summed over its replies."""
        with_clock = any(len(v) > 3 for v in values)
        with_ns = any(len(v) > 4 for v in values)
        lines = []
        now = int(time.time())
        for v in values:
            host, key, value = v[0], v[1], v[2]
            fields = [_sender_quote(host), _sender_quote(key)]
            if with_clock:
                fields.append(str(v[3] if len(v) > 3 else now))
            if with_ns:
                fields.append(str(v[4] if len(v) > 4 else 0))
            fields.append(_sender_quote(value))
            lines.append(" ".join(fields))
        argv = [ZBX_SENDER_BIN, "-z", HOST, "-p", str(self.port), "-i", "-"]
        if with_clock:
            argv.append("-T")
        if with_ns:
            argv.append("-N")
        cp = subprocess.run(argv + ["-v"], input="\n".join(lines) + "\n", capture_output=True,
                            text=True, timeout=120)
        out = cp.stdout + cp.stderr
        res = {"processed": 0, "failed": 0, "total": 0, "rc": cp.returncode, "output": out}
        for m in re.finditer(r'^Response from "[^"]*": "processed: (\d+); failed: (\d+); '
                             r'total: (\d+)', out, re.M):
            res["processed"] += int(m.group(1))
            res["failed"] += int(m.group(2))
            res["total"] += int(m.group(3))
        if cp.returncode not in (0, 2) or not re.search(r"processed: \d+", out):
            raise HarnessError(f"zabbix_sender to {HOST}:{self.port} failed (exit "
                               f"{cp.returncode}): {out.strip()[-2000:]}")
        return res
