"""trapline compress + trapline send against a real Zabbix 6.0 server (one ZabbixStack for the
file, CacheUpdateFrequency=30 so that a new item stays unknown to the server for a while).

  test_value_sets            samples -> `trapline compress` -> `trapline send -T -N` -> history:
                             per interval the samples' min, max and mean, fewer values (also
                             as a pipe: compress --host --key | send -i -)
  test_grace_new_item        a value for an item created a moment ago is counted failed first,
                             then stored (`--grace`)
  test_spool_kill            values spooled one by one while Zabbix is down (--memory-values 0),
                             kill -9, replay with `-i /dev/null`: each value stored once
  test_spool_kill_replay     kill -9 in the middle of a replay, replay again: none lost, none twice
  test_spool_sigterm_and_lock  SIGTERM spools what is in memory; a second sender on the same
                             spool folder is refused
  test_outage                a long-running `trapline send -i -` fed 10 values/s rides out a
                             60 s server outage: every value stored once, in order
"""

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    NS, RESPONSE_RE, BackgroundProc, Failure, check, check_value_sets, compress_input,
    counter_rates, describe, gen_samples, make_tmp, parse_compress_output, run_checks, say,
    sender_lines, spool_lines, spool_pending, summary_of, trapline, trapline_bin, wait_until)
from harness import HOST, ZabbixStack  # noqa: E402


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("sender-zabbix")
        self.z = ZabbixStack(server_conf={"CacheUpdateFrequency": 30})
        self.z.start()

    @property
    def port(self) -> int:
        return self.z.server_port

    def send_args(self, *extra):
        return ["send", "-z", HOST, "-p", self.port] + list(extra)

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)


def setup():
    return Ctx()


def teardown(ctx):
    ctx.z.close()


# --------------------------------------------------------------------------------------------
# helpers


def history_rows(z, itemids) -> dict:
    """{itemid: [(clock, ns, value)]} from the float history table, in (clock, ns) order."""
    ids = ",".join(str(int(i)) for i in itemids)
    out = {int(i): [] for i in itemids}
    for itemid, clock, ns, value in z.pg.psql(
            f"SELECT itemid, clock, ns, value FROM history WHERE itemid IN ({ids}) "
            "ORDER BY itemid, clock, ns", db="zabbix"):
        out[int(itemid)].append((int(clock), int(ns), float(value)))
    return out


def history_counts(z, itemids) -> dict:
    ids = ",".join(str(int(i)) for i in itemids)
    counts = {int(i): 0 for i in itemids}
    for itemid, n in z.pg.psql(f"SELECT itemid, count(*) FROM history WHERE itemid IN ({ids}) "
                               "GROUP BY itemid", db="zabbix"):
        counts[int(itemid)] = int(n)
    return counts


def wait_history_counts(z, want: dict, timeout: float) -> dict:
    """Waits until every item has at least want[itemid] rows; returns the rows."""
    deadline = time.monotonic() + timeout
    counts = {}
    while time.monotonic() < deadline:
        counts = history_counts(z, want)
        if all(counts[i] >= n for i, n in want.items()):
            return history_rows(z, want)
        time.sleep(0.3)
    short = {i: f"{counts.get(i)}/{n}" for i, n in want.items() if counts.get(i, 0) < n}
    raise Failure(f"history incomplete after {timeout:.0f}s (itemid: stored/expected): {short}; "
                  f"server {'running' if z.server_running else 'NOT running'}")


def responses(stdout: str):
    """[(processed, failed, total)] of the 'Response from ...' lines; every such line must have
    zabbix_sender's exact format."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("Response from"):
            m = RESPONSE_RE.match(line)
            check(m, f"malformed response line: {line!r}")
            out.append((int(m.group(2)), int(m.group(3)), int(m.group(4))))
    return out


def pk_duplicates(z) -> int:
    """How often the server's history syncers hit the (itemid, clock, ns) primary key: values
    that reached the server more than once (stored once)."""
    with open(z.server_log, errors="replace") as f:
        return f.read().count('duplicate key value violates unique constraint "history_pkey"')


def compare_stored(name, fed_by_item: dict, rows_by_item: dict, ordered: bool = True) -> None:
    """fed_by_item: {itemid: [(clock, ns, value)] in the order fed}; checks that history holds
    exactly these values, each once, and (ordered) that clock order equals the fed order."""
    for itemid, fed in fed_by_item.items():
        rows = rows_by_item[itemid]
        got = collections.Counter((c, n) for c, n, _ in rows)
        want = collections.Counter((c, n) for c, n, _ in fed)
        dup = {k: v for k, v in got.items() if v > 1}
        check(not dup, f"{name}: item {itemid}: (clock, ns) stored more than once: {dup}")
        missing = want - got
        extra = got - want
        check(not missing and not extra,
              f"{name}: item {itemid}: {len(missing)} fed values missing from history "
              f"(first: {sorted(missing)[:5]}), {len(extra)} unexpected "
              f"(first: {sorted(extra)[:5]}); fed {len(fed)}, stored {len(rows)}")
        fed_values = {(c, n): v for c, n, v in fed}
        bad = [(c, n, v, fed_values[(c, n)]) for c, n, v in rows if v != fed_values[(c, n)]]
        check(not bad, f"{name}: item {itemid}: stored values differ from the fed ones "
                       f"(clock, ns, stored, fed): {bad[:5]}")
        if ordered:
            check([v for _, _, v in rows] == [v for _, _, v in fed],
                  f"{name}: item {itemid}: values in clock order differ from the fed order")


# --------------------------------------------------------------------------------------------
# 1. value sets


def test_value_sets(ctx):
    z = ctx.z
    seed = int(os.environ.get("TRAPLINE_TEST_SEED") or time.time())
    say(f"random seed {seed} (set TRAPLINE_TEST_SEED to repeat)")
    rng = random.Random(seed)
    # (key, kind, interval S, counter)
    series = [("vs.walk.s10", "walk", 10, False), ("vs.walk.s60", "walk", 60, False),
              ("vs.walk.s7", "walk", 7, False), ("vs.const.s10", "const", 10, False),
              ("vs.const.s60", "const", 60, False), ("vs.big.s30", "big", 30, False),
              ("vs.counter.s10", "counter", 10, True), ("vs.counter.s60", "counter", 60, True)]
    ids = z.create_trapper_host("vs-host", [(k, 0) for k, *_ in series])
    now = int(time.time())
    start = now - 420 + 13  # ~7 minutes of 1 s samples, the first mid-interval
    n = 400                 # the last sample ~7 s ago
    lines = []
    sent = {}
    sources = {}
    for key, kind, interval, counter in series:
        samples = gen_samples(kind, start, n, rng)
        args = ["compress", "--interval", interval] + (["--counter"] if counter else [])
        cp = trapline(*args, input=compress_input(samples))
        check(cp.returncode == 0 and not cp.stderr, f"{key}: {describe(cp)}")
        values = parse_compress_output(cp.stdout)
        sources[key] = counter_rates(samples) if counter else samples
        sent[key] = values
        lines += [("vs-host", key, c, ns, repr(v)) for c, ns, v in values]
        say(f"{key}: {len(sources[key])} samples -> {len(values)} values (S={interval})")
    inp = ctx.path("value_sets.txt")
    with open(inp, "w") as f:
        f.write(sender_lines(lines))
    cp = trapline(*ctx.send_args("-T", "-N", "-i", inp), timeout=120)
    check(cp.returncode == 0, f"trapline send: {describe(cp)}")
    check(summary_of(cp.stdout) == (len(lines), 0, len(lines)),
          f"summary should be 'sent: {len(lines)}; skipped: 0; total: {len(lines)}': "
          f"{describe(cp)}")
    rs = responses(cp.stdout)
    check(rs and sum(r[0] for r in rs) == len(lines) and all(r[1] == 0 for r in rs),
          f"every value processed, none failed: {rs}")
    rows = wait_history_counts(z, {ids[k]: len(v) for k, v in sent.items()}, 60)
    for key, interval in ((k, s) for k, _, s, _ in series):
        stored = rows[ids[key]]
        check(sorted(stored) == sorted(sent[key]),
              lambda: f"{key}: history differs from what was sent: "
                      f"sent-not-stored {sorted(set(sent[key]) - set(stored))[:5]}, "
                      f"stored-not-sent {sorted(set(stored) - set(sent[key]))[:5]}")
        s = check_value_sets(key, sources[key], stored, interval)
        check(s["values"] < s["samples"],
              f"{key}: {s['values']} values stored for {s['samples']} samples: no compression")
        say(f"{key}: history has {s['values']} values for {s['samples']} samples in "
            f"{s['intervals']} intervals; min/max exact, mean error <= "
            f"{s['worst_mean_error_of_tolerance']:.2g} of the tolerance")
    # the same as a pipeline: compress --host/--key | send -T -N -i - (a pipe between them)
    key = "vs.pipe.s10"
    pipe_ids = z.create_trapper_host("vs-pipe-host", [(key, 0)])
    samples = gen_samples("walk", start, n, rng)
    expected = parse_compress_output(
        trapline("compress", "--interval", 10, input=compress_input(samples)).stdout)
    argv_c = [trapline_bin(), "compress", "--interval", "10", "--host", "vs-pipe-host",
              "--key", key]
    argv_s = [trapline_bin()] + [str(a) for a in ctx.send_args("-T", "-N", "-i", "-")]
    say(f"$ {' '.join(argv_c)} | {' '.join(argv_s)}")
    comp = subprocess.Popen(argv_c, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    send = subprocess.Popen(argv_s, stdin=comp.stdout, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    comp.stdout.close()
    try:
        comp.stdin.write(compress_input(samples))
        comp.stdin.close()
        s_out, s_err = send.communicate(timeout=60)
        c_err = comp.stderr.read()
        c_rc = comp.wait(10)
    finally:
        for proc in (comp, send):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    check(c_rc == 0 and not c_err, f"compress in the pipeline: exit {c_rc}, stderr {c_err!r}")
    check(send.returncode == 0 and summary_of(s_out) == (len(expected), 0, len(expected)),
          f"send in the pipeline: exit {send.returncode}\n{s_out}\n{s_err}")
    rows = wait_history_counts(z, {pipe_ids[key]: len(expected)}, 60)[pipe_ids[key]]
    check(sorted(rows) == sorted(expected), f"{key}: history differs from compress's output")
    s = check_value_sets(key, samples, rows, 10)
    say(f"{key} through a pipe: {s['values']} values for {s['samples']} samples, as expected")


# --------------------------------------------------------------------------------------------
# 5. a new item while the configuration cache catches up


def test_grace_new_item(ctx):
    z = ctx.z
    ids = z.create_trapper_host("grace-host", [("g.old", 0)])  # host + one item in the cache
    hostid = z.hostid("grace-host")
    for attempt in range(2):
        key = f"g.new{attempt}"
        new_id = int(z.api("item.create", {"hostid": str(hostid), "name": key, "key_": key,
                                           "type": 2, "value_type": 0})["itemids"][0])
        t_created = time.monotonic()
        now = int(time.time())
        # three values for the new item and one for the old: the first batch is partly taken
        vals = [("grace-host", key, now, 1, "1.5"), ("grace-host", "g.old", now, 2, "2.5"),
                ("grace-host", key, now, 3, "3.5"), ("grace-host", key, now + 1, 4, "4.5")]
        inp = ctx.path(f"grace{attempt}.txt")
        with open(inp, "w") as f:
            f.write(sender_lines(vals))
        cp = trapline(*ctx.send_args("-T", "-N", "-i", inp, "--grace", "90"), timeout=150)
        took = time.monotonic() - t_created
        rs = responses(cp.stdout)
        say(f"item {key} created {took:.1f}s before the send ended; replies: {rs}")
        check(rs, f"no reply lines: {describe(cp)}")
        if rs[0][1] == 0:
            # the server's periodic cache sync (every 30 s) came between item.create and the
            # send: nothing was tested; try once more with another item
            say("the first reply counted nothing failed (a cache sync came first); retrying")
            continue
        check(rs[0] == (1, 3, 4), f"first reply should be processed 1, failed 3: {rs}")
        check(cp.returncode == 0, f"exit should be 0 once the values were taken: {describe(cp)}")
        check(summary_of(cp.stdout) == (4, 0, 4), f"summary: {describe(cp)}")
        check("failed" not in cp.stderr, f"nothing should be reported failed: {describe(cp)}")
        rows = wait_history_counts(z, {new_id: 3, ids["g.old"]: 1 + attempt}, 60)
        compare_stored("grace", {new_id: [(c, n, float(v)) for h, k, c, n, v in vals
                                          if k == key]}, rows)
        check((now, 2, 2.5) in rows[ids["g.old"]], f"g.old: {rows[ids['g.old']]}")
        say(f"all 3 values for the new item and the old item's value are in history "
            f"({took:.1f}s after item.create)")
        return
    raise Failure("two attempts in a row saw the new item accepted at once: the server's "
                  "configuration cache is synced more often than CacheUpdateFrequency=30?")


# --------------------------------------------------------------------------------------------
# 3. kill -9 with a full spool; kill -9 during replay


def spool_items(z, host: str, n_items: int, n_values: int):
    keys = [f"sp.{i}" for i in range(n_items)]
    ids = z.create_trapper_host(host, [(k, 0) for k in keys])
    base = int(time.time()) - 120
    values = []
    for i in range(n_values):
        key = keys[i % n_items]
        j = i // n_items
        values.append((host, key, base + j // 50, (j % 50) * 1000 + 7, f"{i}.25"))
    fed = collections.defaultdict(list)
    for h, k, c, ns, v in values:
        fed[ids[k]].append((c, ns, float(v)))
    return ids, values, fed


def test_spool_kill(ctx):
    z = ctx.z
    n = 2000
    ids, values, fed = spool_items(z, "spool-host", 20, n)
    spool = ctx.path("spool-kill")
    t0 = time.monotonic()
    z.stop_server()
    try:
        say(f"zabbix server stopped in {time.monotonic() - t0:.1f}s; feeding {n} values through "
            "a pipe")
        t0 = time.monotonic()
        p = BackgroundProc([trapline_bin()] + [str(a) for a in ctx.send_args(
            "-T", "-N", "-i", "-", "--spool", spool, "--memory-values", "0",
            "--retry-for", "600")], ctx.tmp, "spool-kill")
        p.write(sender_lines(values))
        wait_until(lambda: spool_pending(spool) >= n or not p.alive(), 30,
                   f"{n} values in the spool {spool}")
        check(p.alive(), f"trapline send exited early: rc {p.popen.returncode}\n{p.output()}")
        check(spool_pending(spool) == n and spool_lines(spool) == n,
              f"spool holds {spool_pending(spool)} pending / {spool_lines(spool)} lines, "
              f"want {n}")
        say(f"spool holds all {n} values after {time.monotonic() - t0:.1f}s; kill -9 {p.pid}")
        p.kill9()
    finally:
        z.start_server()
    t0 = time.monotonic()
    cp = trapline(*ctx.send_args("--spool", spool, "-i", "/dev/null", "--retry-for", "60"),
                  timeout=120)
    say(f"replay took {time.monotonic() - t0:.1f}s: {cp.stdout.strip().splitlines()[-1:]}")
    check(cp.returncode == 0, f"replay: {describe(cp)}")
    rs = responses(cp.stdout)
    check(sum(r[0] for r in rs) >= n and all(r[1] == 0 for r in rs),
          f"replay replies should process {n} values, none failed: {rs}")
    check(spool_pending(spool) == 0, f"spool not empty after the replay: "
                                     f"{spool_pending(spool)} values pending")
    t0 = time.monotonic()
    rows = wait_history_counts(z, {i: len(v) for i, v in fed.items()}, 60)
    compare_stored("spool kill", fed, rows)
    say(f"all {n} values in history once, across {len(fed)} items "
        f"(history complete {time.monotonic() - t0:.1f}s after the replay)")


def test_spool_kill_replay(ctx):
    z = ctx.z
    n = 20000
    ids, values, fed = spool_items(z, "replay-host", 40, n)
    spool = ctx.path("spool-replay")
    inp = ctx.path("spool-replay.txt")
    with open(inp, "w") as f:
        f.write(sender_lines(values))
    dups_before = pk_duplicates(z)
    z.stop_server()
    try:
        # without --retry-for the send fails at once (exit 1) and spools what it could not send
        cp = trapline(*ctx.send_args("-T", "-N", "-i", inp, "--spool", spool), timeout=60)
        check(cp.returncode == 1 and "Sending failed." in cp.stdout,
              f"Zabbix down, no --retry-for: expected 'Sending failed.' and exit 1: "
              f"{describe(cp)}")
        check(spool_pending(spool) == n, f"spool holds {spool_pending(spool)}, want {n}")
        say(f"zabbix down: exit 1, all {n} values spooled")
    finally:
        z.start_server()
    # a slow replay (20 values per request, one connection) to kill in its middle
    p = BackgroundProc([trapline_bin()] + [str(a) for a in ctx.send_args(
        "--spool", spool, "-i", "/dev/null", "--retry-for", "60", "--batch", "20",
        "--connections", "1")], ctx.tmp, "spool-replay-1")

    def mid_replay():
        if not p.alive():
            return "ended"
        k = spool_pending(spool)
        return k if 0 < k <= n - 200 else None

    seen = wait_until(mid_replay, 60, "the replay to commit 200 values", 0.002)
    p.kill9()
    left = spool_pending(spool)
    check(seen != "ended" and left > 0,
          f"the replay ended before it could be killed (rc {p.popen.returncode}); "
          f"pending {left}\n{p.output()}")
    stored = wait_until(lambda: (lambda k: k if k >= n - left else None)(
        sum(history_counts(z, fed).values())), 30,
        f"the {n - left} values the spool counts delivered in history")
    say(f"killed the replay with {left} of {n} values left in the spool; {stored} in history")
    cp = trapline(*ctx.send_args("--spool", spool, "-i", "/dev/null", "--retry-for", "60"),
                  timeout=120)
    check(cp.returncode == 0, f"second replay: {describe(cp)}")
    check(spool_pending(spool) == 0, f"spool not empty after the second replay: "
                                     f"{spool_pending(spool)}")
    rows = wait_history_counts(z, {i: len(v) for i, v in fed.items()}, 90)
    compare_stored("kill during replay", fed, rows)
    say(f"all {n} values in history once across {len(fed)} items; values sent twice (and "
        f"skipped by the primary key): {pk_duplicates(z) - dups_before} insert conflicts in the "
        "server log")


def test_spool_sigterm_and_lock(ctx):
    z = ctx.z
    n = 500
    ids, values, fed = spool_items(z, "sigterm-host", 10, n)
    spool = ctx.path("spool-sigterm")
    z.stop_server()
    try:
        p = BackgroundProc([trapline_bin()] + [str(a) for a in ctx.send_args(
            "-T", "-N", "-i", "-", "--spool", spool, "--retry-for", "600")], ctx.tmp,
            "spool-sigterm")
        p.write(sender_lines(values))
        wait_until(lambda: os.path.exists(os.path.join(spool, "lock")) or not p.alive(), 10,
                   "the spool folder to be created")
        time.sleep(1)  # let it read all lines (they stay in memory: no --memory-values)
        check(p.alive(), f"trapline send exited early\n{p.output()}")
        # a second sender on the same spool folder is refused
        cp = trapline(*ctx.send_args("--spool", spool, "-i", "/dev/null"), timeout=30)
        check(cp.returncode == 1 and "in use" in cp.stderr,
              f"a second sender on the same spool folder should be refused: {describe(cp)}")
        say(f"second sender on the spool: exit 1: {cp.stderr.strip()}")
        t0 = time.monotonic()
        p.popen.send_signal(signal.SIGTERM)
        rc = p.wait(20)
        say(f"SIGTERM: exit {rc} after {time.monotonic() - t0:.1f}s; "
            f"{spool_pending(spool)} values in the spool")
        check(rc != 0, f"interrupted send should not exit 0\n{p.output()}")
        check(spool_pending(spool) == n, f"spool holds {spool_pending(spool)} of {n} values "
                                         f"after SIGTERM\n{p.output()}")
    finally:
        z.start_server()
    cp = trapline(*ctx.send_args("--spool", spool, "-i", "/dev/null", "--retry-for", "60"),
                  timeout=120)
    check(cp.returncode == 0 and spool_pending(spool) == 0, f"replay: {describe(cp)}")
    rows = wait_history_counts(z, {i: len(v) for i, v in fed.items()}, 60)
    compare_stored("sigterm", fed, rows)
    say(f"all {n} values in history once after the replay")


# --------------------------------------------------------------------------------------------
# 2. a 60 s outage under a long-running `trapline send -i -`


def test_outage(ctx):
    z = ctx.z
    keys = [f"out.{i}" for i in range(5)]
    ids = z.create_trapper_host("outage-host", [(k, 0) for k in keys])
    spool = ctx.path("spool-outage")
    p = BackgroundProc([trapline_bin()] + [str(a) for a in ctx.send_args(
        "-T", "-N", "-i", "-", "--retry-for", "300", "--spool", spool)], ctx.tmp, "outage")
    fed = []  # (key, clock, ns, value) in the order written
    stop = threading.Event()
    error = []

    def feeder():
        seq = 0
        next_t = time.monotonic()
        while not stop.is_set():
            t = time.time_ns()
            key = keys[seq % len(keys)]
            value = f"{seq}.5"
            try:
                p.write(f"outage-host {key} {t // NS} {t % NS} {value}\n")
            except (BrokenPipeError, OSError) as e:
                error.append(f"writing to trapline send failed after {seq} values: {e}")
                return
            fed.append((key, t // NS, t % NS, float(value)))
            seq += 1
            next_t += 0.1
            time.sleep(max(0.0, next_t - time.monotonic()))

    th = threading.Thread(target=feeder, daemon=True)
    th.start()
    try:
        time.sleep(5)
        wait_until(lambda: sum(history_counts(z, ids.values()).values()) > 0, 15,
                   "the first values in history (before the outage)")
        before = len(fed)
        t_stop = time.monotonic()
        z.stop_server()
        say(f"{before} values fed; zabbix server stopped in {time.monotonic() - t_stop:.1f}s; "
            "feeding on for 60 s")
        time.sleep(60)
        check(p.alive(), f"trapline send exited during the outage\n{p.output()}")
        during = len(fed) - before
    finally:
        z.start_server()
    say(f"{during} values fed during the outage; zabbix server started again")
    time.sleep(5)
    stop.set()
    th.join(10)
    check(not error, f"feeder: {error}")
    p.close_stdin()
    t_close = time.monotonic()
    rc = p.wait(200)
    out = p.stdout()
    say(f"stdin closed after {len(fed)} values; trapline send exited {rc} "
        f"{time.monotonic() - t_close:.1f}s later")
    check(rc == 0, f"trapline send should exit 0\n{p.output()}")
    check(summary_of(out) == (len(fed), 0, len(fed)),
          f"summary should be 'sent: {len(fed)}; skipped: 0; total: {len(fed)}'\n{p.output()}")
    check(spool_pending(spool) == 0, f"spool not empty: {spool_pending(spool)}")
    want = collections.defaultdict(list)
    for key, c, ns, v in fed:
        want[ids[key]].append((c, ns, v))
    rows = wait_history_counts(z, {i: len(v) for i, v in want.items()}, 60)
    compare_stored("outage", dict(want), rows)
    say(f"all {len(fed)} values in history once, in the fed order, across {len(keys)} items")


if __name__ == "__main__":
    sys.exit(run_checks([test_value_sets, test_grace_new_item, test_spool_kill,
                         test_spool_kill_replay, test_spool_sigterm_and_lock, test_outage],
                        setup, teardown))
