#!/usr/bin/env python3
"""Benchmark: CPU per SSH target-second of the SSH target alone (session, SFTP, parsing; no
pipeline, no sender), and CPU of the sshd sessions on the monitored side, with N sessions
sampled every second against a local sshd (internal-sftp). Side by side: give several
ssh_target_driver binaries, runs alternate between them.

    python3 bench/ssh_target_load.py --driver new=build/ssh_target_driver \\
        --driver base=/tmp/base/build/ssh_target_driver --targets 20 200 --runs 3 --seconds 20

Each run starts `ssh_target_driver --sessions N-1 --hold` (tests/tools/ssh_target_driver.cc),
waits until every session has delivered 3 ticks, then measures over --seconds: the driver's CPU
(user + system) per target-second, the sshd session processes' CPU per target-second (the
target-side cost of sampling one host), RSS per session. Prints figures and medians; asserts
nothing about speed.
"""

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import SshServer  # noqa: E402
# CPU of a process and its reaped children, and the sshd session processes of a server: the same
# measurement as the target-side check of the integration test.
from test_ssh_target import proc_cpu_seconds as cpu_seconds  # noqa: E402
from test_ssh_target import session_processes as session_pids  # noqa: E402


def sum_cpu(pids):
    return {p: cpu_seconds(p) for p in pids}


def run_once(driver, server, n, seconds):
    argv = [driver, f"ssh://{server.user}@127.0.0.1:{server.port}", "--identity",
            server.key_ed25519, "--known-hosts", server.known_hosts, "--sessions", str(n - 1),
            "--hold", "--quiet", "--timeout", "60", "--seconds", str(seconds + 220)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        memory = None
        deadline = time.monotonic() + 180
        while memory is None and time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], 1)
            if not r:
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            j = json.loads(line)
            if "memory" in j:
                memory = j["memory"]
        if memory is None:
            raise RuntimeError(f"{driver}: sessions did not come up: {proc.stderr.read()[-500:]}")
        time.sleep(2)
        pids = session_pids(server)
        s0, c0, t0 = sum_cpu(pids), cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        s1, c1, t1 = sum_cpu(pids), cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    stats = [json.loads(line)["stats"] for line in out.splitlines() if '"stats"' in line]
    target = sum(s1[p] - s0[p] for p in pids if s0.get(p) is not None and s1.get(p) is not None)
    dt = t1 - t0
    return {"driver_us": (c1 - c0) / dt / n * 1e6, "target_us": target / dt / n * 1e6,
            "rss_kib": memory["rss_per_session_kb"], "stats": stats[0] if stats else {}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--driver", action="append", required=True, help="LABEL=PATH (repeatable)")
    ap.add_argument("--targets", type=int, nargs="+", default=[20, 200])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=20)
    args = ap.parse_args()
    if min(args.targets) < 2:
        ap.error("--targets: at least 2 (one session, then N-1 more: see the driver's --sessions)")
    drivers = [d.split("=", 1) for d in args.driver]
    server = SshServer(extra_config={"MaxStartups": "2000:30:3000", "MaxSessions": "10",
                                     "Subsystem": "sftp internal-sftp"})
    with server:
        for n in args.targets:
            results = {label: [] for label, _ in drivers}
            for run in range(args.runs):
                for label, path in drivers:
                    r = run_once(path, server, n, args.seconds)
                    results[label].append(r)
                    st = r["stats"]
                    print(f"{n} targets, run {run + 1}, {label}: {r['driver_us']:.1f} us CPU per "
                          f"target-second; sshd {r['target_us']:.1f} us per target-second; RSS "
                          f"{r['rss_kib']:.0f} KiB per session; per tick {st.get('requests')} "
                          f"requests in {st.get('round_trips')} round trips", flush=True)
            med = {label: (statistics.median(x["driver_us"] for x in rs),
                           statistics.median(x["target_us"] for x in rs),
                           statistics.median(x["rss_kib"] for x in rs))
                   for label, rs in results.items()}
            first = drivers[0][0]
            for label, (d, t, m) in med.items():
                ratio = "" if label == first else (
                    f" ({d / med[first][0]:.2f}x the CPU of {first}, sshd "
                    f"{t / med[first][1]:.2f}x)")
                print(f"{n} targets, median of {args.runs}, {label}: {d:.1f} us per "
                      f"target-second, sshd {t:.1f} us per target-second, RSS {m:.0f} KiB per "
                      f"session{ratio}", flush=True)


if __name__ == "__main__":
    main()
