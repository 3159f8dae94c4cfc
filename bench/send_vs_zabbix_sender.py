#!/usr/bin/env python3
"""Benchmark: `trapline send` against Debian's zabbix_sender, side by side, same file, same
local Zabbix 6.0 (started by the harness on loopback).

Prints wall time and client CPU (user+sys of the process and its children) per run, medians,
the ratios, and checks that every value of every run is stored in `history`. Not a test: it
asserts no timing.

    python3 bench/send_vs_zabbix_sender.py [--values 200000] [--items 1000] [--runs 3]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from harness import ZabbixStack  # noqa: E402

TRAPLINE = os.environ.get("TRAPLINE_BIN", os.path.join(HERE, "..", "build", "trapline"))
ZABBIX_SENDER = "/usr/bin/zabbix_sender"


def make_file(path, items, values):
    """'- key clock ns value' lines: every (item, clock, ns) distinct, clocks recent."""
    per_item = values // items
    start = int(time.time()) - per_item - 60
    with open(path, "w") as f:
        for j in range(per_item):
            for i in range(items):
                f.write(f"- m{i} {start + j} {i} {(j * 7 + i) % 1000 / 10}\n")
    return per_item * items


def timed(argv):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    if out.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {out.returncode}: {last}\n{out.stderr[-2000:]}")
    return wall, cpu, last


def stored(zbx, host):
    return int(zbx.pg.psql_value(
        "SELECT count(*) FROM history h JOIN items i ON i.itemid = h.itemid "
        f"JOIN hosts o ON o.hostid = i.hostid WHERE o.host = '{host}'", db="zabbix"))


def wait_stored(zbx, host, want, timeout=300):
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n = stored(zbx, host)
        if n >= want:
            return n
        time.sleep(0.5)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--values", type=int, default=200000)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    tools = {
        "zabbix_sender": lambda port, host, path: [ZABBIX_SENDER, "-z", "127.0.0.1", "-p", str(port),
                                                   "-s", host, "-T", "-N", "-i", path],
        "trapline send": lambda port, host, path: [TRAPLINE, "send", "-z", "127.0.0.1", "-p", str(port),
                                                   "-s", host, "-T", "-N", "-i", path],
    }
    results = {name: [] for name in tools}
    path = "/tmp/trapline-bench-send.txt"
    # More trappers than the default 5 so that neither client is limited by the server's
    # listener count; the history syncers drain between runs.
    with ZabbixStack(server_conf={"StartTrappers": 8, "StartDBSyncers": 4}) as zbx:
        n = make_file(path, args.items, args.values)
        print(f"file: {n} values, {args.items} items, {os.path.getsize(path)} bytes; "
              f"zabbix {zbx.version} on 127.0.0.1:{zbx.server_port}")
        for run in range(args.runs):
            # Alternate the order so neither tool always runs on a warmer server.
            order = list(tools) if run % 2 == 0 else list(reversed(tools))
            for name in order:
                host = f"bench-{'zs' if name == 'zabbix_sender' else 'tl'}-{run}"
                zbx.create_trapper_host(host, [(f"m{i}", 0) for i in range(args.items)])
                wall, cpu, last = timed(tools[name](zbx.server_port, host, path))
                got = wait_stored(zbx, host, n)
                results[name].append((wall, cpu, got))
                print(f"run {run + 1} {name:14s} wall {wall:6.3f} s  cpu {cpu:6.3f} s  "
                      f"stored {got}/{n}  ({last})", flush=True)
                if got != n:
                    raise SystemExit(f"{name}: only {got} of {n} values stored in history")
    os.unlink(path)

    med = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs))
           for name, rs in results.items()}
    zs, tl = med["zabbix_sender"], med["trapline send"]
    print()
    print(f"median wall: zabbix_sender {zs[0]:.3f} s, trapline send {tl[0]:.3f} s, "
          f"ratio {zs[0] / tl[0]:.1f}x")
    print(f"median client CPU: zabbix_sender {zs[1]:.3f} s, trapline send {tl[1]:.3f} s, "
          f"ratio {zs[1] / max(tl[1], 1e-3):.1f}x")
    print("every value of every run stored in history: yes")


if __name__ == "__main__":
    main()
