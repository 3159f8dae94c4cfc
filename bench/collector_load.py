#!/usr/bin/env python3
"""Benchmark: collector CPU per target-second, event-loop lag and memory per connection, with
N targets of one kind sampled every second against real servers on loopback.

    python3 bench/collector_load.py --kind redis --targets 200 1000 [--seconds 20]
    python3 bench/collector_load.py --kind postgresql ...
    python3 bench/collector_load.py --kind linux ...      (SSH to a local sshd)
    python3 bench/collector_load.py --kind redis --targets 1000 --bin OLD --bin NEW --runs 5
        (side by side: the binaries take turns against the same server, medians at the end)
    python3 bench/collector_load.py --kind redis --targets 1000 --runs 3 --floor
        (build/transport_floor takes its turns too: the bare transport of the same ticks with
        nothing of trapline in the way, the floor under the collector's figure)
    python3 bench/collector_load.py --kind postgresql --targets 200 --pin
        (the server's processes on the last CPU, the collector and the floor on the others: as
        when the server is another machine; otherwise they share every core)

All targets of a run point at one server of that kind (each with its own connection). The
collector runs with --dry-run (values printed to /dev/null), so the figures cover connections,
parsing, rates, value sets and formatting, not the network path to Zabbix. Prints figures;
asserts nothing about speed.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from harness import PostgresServer, RedisServer, SshServer  # noqa: E402

TRAPLINE = os.environ.get("TRAPLINE_BIN", os.path.join(HERE, "..", "build", "trapline"))
FLOOR = "floor"  # the pseudo-binary name of build/transport_floor in the turns
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """(user, system, total) CPU seconds of the process: user and system from /proc/PID/stat
    (in clock ticks of 10 ms: about 2.5 us per target-second at 200 targets over 20 s), the
    total from the scheduler's nanosecond counts of every thread (/proc/PID/task/*/schedstat)."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total_ns += int(f.read().split()[0])
        except OSError:
            pass  # a thread that just ended
    return int(rest[11]) / TICK, int(rest[12]) / TICK, total_ns / 1e9


def status_field(pid, name):
    """A number from /proc/PID/status (VmRSS in KiB, voluntary_ctxt_switches, ...)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    return status_field(pid, "VmRSS")


def target_entries(kind, server, n, tmp):
    out = []
    for i in range(n):
        if kind == "redis":
            out.append(f'[[target]]\nhost = "bench-{i}"\nuri = "redis://127.0.0.1:{server.port}"\n')
        elif kind == "postgresql":
            out.append(f'[[target]]\nhost = "bench-{i}"\n'
                       f'uri = "postgresql://postgres@127.0.0.1:{server.port}/postgres"\n')
        else:
            out.append(f'[[target]]\nhost = "bench-{i}"\nuri = "ssh://{server.user}@127.0.0.1:{server.port}"\n'
                       f'identity = "{server.key_ed25519}"\nknown_hosts = "{server.known_hosts}"\n')
    return "\n".join(out)


def run(kind, server, n, seconds, tmp, trapline=TRAPLINE):
    cfg = os.path.join(tmp, f"{kind}-{n}.toml")
    with open(cfg, "w") as f:
        f.write(f'[collector]\nname = "bench"\nstats_interval = {seconds}\n\n'
                '[sender]\nserver = "127.0.0.1"\n\n' + target_entries(kind, server, n, tmp))
    err_path = os.path.join(tmp, f"{kind}-{n}.stderr")
    with open(os.devnull, "w") as devnull, open(err_path, "w") as err:
        proc = subprocess.Popen([trapline, "collector", "--config", cfg, "--dry-run"],
                                stdout=devnull, stderr=err)
    try:
        # Let every connection come up, then measure a steady window: whole stats intervals
        # of the collector, so that the last stats line (its loop lag) covers that window only,
        # not the connection storm at the start.
        warmup = min(15, 3 + n / 100)
        intervals = -(-warmup // seconds)
        time.sleep(intervals * seconds + 0.3)
        c0, t0 = cpu_seconds(proc.pid), time.monotonic()
        w0 = status_field(proc.pid, "voluntary_ctxt_switches")
        time.sleep(seconds)
        c1, t1 = cpu_seconds(proc.pid), time.monotonic()
        w1 = status_field(proc.pid, "voluntary_ctxt_switches")
        rss1 = rss_kib(proc.pid)
        time.sleep(0.5)  # the stats line of the window
    finally:
        proc.terminate()
        proc.wait(60)
    text = open(err_path).read()
    # ticks= and ticks_skipped= since this session's builds; older ones do not print them.
    stats = re.findall(r"connected=(\d+)(?: ticks=(\d+) ticks_skipped=(\d+))? "
                       r"loop_lag_p50_ms=([\d.]+) loop_lag_p99_ms=([\d.]+) "
                       r"loop_lag_max_ms=([\d.]+)", text)
    connected, ticks, skipped, p50, p99, lmax = stats[-1] if stats else ("?",) * 6
    user = (c1[0] - c0[0]) / (t1 - t0) / n * 1e6
    sys_ = (c1[1] - c0[1]) / (t1 - t0) / n * 1e6
    cpu_per_target_s = (c1[2] - c0[2]) / (t1 - t0) / n * 1e6
    return {"targets": n, "connected": connected, "cpu_us_per_target_s": cpu_per_target_s,
            "user_us_per_target_s": user, "sys_us_per_target_s": sys_,
            "lag_p50_ms": p50, "lag_p99_ms": p99, "lag_max_ms": lmax, "rss_kib": rss1,
            "rss_per_target_kib": rss1 / n, "wakeups_per_s": (w1 - w0) / (t1 - t0),
            "collector_cpu_pct": 100 * (c1[2] - c0[2]) / (t1 - t0),
            # The last stats line covers the measured window (whole stats intervals).
            "ticks_per_s": int(ticks) / seconds if ticks else None,
            "ticks_skipped": int(skipped) if skipped else None}


def run_floor(kind, server, n, seconds, trapline):
    """build/transport_floor (next to `trapline`) with the same N ticks a second against the
    same server: the bare transport's CPU per target-second. For SSH it measures libssh2's
    receive cost per byte on one session instead (see bench/transport_floor.cc)."""
    floor_bin = os.path.join(os.path.dirname(os.path.abspath(trapline)), "transport_floor")
    if kind == "redis":
        args = ["redis", "--port", str(server.port), "--connections", str(n)]
    elif kind == "postgresql":
        args = ["postgresql", "--uri", f"postgresql://postgres@127.0.0.1:{server.port}/postgres",
                "--connections", str(n)]
    else:
        args = ["ssh-stream", "--uri", f"ssh://{server.user}@127.0.0.1:{server.port}",
                "--identity", server.key_ed25519, "--known-hosts", server.known_hosts]
    if kind != "linux":
        args += ["--seconds", str(seconds)]
    out = subprocess.run([floor_bin] + args, capture_output=True, text=True, timeout=seconds + 120)
    if out.returncode != 0:
        sys.exit(f"collector_load: transport_floor failed: {out.stderr.strip()}")
    line = out.stdout.strip()
    m = re.search(r"([\d.]+) us CPU per target-second \(user ([\d.]+), kernel ([\d.]+)\)", line)
    if m is None:  # ssh-stream: "...; a tick of B B: X us"
        m = re.search(r"ns CPU per KiB received \(user (\d+), kernel (\d+)\).*: ([\d.]+) us$",
                      line)
        return {"line": line, "cpu_us_per_target_s": float(m.group(3))}
    return {"line": line, "cpu_us_per_target_s": float(m.group(1)),
            "user_us_per_target_s": float(m.group(2)), "sys_us_per_target_s": float(m.group(3))}


def pin_server(server):
    """Puts the server's processes on the last CPU (what they fork later inherits it) and this
    process, so every collector and floor it starts, on the others. Returns a description."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        sys.exit("collector_load: --pin needs at least 2 CPUs")
    server_cpu, client_cpus = cpus[-1], set(cpus[:-1])
    pids = server.processes()
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                os.sched_setaffinity(int(tid), {server_cpu})
            except OSError:
                pass  # a thread that just ended
    os.sched_setaffinity(0, client_cpus)
    return f"server ({len(pids)} processes) on CPU {server_cpu}, collector on {sorted(client_cpus)}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["redis", "postgresql", "linux"], required=True)
    ap.add_argument("--targets", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--bin", action="append", default=[],
                    help="trapline binary to measure (repeat to compare; default $TRAPLINE_BIN "
                         "or build/trapline)")
    ap.add_argument("--runs", type=int, default=1, help="runs per binary and target count")
    ap.add_argument("--floor", action="store_true",
                    help="also run build/transport_floor in the turns (the bare transport)")
    ap.add_argument("--pin", action="store_true",
                    help="the server on the last CPU, the collector on the others")
    args = ap.parse_args()
    bins = args.bin or [TRAPLINE]
    tmp = os.path.join("/tmp", f"trapline-bench-{args.kind}-{os.getpid()}")
    os.makedirs(tmp, exist_ok=True)
    if args.kind == "redis":
        server = RedisServer(extra_conf={"maxclients": "20000"})
    elif args.kind == "postgresql":
        server = PostgresServer(settings={"max_connections": "1200"})
    else:
        # internal-sftp: no shell per session (a login shell's start-up files, e.g. pyenv in
        # root's .bashrc here, can serialise hundreds of simultaneous sftp-server starts).
        server = SshServer(extra_config={"MaxStartups": "2000:30:3000", "MaxSessions": "10",
                                         "Subsystem": "sftp internal-sftp"})
    with server:
        if args.pin:
            print(f"{args.kind}: pinned: {pin_server(server)}", flush=True)
        # The process's own memory (code, libraries, loop, logger), which is not the
        # connections': RSS with one target, per binary. The figures per connection below
        # are (RSS - this) / (N - 1).
        base_rss = {b: run(args.kind, server, 1, 2, tmp, b)["rss_kib"] for b in bins}
        for n in args.targets:
            results = {b: [] for b in bins}
            floors = []
            # Binaries take turns, so that a change in the machine's load hits them alike.
            for _ in range(args.runs):
                if args.floor:
                    f = run_floor(args.kind, server, n, args.seconds, bins[0])
                    floors.append(f)
                    print(f["line"], flush=True)
                for b in bins:
                    r = run(args.kind, server, n, args.seconds, tmp, b)
                    r["rss_per_conn_kib"] = (r["rss_kib"] - base_rss[b]) / max(1, n - 1)
                    results[b].append(r)
                    label = f" [{b}]" if len(bins) > 1 else ""
                    done = (f"; {r['ticks_per_s']:.0f} ticks/s answered, {r['ticks_skipped']} "
                            "skipped" if r["ticks_per_s"] is not None else "")
                    print(f"{args.kind}: {r['targets']} targets ({r['connected']} connected): "
                          f"{r['cpu_us_per_target_s']:.1f} us CPU per target-second "
                          f"(user {r['user_us_per_target_s']:.1f}, kernel "
                          f"{r['sys_us_per_target_s']:.1f}; collector "
                          f"{r['collector_cpu_pct']:.1f}% of a core; {r['wakeups_per_s']:.0f} "
                          f"wake-ups/s{done}), loop lag p50 "
                          f"{r['lag_p50_ms']} ms p99 {r['lag_p99_ms']} ms max {r['lag_max_ms']} "
                          f"ms, RSS {r['rss_kib']} KiB = {r['rss_per_target_kib']:.1f} KiB per "
                          f"target, {r['rss_per_conn_kib']:.1f} KiB per connection above the "
                          f"{base_rss[b]} KiB of one target{label}", flush=True)
            if args.runs > 1 or len(bins) > 1:
                for b in bins:
                    rs = results[b]
                    med = lambda k: statistics.median(x[k] for x in rs)  # noqa: E731
                    print(f"{args.kind}: {n} targets, median of {len(rs)} [{b}]: "
                          f"{med('cpu_us_per_target_s'):.1f} us per target-second (user "
                          f"{med('user_us_per_target_s'):.1f}, kernel "
                          f"{med('sys_us_per_target_s'):.1f}), RSS "
                          f"{med('rss_per_target_kib'):.1f} KiB per target, "
                          f"{med('rss_per_conn_kib'):.1f} KiB per connection", flush=True)
            if floors:
                fmed = statistics.median(f["cpu_us_per_target_s"] for f in floors)
                what = ("libssh2's receive cost of one tick's bytes alone" if args.kind == "linux"
                        else "the bare transport of the same ticks")
                ratios = ", ".join(
                    f"{statistics.median(x['cpu_us_per_target_s'] for x in results[b]) / fmed:.2f}x"
                    f" [{b}]" for b in bins)
                print(f"{args.kind}: {n} targets, floor median of {len(floors)}: {fmed:.1f} us per "
                      f"target-second ({what}); collector / floor: {ratios}", flush=True)


if __name__ == "__main__":
    main()
