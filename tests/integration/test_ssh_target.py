"""The SSH target (collector/ssh_target.h) against real sshd servers from the harness.

It drives `ssh_target_driver` (tests/tools/ssh_target_driver.cc, built next to TRAPLINE_BIN),
which runs SshTarget(s) and prints what they deliver as JSON lines; `trapline probe` is
checked too once it knows ssh:// targets.

  test_values_match_server   MemTotal, CPU count, filesystem sizes as the host reports them;
                             SFTP mode, files read in 2 round trips per tick
  test_mount_changes         the mount table read every 10th tick: a tmpfs mounted during the
                             run shows within 10 ticks, its size always its own (after the
                             unmount no reading of the filesystem underneath)
  test_rsa_key               an RSA key works (rsa-sha2-512, which sshd requires)
  test_passphrase_key        keys with a passphrase (ed25519 in OpenSSH format, RSA in PEM) given
                             by --passphrase-file; a wrong or missing passphrase is a clear error
  test_wrong_key             "authentication failed for user X with key FILE", exit 1
  test_agent                 ssh-agent holding the ed25519 or the RSA key; an agent with a
                             wrong key falls back to the key file
  test_unknown_host_key      refused with the fingerprint; with TOFU accepted and recorded
  test_host_key_mismatch     refused with "mismatch" and the known_hosts line, even with TOFU
  test_connection_refused    a closed port: "Connection refused", exit 1
  test_silent_server         a port that accepts but never speaks SSH: the connect timeout
  test_read_error_one_file   a file that opens but cannot be read: a warning, the rest parsed
  test_sftp_refused_fallback sshd without the sftp subsystem: the streaming command delivers
                             the same /proc metrics (filesystems on the 2nd tick)
  test_reconnect             sshd killed and restarted on its port: the target reconnects
                             within its backoff and samples again
  test_memory_per_session    50 more sessions (to an internal-sftp sshd): growth of RSS per
                             session <= 256 KiB (printed)
  test_target_cpu            sshd-side CPU per second of sampling: ours (Debian's sftp-server,
                             internal-sftp, the fallback) next to `while :; do cat FILES; sleep 1;
                             done` over one session, its output sent back over it (printed)
  test_probe_cli             `trapline probe ssh://...` (skipped while probe has no ssh)
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    SOURCE, BackgroundProc, Failure, check, describe, make_tmp, run, run_checks, say, trapline,
    wait_until)
from harness import HOST, SshServer, free_port  # noqa: E402

NOSFTP = {"Subsystem": "nosftp /usr/lib/openssh/sftp-server"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
FS_TYPES = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "vfat", "exfat", "f2fs", "jfs", "ntfs",
            "ntfs3", "fuseblk", "hfsplus", "reiserfs", "bcachefs", "nilfs2"}


def driver_bin() -> str:
    """ssh_target_driver, built next to the trapline binary."""
    trapline_path = os.environ.get("TRAPLINE_BIN") or os.path.join(SOURCE, "build", "trapline")
    path = os.path.join(os.path.dirname(trapline_path), "ssh_target_driver")
    if not os.access(path, os.X_OK):
        raise Failure(f"ssh_target_driver not found next to the trapline binary: {path} "
                      "(ninja -C build ssh_target_driver)")
    return path


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("ssh-target")
        # A fixed port: kill() and start() keep it, so the target reconnects to the same place.
        self.s = SshServer(port=free_port())
        self.s.start()
        self.nosftp = None
        self.internal = None
        self.drv = shutil.copy2(driver_bin(), os.path.join(self.tmp, "ssh_target_driver"))
        self.uri = f"ssh://{self.s.user}@{HOST}:{self.s.port}"

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def fallback_server(self) -> SshServer:
        if self.nosftp is None:
            self.nosftp = SshServer(extra_config=NOSFTP)
            self.nosftp.start()
        return self.nosftp

    def internal_sftp_server(self) -> SshServer:
        """sshd serving SFTP in its own process (`Subsystem sftp internal-sftp`, as
        `ForceCommand internal-sftp` does for a monitoring account), not by exec'ing sftp-server."""
        if self.internal is None:
            self.internal = SshServer(extra_config={"Subsystem": "sftp internal-sftp"})
            self.internal.start()
        return self.internal

    def args(self, server=None, key="ed25519", known_hosts=None):
        s = server or self.s
        return [f"ssh://{s.user}@{HOST}:{s.port}", "--identity", s.key(key), "--known-hosts",
                known_hosts or s.known_hosts]

    def drive(self, *args, seconds: float = 3.5, timeout: float = 60):
        cp = run([self.drv] + [str(a) for a in args] + ["--seconds", str(seconds)],
                 timeout=timeout)
        return cp, parse_lines(cp.stdout)


def setup():
    return Ctx()


def teardown(ctx):
    for s in (ctx.s, ctx.nosftp, ctx.internal):
        if s is not None:
            s.close()


def parse_lines(text: str) -> dict:
    out = {"samples": {}, "entities": [], "warnings": [], "events": [], "stats": [], "memory": None,
           "all_samples": []}
    for i, line in enumerate(text.splitlines(), 1):
        try:
            j = json.loads(line)
        except ValueError:
            raise Failure(f"output line {i} is not JSON: {line!r}") from None
        if "key" in j:
            check(isinstance(j["clock"], int) and 0 <= j["ns"] < 10**9, f"bad time in {j}")
            out["samples"][j["key"]] = j["value"]
            out["all_samples"].append(j)
        elif "entity" in j:
            out["entities"].append(j)
        elif "warning" in j:
            out["warnings"].append(j["warning"])
        elif "event" in j:
            out["events"].append(j)
        elif "stats" in j:
            out["stats"].append(j["stats"])
        elif "memory" in j:
            out["memory"] = j["memory"]
    return out


def meminfo_total_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    raise Failure("no MemTotal in /proc/meminfo")


def cpu_count() -> int:
    with open("/proc/stat") as f:
        return sum(1 for line in f if line.startswith("cpu") and line[3:4].isdigit())


def local_filesystems() -> set:
    """Mountpoints the linux plugin's default filters keep (roughly: local disk filesystems)."""
    out = set()
    with open("/proc/mounts") as f:
        for line in f:
            dev, mp, fstype = line.split()[:3]
            mp = mp.replace("\\040", " ")
            if fstype in FS_TYPES and not mp.startswith(("/var/lib/docker/", "/snap/",
                                                          "/var/lib/containers/",
                                                          "/var/lib/kubelet/",
                                                          "/run/containerd/")):
                out.add(mp)
    return out


def check_host_values(out: dict, what: str) -> None:
    s = out["samples"]
    check("linux.mem.total" in s, lambda: f"{what}: no linux.mem.total in {sorted(s)[:20]}...")
    check(s["linux.mem.total"] == meminfo_total_bytes(),
          f"{what}: linux.mem.total {s['linux.mem.total']} != MemTotal {meminfo_total_bytes()}")
    check(s.get("linux.cpu.count") == cpu_count(),
          f"{what}: linux.cpu.count {s.get('linux.cpu.count')} != {cpu_count()} CPUs in /proc/stat")
    cpus = sorted(e["name"] for e in out["entities"] if e["entity"] == "cpu")
    check(len(cpus) == cpu_count(), f"{what}: cpu entities {cpus}")
    check("linux.load1" in s and "linux.uptime" in s and "linux.fd.max" in s,
          f"{what}: load, uptime or file-nr metrics missing")
    with open("/proc/sys/fs/file-max") as f:
        check(s["linux.fd.max"] == int(f.read()), f"{what}: linux.fd.max {s['linux.fd.max']}")


def check_filesystems(out: dict, what: str) -> None:
    expected = local_filesystems()
    fs = {e["name"] for e in out["entities"] if e["entity"] == "filesystem"}
    if not expected:
        say(f"{what}: no local disk filesystem here; filesystem values not checked")
        return
    check(fs, f"{what}: no filesystem entity (local ones: {sorted(expected)})")
    for mp in fs:
        st = os.statvfs(mp)
        size = out["samples"].get(f"linux.fs.size[{mp}]")
        check(size == st.f_blocks * st.f_frsize,
              f"{what}: linux.fs.size[{mp}] {size} != statvfs {st.f_blocks * st.f_frsize}")
        say(f"{what}: {mp} size {size / 2**30:.1f} GiB matches os.statvfs")


def expect_failure(cp, out, *needles):
    check(cp.returncode == 1, lambda: "expected exit 1\n" + describe(cp))
    for n in needles:
        check(n in cp.stderr, lambda: f"stderr lacks {n!r}\n" + describe(cp))
    check(not out["samples"], "samples despite the failure")


# --------------------------------------------------------------------------------------------


def test_values_match_server(ctx):
    cp, out = ctx.drive(*ctx.args())
    check(cp.returncode == 0, lambda: describe(cp))
    check_host_values(out, "sftp")
    check_filesystems(out, "sftp")
    st = out["stats"][0]
    check(st["mode"] == "sftp", f"mode {st['mode']}")
    # Timing is not asserted (a loaded machine slows everything): only that it ticks.
    check(st["ticks"] >= 2, f"only {st['ticks']} ticks in 3.5 s")
    say(f"{st['ticks']} ticks in 3.5 s, {st['ticks_skipped']} skipped")
    missing_here = [p for p in json.loads(run([ctx.drv, "--list-files"]).stdout)["files"]
                    if not os.access(p, os.R_OK)]
    check(sorted(st["absent"]) == sorted(missing_here),
          f"absent files {st['absent']}, unreadable here {missing_here}")
    # After the first tick, every file in one round with one READ each (a short read of a file
    # the plugin vouches for is the whole file; /proc/mounts gets its EOF READ in the same round);
    # seq_files larger than a page, a mount table that changed, add rounds.
    check(1 <= st["round_trips"] <= 4, f"{st['round_trips']} round trips per tick")
    tick_files = json.loads(run([ctx.drv, "--list-files"]).stdout)["files"]
    check(st["requests"] < 2 * len(tick_files),
          f"{st['requests']} SFTP requests per tick for {len(tick_files)} files")
    say(f"per tick: {st['requests']} SFTP requests in {st['round_trips']} round trips, "
        f"{st['bytes_in']} bytes of /proc; absent: {st['absent']}")
    # Samples of one tick share one time; ticks are ~1 s apart.
    clocks = sorted({(j["clock"], j["ns"]) for j in out["all_samples"]})
    check(len(clocks) == st["ticks"],
          f"{len(clocks)} distinct sample times for {st['ticks']} ticks")


def test_mount_changes(ctx):
    """The mount table is read every 10th tick: a filesystem mounted meanwhile shows within 10
    ticks; unmounted, its figures are never the filesystem underneath (statvfs answers with
    another fsid: that reading is dropped and the table read at the next tick)."""
    mnt = ctx.path("mnt")
    os.makedirs(mnt, exist_ok=True)
    size = 8 << 20
    events = {}

    def mounter():
        time.sleep(2.5)
        # A path as its source, so the plugin counts it as a real filesystem (tmpfs included
        # by the option below).
        run(["mount", "-t", "tmpfs", "-o", f"size={size}", "/dev/trapline-test-fs", mnt])
        events["mounted"] = time.time()
        time.sleep(16)
        run(["umount", mnt])
        events["unmounted"] = time.time()

    t = threading.Thread(target=mounter)
    t.start()
    try:
        cp, out = ctx.drive(*ctx.args(), "--option", "fs_type_include=tmpfs,ext4,xfs,btrfs",
                            seconds=24)
    finally:
        t.join()
        subprocess.run(["umount", mnt], capture_output=True)  # if the run failed midway
    check(cp.returncode == 0, lambda: describe(cp))
    key = f"linux.fs.size[{mnt}]"
    got = [(j["clock"] + j["ns"] / 1e9, j["value"]) for j in out["all_samples"] if j["key"] == key]
    check(got, f"no {key} in 24 s (mounted at +2.5 s for 16 s)")
    first, last = got[0][0], got[-1][0]
    say(f"{key}: {len(got)} readings, first {first - events['mounted']:+.1f} s after the mount, "
        f"last {last - events['unmounted']:+.1f} s from the unmount; sizes {sorted({v for _, v in got})}")
    # Within 10 ticks (a loaded machine may skip some: a generous bound; the sizes are the point).
    check(first - events["mounted"] <= 15, f"seen {first - events['mounted']:.1f} s after the mount")
    check(all(v == size for _, v in got), f"a size other than the tmpfs's: {got}")
    check(last <= events["unmounted"] + 1.5, f"readings {last - events['unmounted']:.1f} s after the unmount")
    st = out["stats"][-1]
    say(f"per tick: {st['requests']} SFTP requests, {st['bytes_in']} bytes")


def test_rsa_key(ctx):
    cp, out = ctx.drive(*ctx.args(key="rsa"), seconds=2.5)
    check(cp.returncode == 0, lambda: describe(cp))
    check_host_values(out, "rsa")
    log = open(ctx.s.log_path).read()
    check("Accepted publickey" in log and "RSA SHA256:" in log, "sshd log shows no RSA login")


def test_passphrase_key(ctx):
    passphrase = "correct horse battery"
    good, bad = ctx.path("passphrase"), ctx.path("wrong_passphrase")
    with open(good, "w") as f:
        f.write(passphrase + "\n")
    with open(bad, "w") as f:
        f.write("not it\n")
    for kind, fmt in (("ed25519", []), ("rsa", ["-m", "PEM"])):
        key = ctx.path(f"{kind}_with_passphrase")
        if not os.path.exists(key):
            shutil.copy2(ctx.s.key(kind), key)
            os.chmod(key, 0o600)
            run(["ssh-keygen", "-q", "-p", "-P", "", "-N", passphrase, "-f", key] + fmt)
        args = ctx.args()
        args[2] = key
        cp = trapline("probe", *args, "--passphrase-file", good, "--seconds", "2.5",
                      "--format", "json", timeout=60)
        check(cp.returncode == 0, lambda: describe(cp))
        total = parse_lines(cp.stdout)["samples"].get("linux.mem.total")
        check(total == meminfo_total_bytes(), f"{kind}: linux.mem.total {total}")
        cp = trapline("probe", *args, "--passphrase-file", bad, "--seconds", "3", timeout=60)
        check(cp.returncode != 0 and "authentication failed" in cp.stderr and
              "passphrase" in cp.stderr and passphrase not in cp.stderr, lambda: describe(cp))
    missing = ctx.path("no_such_passphrase")
    cp = trapline("probe", *args, "--passphrase-file", missing, "--seconds", "3", timeout=60)
    check(cp.returncode != 0 and f"identity_passphrase_file {missing}: cannot open" in cp.stderr,
          lambda: describe(cp))


def test_wrong_key(ctx):
    key = ctx.path("other_key")
    if not os.path.exists(key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    args = ctx.args()
    args[2] = key
    cp, out = ctx.drive(*args)
    expect_failure(cp, out, f"authentication failed for user {ctx.s.user} with key {key}")
    args[2] = ctx.path("no_such_key")
    cp, out = ctx.drive(*args)
    expect_failure(cp, out, "authentication failed", "no_such_key", "cannot use the key file")


def test_agent(ctx):
    sock = ctx.path("agent.sock")
    agent = subprocess.run(["ssh-agent", "-a", sock], capture_output=True, text=True, timeout=10)
    check(agent.returncode == 0, f"ssh-agent failed: {agent.stderr}")
    pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    env = dict(os.environ, SSH_AUTH_SOCK=sock)
    base = [ctx.drv, ctx.uri, "--agent", "--known-hosts", ctx.s.known_hosts, "--seconds", "2"]

    def drive(*extra):
        say(f"$ SSH_AUTH_SOCK={sock} {' '.join(base + list(extra))}")
        cp = subprocess.run(base + list(extra), capture_output=True, text=True, timeout=60,
                            env=env)
        return cp, parse_lines(cp.stdout)

    def agent_holds(key):
        subprocess.run(["ssh-add", "-D"], env=env, capture_output=True, timeout=10)
        cp = subprocess.run(["ssh-add", key], env=env, capture_output=True, text=True, timeout=10)
        check(cp.returncode == 0, f"ssh-add {key}: {cp.stderr}")

    try:
        for which in ("ed25519", "rsa"):
            agent_holds(ctx.s.key(which))
            cp, out = drive()
            check(cp.returncode == 0 and out["samples"], lambda: f"agent with {which}\n" +
                  describe(cp))
        other = ctx.path("agent_other_key")
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other])
        agent_holds(other)
        cp, out = drive()
        expect_failure(cp, out, "authentication failed", "ssh-agent")
        cp, out = drive("--identity", ctx.s.key_ed25519)
        check(cp.returncode == 0 and out["samples"], lambda: "agent, then key file\n" +
              describe(cp))
    finally:
        os.kill(pid, 15)


def test_unknown_host_key(ctx):
    kh = ctx.path("known_hosts_empty")
    open(kh, "w").close()
    cp, out = ctx.drive(*ctx.args(known_hosts=kh))
    fp = run(["ssh-keygen", "-l", "-f", ctx.s.host_key + ".pub"]).stdout.split()[1]
    expect_failure(cp, out, f"unknown host key for [{HOST}]:{ctx.s.port}", fp)
    say(f"fingerprint {fp} as ssh-keygen prints it")
    # Trust on first use: accepted, logged and recorded; the next run checks against it.
    cp, out = ctx.drive(*ctx.args(known_hosts=kh), "--tofu", seconds=1.5)
    check(cp.returncode == 0, lambda: describe(cp))
    check("trusted on first use" in cp.stderr, lambda: "no TOFU log line\n" + describe(cp))
    with open(kh) as f:
        lines = [l for l in f.read().splitlines() if l.strip()]
    check(len(lines) == 1 and lines[0].split()[:3] == ctx.s.known_hosts_line.split()[:3],
          f"known_hosts after TOFU: {lines} (want {ctx.s.known_hosts_line})")
    # Long enough for a connect and the first tick, which comes at the target's phase of the
    # second (up to a second after connecting; 1.5 s failed once on a loaded machine).
    cp, out = ctx.drive(*ctx.args(known_hosts=kh), seconds=3)
    check(cp.returncode == 0 and out["samples"], lambda: describe(cp))


def test_host_key_mismatch(ctx):
    other = ctx.path("other_host_key")
    if not os.path.exists(other):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other])
    kh = ctx.path("known_hosts_mismatch")
    with open(other + ".pub") as f:
        ktype, key = f.read().split()[:2]
    with open(kh, "w") as f:
        f.write(f"# a comment\n[{HOST}]:{ctx.s.port} {ktype} {key}\n")
    for extra in ([], ["--tofu"]):
        cp, out = ctx.drive(*ctx.args(known_hosts=kh), *extra)
        expect_failure(cp, out, f"host key mismatch for [{HOST}]:{ctx.s.port}",
                       f"known_hosts line 2 of {kh}", "SHA256:")
    with open(kh) as f:
        check(f.read().count("\n") == 2, "known_hosts was changed despite the mismatch")


def test_connection_refused(ctx):
    port = free_port()
    cp, out = ctx.drive(f"ssh://{ctx.s.user}@{HOST}:{port}", "--identity", ctx.s.key_ed25519,
                        "--known-hosts", ctx.s.known_hosts)
    expect_failure(cp, out, f"{HOST}:{port}", "Connection refused")


def test_silent_server(ctx):
    import socket
    import threading
    lsock = socket.socket()
    lsock.bind((HOST, 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        lsock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(lsock.accept()[0])
            except OSError:
                pass
    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        cp, out = ctx.drive(f"ssh://{ctx.s.user}@{HOST}:{port}", "--identity", ctx.s.key_ed25519,
                            "--known-hosts", ctx.s.known_hosts, "--timeout", "2", seconds=20)
        took = time.monotonic() - t0
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        lsock.close()
    expect_failure(cp, out, "not ready within 2000 ms", "SSH handshake")
    check(took < 8, f"the driver gave up after {took:.1f}s, not ~2s")


def test_read_error_one_file(ctx):
    # A directory opens (sftp-server open()s it read-only) but every read fails (EISDIR).
    cp, out = ctx.drive(*ctx.args(), "--extra-file", "/etc", seconds=2.5)
    check(cp.returncode == 0, lambda: describe(cp))
    check(any(w.startswith("/etc: read failed") for w in out["warnings"]),
          f"no read warning for /etc in {out['warnings']}")
    check_host_values(out, "with a failing file")


def test_sftp_refused_fallback(ctx):
    s = ctx.fallback_server()
    # Filesystems come with the second tick's reply.
    cp, out = ctx.drive(*ctx.args(server=s), seconds=5)
    check(cp.returncode == 0, lambda: describe(cp))
    check("falling back to one streaming shell command" in cp.stderr,
          lambda: "no fallback warning\n" + describe(cp))
    check(out["stats"][0]["mode"] == "stream", f"mode {out['stats'][0]['mode']}")
    check_host_values(out, "fallback")
    check_filesystems(out, "fallback")
    log = open(s.log_path).read()
    check("subsystem request for sftp" in log and "failed" in log.lower(),
          "sshd log does not show the refused subsystem")


def test_reconnect(ctx):
    p = BackgroundProc([ctx.drv] + ctx.args() + ["--seconds", "40", "--keep-retrying",
                                                  "--reconnect-base", "0.5"], ctx.tmp, "reconnect")
    try:
        wait_until(lambda: '"linux.mem.total"' in p.stdout(), 15, "first samples")
        say("killing sshd (SIGKILL, its sessions too)")
        ctx.s.kill()
        wait_until(lambda: '"failed"' in p.stdout(), 10, "the target noticing the dead session")
        time.sleep(1.0)
        say("restarting sshd on the same port")
        t_restart = time.time()
        ctx.s.start()
        wait_until(lambda: p.stdout().count('"connected"') >= 2, 20, "a second connect")
        t_connected = time.time()
        wait_until(lambda: any(j["clock"] >= int(t_restart)
                               for j in parse_lines(p.stdout())["all_samples"]
                               if j["key"] == "linux.mem.total"), 10, "samples after the restart")
    finally:
        p.kill9()
    out = parse_lines(p.stdout())
    fails = [e["error"] for e in out["events"] if e["event"] == "failed"]
    say(f"errors seen: {fails[:3]}{' ...' if len(fails) > 3 else ''}")
    say(f"reconnected {t_connected - t_restart:.1f}s after sshd came back "
        f"({len(fails)} failed attempts meanwhile)")
    check(t_connected - t_restart < 10, "reconnect took longer than the backoff allows")
    check(any("lost" in f or "closed" in f or "reset" in f.lower() for f in fails[:1]),
          f"first error does not say the session was lost: {fails[:1]}")


def test_memory_per_session(ctx):
    n = 50
    # internal-sftp: the collector's memory does not depend on how sshd serves SFTP, and 50
    # sftp-servers started at once through root's login shell (pyenv in its .bashrc here) once
    # kept one session from answering within 30 s on a loaded machine.
    server = ctx.internal_sftp_server()
    cp, out = ctx.drive(*ctx.args(server=server), "--sessions", n, "--quiet", "--timeout", "30",
                        seconds=90, timeout=120)
    check(cp.returncode == 0 and out["memory"], lambda: describe(cp))
    m = out["memory"]
    say(f"{n} sessions: RSS +{m['rss_per_session_kb']:.0f} KiB per session, malloc heap "
        f"+{m['heap_per_session_kb']:.0f} KiB per session (RSS {m['rss_base_kb']} -> "
        f"{m['rss_kb']} KiB)")
    check(m["rss_per_session_kb"] <= 256, f"{m['rss_per_session_kb']:.0f} KiB per session")


# ---- target-side CPU


def proc_cpu_seconds(pid: int):
    """CPU time of a process, or None: its own from /proc/PID/schedstat (nanoseconds; stat's
    clock ticks are too coarse for a few milliseconds a second), plus what the children it
    reaped used (cutime + cstime, in ticks: the naive loop's cat and sleep processes)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            own = int(f.read().split()[0]) / 1e9
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    return own + (int(rest[13]) + int(rest[14])) / CLK_TCK


def session_processes(s: SshServer) -> list:
    listener = s.pgids()[0]
    return [p for p in s.processes() if p != listener]


def measure_server_cpu(s: SshServer, seconds: float) -> tuple:
    """CPU seconds per second used by the sshd sessions (not the listener) of `s` over
    `seconds`: processes alive at both ends, children they reaped included."""
    before = {p: proc_cpu_seconds(p) for p in session_processes(s)}
    time.sleep(seconds)
    after = {p: proc_cpu_seconds(p) for p in session_processes(s)}
    total = sum(after[p] - before[p] for p in before
                if before[p] is not None and after.get(p) is not None)
    return total / seconds, sorted(before)


def test_target_cpu(ctx):
    seconds = 20
    files = json.loads(run([ctx.drv, "--list-files"]).stdout)["files"]
    results = {}
    servers = (("trapline sftp", ctx.s), ("trapline internal", ctx.internal_sftp_server()),
               ("trapline fallback", ctx.fallback_server()))
    for name, server in servers:
        p = BackgroundProc([ctx.drv] + ctx.args(server=server) +
                           ["--seconds", str(seconds + 15), "--quiet"], ctx.tmp, name.split()[1])
        try:
            wait_until(lambda: len(session_processes(server)) > 0, 15, f"{name} session")
            time.sleep(3)  # connected and ticking
            c0 = proc_cpu_seconds(p.pid)
            cpu, pids = measure_server_cpu(server, seconds)
            c1 = proc_cpu_seconds(p.pid)
        finally:
            p.kill9()
        results[name] = (cpu, (c1 - c0) / seconds if c0 is not None and c1 else None)
        say(f"{name}: target {cpu * 1000:.2f} ms CPU per second (processes {pids})")
    # The naive way over one session: a shell loop that cats every file each second, its output
    # coming back over the session (as `watch -n 1 cat ...` would show it).
    readable = [f for f in files if os.access(f, os.R_OK)]
    loop = "while :; do cat " + " ".join(readable) + "; sleep 1; done"
    p = BackgroundProc(ctx.s.ssh_argv(loop), ctx.tmp, "naive")
    try:
        wait_until(lambda: len(session_processes(ctx.s)) > 1, 15, "naive session")
        time.sleep(2)
        cpu, pids = measure_server_cpu(ctx.s, seconds)
    finally:
        p.kill9()
    results["naive cat loop"] = (cpu, None)
    say(f"naive cat loop: target {cpu * 1000:.2f} ms CPU per second (processes {pids})")
    print("    target-side CPU per second of 1 Hz sampling (sshd session + children):")
    for name, (cpu, collector) in results.items():
        extra = f"; collector {collector * 1000:.2f} ms/s" if collector is not None else ""
        print(f"      {name:18s} {cpu * 1000:7.2f} ms/s{extra}")
    # A very loose sanity bound: sampling 15 small files a second costs far less than a CPU.
    check(results["trapline sftp"][0] < 0.5, "the SFTP session uses over half a CPU")


def test_probe_cli(ctx):
    cp = trapline("probe", *ctx.args(), "--seconds", "2.5", "--format", "json", timeout=60)
    if cp.returncode != 0 and ("no connection kind" in cp.stderr or "no plugin" in cp.stderr):
        say(f"trapline probe has no ssh targets yet ({cp.stderr.strip()}); skipped")
        return
    check(cp.returncode == 0, lambda: describe(cp))
    out = parse_lines(cp.stdout)
    check(out["samples"].get("linux.mem.total") == meminfo_total_bytes(),
          lambda: f"probe: linux.mem.total {out['samples'].get('linux.mem.total')}")
    key = ctx.path("other_key")
    if not os.path.exists(key):
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key])
    args = ctx.args()
    args[2] = key
    cp = trapline("probe", *args, "--seconds", "3", "--format", "json", timeout=60)
    check(cp.returncode != 0 and "authentication failed" in cp.stderr, lambda: describe(cp))


CHECKS = [test_values_match_server, test_mount_changes, test_rsa_key, test_passphrase_key, test_wrong_key, test_agent,
          test_unknown_host_key,
          test_host_key_mismatch, test_connection_refused, test_silent_server,
          test_read_error_one_file,
          test_sftp_refused_fallback, test_reconnect, test_memory_per_session, test_target_cpu,
          test_probe_cli]

if __name__ == "__main__":
    sys.exit(run_checks(CHECKS, setup=setup, teardown=teardown))
