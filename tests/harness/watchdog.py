"""Watchdog of the test harness: ends the servers of a harness process that died without
cleaning up (SIGKILL, a crash, a CTest timeout).

Started once per harness process (in its own session, so terminal signals do not reach it),
it reads lines from stdin:

    proc <pid> <signal>   a server's main process (its own process group) and its stop signal
    unproc <pid>          the harness stopped it itself
    dir <path>            a folder to remove after the servers are gone
    undir <path>

When stdin reaches EOF (the harness process is gone, however it ended) it sends each
remaining main process its stop signal, waits up to 10 s, SIGKILLs whatever is left of their
process groups and process trees, removes the folders and exits.
"""

import os
import shutil
import signal
import sys
import time


def proc_table():
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        rest = data[data.rfind(")") + 2:].split()
        try:
            table[int(name)] = (int(rest[1]), int(rest[2]), rest[0], int(rest[19]))
        except (IndexError, ValueError):
            continue
    return table


def members(pgids, table):
    """pid -> starttime for the groups' processes and all their descendants."""
    children = {}
    for pid, (ppid, _pg, _st, _t) in table.items():
        children.setdefault(ppid, []).append(pid)
    todo = [p for p, (_pp, pg, _s, _t) in table.items() if pg in pgids] + list(pgids)
    out = {}
    while todo:
        pid = todo.pop()
        if pid in out or pid not in table:
            continue
        out[pid] = table[pid][3]
        todo.extend(children.get(pid, []))
    return out


def alive(pid, starttime, table):
    info = table.get(pid)
    return bool(info) and info[3] == starttime and info[2] not in ("Z", "X")


def main():
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    procs, dirs = {}, []
    for line in sys.stdin:
        parts = line.split(maxsplit=2)
        if not parts:
            continue
        cmd = parts[0]
        if cmd == "proc" and len(parts) == 3:
            procs[int(parts[1])] = int(parts[2])
        elif cmd == "unproc" and len(parts) >= 2:
            procs.pop(int(parts[1]), None)
        elif cmd == "dir" and len(parts) >= 2:
            dirs.append(line[4:].rstrip("\n"))
        elif cmd == "undir" and len(parts) >= 2:
            path = line[6:].rstrip("\n")
            if path in dirs:
                dirs.remove(path)
    if not procs and not dirs:
        return
    table = proc_table()
    tree = members(set(procs), table)
    left = [p for p, st in tree.items() if alive(p, st, table)]
    if left:
        print(f"[harness watchdog] the harness process died: stopping {len(procs)} servers",
              file=sys.stderr, flush=True)
    for pid, sig in procs.items():
        if pid in tree and alive(pid, tree[pid], table):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        table = proc_table()
        if not any(p in tree and alive(p, tree[p], table) for p in procs):
            break
        time.sleep(0.1)
    for _ in range(3):
        table = proc_table()
        tree.update(members(set(procs), table))
        for pgid in procs:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except OSError:
                pass
        for p, st in tree.items():
            if alive(p, st, table):
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
        time.sleep(0.2)
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        pass
