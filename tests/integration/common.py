"""Shared helpers for trapline's integration tests (Python 3 stdlib only).

Each test file registers check functions and hands them to run_checks(), which runs them in
order (a failing check does not stop the others), prints "ok"/"FAIL" per check with its time,
and ends with the line "N passed, M failed"; the exit status is 1 when any check failed.

Environment (set by CTest): TRAPLINE_BIN (the trapline binary), TRAPLINE_SOURCE (the repo
root), PYTHONPATH=<repo>/tests (for `harness`). Without them the paths are derived from this
file's location (build/trapline in the repo), so a file can be run by hand too.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("TRAPLINE_SOURCE") or os.path.dirname(os.path.dirname(HERE))
TESTS_DIR = os.path.join(SOURCE, "tests")
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from harness import api_call  # noqa: E402,F401  (re-exported for the tests)

ZABBIX_SENDER = "/usr/bin/zabbix_sender"

# "Response from "127.0.0.1:PORT": "processed: 1; failed: 0; total: 1; seconds spent: 0.000044""
RESPONSE_RE = re.compile(r'^Response from "([^"]*)": "processed: (\d+); failed: (\d+); '
                         r'total: (\d+); seconds spent: (\d+\.\d+)"$')
SUMMARY_RE = re.compile(r"^sent: (\d+); skipped: (\d+); total: (\d+)$")


class Failure(AssertionError):
    """A check failed; the message says what was expected and what was seen."""


class CheckTimeout(Failure):
    pass


def check(cond, msg) -> None:
    if not cond:
        raise Failure(msg() if callable(msg) else msg)


def say(msg: str) -> None:
    """A progress line: what is being checked now."""
    print(f"    {msg}", flush=True)


_bin_copy = None


def trapline_bin() -> str:
    """A copy of $TRAPLINE_BIN (default build/trapline) taken at first use, so that every
    check of a file runs the same binary even if the build tree is rebuilt meanwhile."""
    global _bin_copy
    if _bin_copy:
        return _bin_copy
    path = os.environ.get("TRAPLINE_BIN") or os.path.join(SOURCE, "build", "trapline")
    if not os.access(path, os.X_OK):
        raise Failure(f"trapline binary not found or not executable: {path} "
                      "(set TRAPLINE_BIN or run scripts/build.sh)")
    import shutil
    copy = os.path.join(make_tmp("bin"), "trapline")
    shutil.copy2(path, copy)
    _bin_copy = copy
    return copy


def make_tmp(name: str) -> str:
    """A temp folder of this test file's own, removed at exit unless TRAPLINE_KEEP_TMP=1."""
    parent = os.environ.get("TRAPLINE_TEST_TMP") or None
    if parent:
        os.makedirs(parent, exist_ok=True)
    d = tempfile.mkdtemp(prefix=f"trapline-{name}-", dir=parent)
    if os.environ.get("TRAPLINE_KEEP_TMP", "") in ("", "0"):
        import shutil
        atexit.register(shutil.rmtree, d, True)
    return d


# --------------------------------------------------------------------------------------------
# running trapline and zabbix_sender


def fmt_argv(argv) -> str:
    return " ".join(shlex.quote(str(a)) for a in argv)


def run(argv, input=None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Runs a command to completion (text mode, stdout and stderr captured). A command still
    running after `timeout` seconds is killed and reported as a failure (it hung)."""
    argv = [str(a) for a in argv]
    say(f"$ {fmt_argv(argv)}" + (f"  (stdin: {len(input.splitlines())} lines)"
                                  if isinstance(input, str) else ""))
    try:
        return subprocess.run(argv, input=input, capture_output=True, text=True,
                              timeout=timeout, stdin=None if input is not None
                              else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise Failure(f"{fmt_argv(argv)} did not finish within {timeout:.0f}s (it hangs); "
                      f"stdout: {e.stdout!r} stderr: {e.stderr!r}") from None


def trapline(*args, input=None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return run([trapline_bin()] + [str(a) for a in args], input=input, timeout=timeout)


def describe(cp: subprocess.CompletedProcess) -> str:
    return (f"exit {cp.returncode}\n--- stdout ---\n{cp.stdout.rstrip()}\n"
            f"--- stderr ---\n{cp.stderr.rstrip()}\n---")


_live: dict[int, subprocess.Popen] = {}


def _kill_live() -> None:
    for pid, p in list(_live.items()):
        if p.poll() is None:
            try:
                os.kill(pid, signal.SIGKILL)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        _live.pop(pid, None)


atexit.register(_kill_live)


class BackgroundProc:
    """A long-running process (e.g. `trapline send -i -`) fed through a pipe; stdout and stderr
    go to files (so a full pipe can never block it). Only this process is ever signalled."""

    def __init__(self, argv, workdir: str, name: str):
        self.argv = [str(a) for a in argv]
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        say(f"$ {fmt_argv(self.argv)} &  (stdin: a pipe)")
        with open(self.stdout_path, "w") as out, open(self.stderr_path, "w") as err:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=out,
                                          stderr=err, text=True, bufsize=1)
        _live[self.popen.pid] = self.popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def write(self, text: str) -> None:
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin and not self.popen.stdin.closed:
            self.popen.stdin.close()

    def wait(self, timeout: float) -> int:
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{fmt_argv(self.argv)} (pid {self.pid}) still running after "
                          f"{timeout:.0f}s\n{self.output()}") from None
        _live.pop(self.pid, None)
        return rc

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        _live.pop(self.pid, None)
        try:
            self.close_stdin()
        except BrokenPipeError:
            pass

    def stdout(self) -> str:
        with open(self.stdout_path) as f:
            return f.read()

    def stderr(self) -> str:
        with open(self.stderr_path) as f:
            return f.read()

    def output(self) -> str:
        return (f"--- stdout ---\n{self.stdout().rstrip()}\n--- stderr (last 3000 chars) ---\n"
                f"{self.stderr()[-3000:].rstrip()}\n---")


class LongLivedProc(BackgroundProc):
    """A server-like process (coordinator, collector) that lives across checks: run_checks
    ends the other BackgroundProcs after each check, not these; the test's teardown calls
    end() on each."""

    def __init__(self, argv, workdir: str, name: str):
        super().__init__(argv, workdir, name)
        _live.pop(self.pid, None)

    def end(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def sender_lines(values, with_ns: bool = True) -> str:
    """'<host> <key> <clock> [<ns>] <value>' lines for `trapline send -T [-N]`."""
    out = []
    for host, key, clock, ns, value in values:
        out.append(f"{host} {key} {clock} {ns} {value}" if with_ns
                   else f"{host} {key} {clock} {value}")
    return "\n".join(out) + "\n"


def summary_of(stdout: str):
    """(sent, skipped, total) from the summary line, or None."""
    for line in stdout.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            return tuple(int(x) for x in m.groups())
    return None


# --------------------------------------------------------------------------------------------
# spool folders


def spool_pending(spool_dir: str) -> int:
    """Values in a spool folder after its head (what a restart would replay): lines of the
    segment files "<n>.spool", minus those before the head ("segment offset index")."""
    if not os.path.isdir(spool_dir):
        return 0
    head_seg, head_index = None, 0
    try:
        with open(os.path.join(spool_dir, "head")) as f:
            parts = f.read().split()
        head_seg, head_index = int(parts[0]), int(parts[2])
    except (OSError, IndexError, ValueError):
        pass
    total = 0
    for name in os.listdir(spool_dir):
        if not name.endswith(".spool"):
            continue
        seg = int(name[:-len(".spool")])
        if head_seg is not None and seg < head_seg:
            continue
        try:
            with open(os.path.join(spool_dir, name), "rb") as f:
                lines = f.read().count(b"\n")
        except FileNotFoundError:  # delivered and removed meanwhile
            continue
        if head_seg is not None and seg == head_seg:
            lines -= head_index
        total += lines
    return total


def spool_lines(spool_dir: str) -> int:
    """All complete lines in the spool's segment files (delivered or not)."""
    total = 0
    for name in os.listdir(spool_dir) if os.path.isdir(spool_dir) else ():
        if name.endswith(".spool"):
            with open(os.path.join(spool_dir, name), "rb") as f:
                total += f.read().count(b"\n")
    return total


def wait_until(cond, timeout: float, what: str, interval: float = 0.1):
    """Polls cond() until it returns a true value (returned) or raises Failure after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# --------------------------------------------------------------------------------------------
# the check runner


def _alarm(_signum, _frame):
    raise CheckTimeout("check exceeded its time limit (something hangs)")


def run_checks(checks, setup=None, teardown=None, limit_s: int = 300) -> int:
    """Runs `checks` (functions taking the object `setup()` returns, or nothing without a
    setup) in order; each gets at most `limit_s` seconds (SIGALRM). Prints one line per check
    and the final "N passed, M failed". Returns the exit status."""
    only = sys.argv[1:]
    passed = failed = 0
    t_all = time.monotonic()
    ctx = None
    signal.signal(signal.SIGALRM, _alarm)
    try:
        if setup:
            t0 = time.monotonic()
            try:
                signal.alarm(limit_s)
                ctx = setup()
            except Exception:  # noqa: BLE001 - every check fails without the servers
                signal.alarm(0)
                traceback.print_exc()
                n = len([c for c in checks if not only or c.__name__ in only])
                print(f"FAIL setup ({time.monotonic() - t0:.1f}s)")
                print(f"0 passed, {n} failed", flush=True)
                return 1
            signal.alarm(0)
            print(f"setup {time.monotonic() - t0:.1f}s", flush=True)
        for c in checks:
            if only and c.__name__ not in only:
                continue
            t0 = time.monotonic()
            print(f"---- {c.__name__}", flush=True)
            try:
                signal.alarm(limit_s)
                c(ctx) if setup else c()
                signal.alarm(0)
            except Exception:  # noqa: BLE001 - report and go on
                signal.alarm(0)
                failed += 1
                sys.stdout.flush()
                traceback.print_exc()
                sys.stderr.flush()
                print(f"FAIL {c.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            else:
                passed += 1
                print(f"ok   {c.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
            _kill_live()
    finally:
        signal.alarm(0)
        if teardown and ctx is not None:
            try:
                teardown(ctx)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
    print(f"total {time.monotonic() - t_all:.1f}s")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# samples and value sets (what `trapline compress` promises)

NS = 1_000_000_000


def gen_samples(kind: str, start_s: int, n: int, rng) -> list[tuple[int, float]]:
    """n samples about 1 s apart from start_s: [(time in ns, value)], times strictly rising.
    kind: "walk" (random walk with spikes up and down), "const", "big" (1e9 + small noise:
    the ulp of the values is near the range), "counter" (a monotonic byte counter with a
    reset in the middle)."""
    out = []
    x = 50.0
    c = 5_000_000_000.0
    for i in range(n):
        t = (start_s + i) * NS + rng.randrange(0, 900_000_000)
        if kind == "walk":
            x += rng.gauss(0, 2)
            v = x
            r = rng.random()
            if r < 0.03:
                v = x + rng.uniform(50, 400)
            elif r < 0.05:
                v = x - rng.uniform(50, 400)
        elif kind == "const":
            v = 42.125
        elif kind == "big":
            v = 1e9 + rng.gauss(0, 3)
        elif kind == "counter":
            if i == n // 2:
                c = float(rng.randrange(0, 1000))  # a restart: no rate, no false spike
            else:
                c += float(rng.randrange(500, 5000) if rng.random() > 0.05 else 100_000)
            v = c
        else:
            raise ValueError(kind)
        out.append((t, v))
    return out


def compress_input(samples) -> str:
    """'<unix_time> <value>' lines, the time with 9 decimals, the value in its shortest
    round-trip form."""
    return "".join(f"{t // NS}.{t % NS:09d} {v!r}\n" for t, v in samples)


def counter_rates(samples) -> list[tuple[int, float]]:
    """Per-second rates as `trapline compress --counter` computes them (a decrease gives none,
    the first sample gives none)."""
    out = []
    prev = None
    for t, v in samples:
        if prev is not None and t > prev[0]:
            delta = v - prev[1]
            if delta >= 0:
                out.append((t, delta / (float(t - prev[0]) / float(NS))))
        prev = (t, v)
    return out


def parse_compress_output(text: str) -> list[tuple[int, int, float]]:
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        f = line.split()
        check(len(f) == 3, f"compress output line {i} is not '<clock> <ns> <value>': {line!r}")
        rows.append((int(f[0]), int(f[1]), float(f[2])))
    return rows


def minimal_count(m: float, M: float, mean) -> int:
    """The smallest value count with this min, max and (exact, Fraction) mean."""
    from fractions import Fraction
    import math
    if m == M:
        return 1
    t = (mean - Fraction(m)) / (Fraction(M) - Fraction(m))
    low = min(t, 1 - t)
    if low <= 0:
        return 10**9  # cannot happen for real samples (mean strictly inside when m < M)
    return max(2, math.ceil(1 / low))


def check_value_sets(name: str, samples, stored, interval_s: int) -> dict:
    """Checks that `stored` [(clock, ns, value)] is a value-set compression of `samples`
    [(t_ns, value)] with intervals of interval_s seconds: per interval the same min and max
    (bit for bit), a count-weighted mean within 1e-9 * range + ulp(max |value|) / count of the
    samples' exact mean, a count between the minimal one minus one and the minimal one, and
    every time inside its interval. Returns a summary dict."""
    from fractions import Fraction
    import math
    src: dict[int, list[float]] = {}
    for t, v in samples:
        src.setdefault((t // NS) // interval_s, []).append(v)
    got: dict[int, list[tuple[int, int, float]]] = {}
    for clock, ns, v in stored:
        check(0 <= ns < NS, f"{name}: ns out of range in {(clock, ns, v)}")
        got.setdefault(clock // interval_s, []).append((clock, ns, v))
    check(sorted(src) == sorted(got),
          lambda: f"{name}: intervals with samples {sorted(src)} but values stored for "
                  f"{sorted(got)} (S={interval_s})")
    worst = Fraction(0)
    for k in sorted(src):
        vals = src[k]
        rows = got[k]
        sv = [r[2] for r in rows]
        m, M = min(vals), max(vals)
        mean = sum(Fraction(v) for v in vals) / len(vals)
        where = f"{name}: interval [{k * interval_s}, {(k + 1) * interval_s})"
        check(len(set((c, n) for c, n, _ in rows)) == len(rows),
              f"{where}: two values share a (clock, ns): {rows}")
        check(min(sv) == m and min(sv).hex() == m.hex(),
              f"{where}: min {min(sv)!r} != samples' min {m!r} (values {rows})")
        check(max(sv) == M and max(sv).hex() == M.hex(),
              f"{where}: max {max(sv)!r} != samples' max {M!r} (values {rows})")
        got_mean = sum(Fraction(v) for v in sv) / len(sv)
        tol = Fraction(1e-9) * (Fraction(M) - Fraction(m)) + \
            Fraction(math.ulp(max(abs(m), abs(M)))) / len(sv)
        err = abs(got_mean - mean)
        check(err <= tol,
              f"{where}: mean of the values {float(got_mean)!r} differs from the samples' mean "
              f"{float(mean)!r} by {float(err):.3g} > {float(tol):.3g} (values {rows})")
        if tol > 0:
            worst = max(worst, err / tol)
        kmin = minimal_count(m, M, mean)
        check(len(sv) <= len(vals), f"{where}: {len(sv)} values for {len(vals)} samples")
        # kmin <= samples always; rounding may save one value near t = 1/k, never add one
        check(kmin - 1 <= len(sv) <= kmin,
              f"{where}: {len(sv)} values where the minimal count is {kmin} "
              f"({len(vals)} samples; values {rows})")
    return {"intervals": len(src), "samples": len(samples), "values": len(stored),
            "worst_mean_error_of_tolerance": float(worst)}
