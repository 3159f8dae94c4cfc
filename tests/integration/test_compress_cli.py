"""`trapline compress` from the outside: the fixtures in tests/fixtures/compress give exactly
their expected output, bad input stops with the line number and exit status 1, bad usage gives
exit status 2, and random series (random walk with spikes, constant, large magnitude, counter)
compress to value sets with the samples' exact min, max and mean per interval. No servers."""

import glob
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    SOURCE, check, check_value_sets, compress_input, counter_rates, describe, gen_samples,
    parse_compress_output, run_checks, say, trapline)

FIXTURES = os.path.join(SOURCE, "tests", "fixtures", "compress")
# first line of a fixture: "# trapline compress ARGS < NAME.in  (expected output: NAME.out)"
HEADER_RE = re.compile(r"^#\s*trapline compress\s+(.*?)\s*<\s*(\S+)\s*\(expected output:\s*(\S+)\)")


def fixtures():
    found = []
    for path in sorted(glob.glob(os.path.join(FIXTURES, "*.in"))):
        with open(path) as f:
            first = f.readline()
        m = HEADER_RE.match(first)
        check(m, f"{path}: first line is not '# trapline compress ARGS < X.in  "
                 f"(expected output: X.out)': {first!r}")
        check(m.group(2) == os.path.basename(path),
              f"{path}: header names input {m.group(2)!r}")
        found.append((path, m.group(1).split(), os.path.join(FIXTURES, m.group(3))))
    check(len(found) >= 2, f"expected at least 2 fixtures in {FIXTURES}, found {len(found)}")
    return found


def test_fixtures():
    for path, args, out_path in fixtures():
        with open(path) as f:
            data = f.read()
        with open(out_path) as f:
            want = f.read()
        cp = trapline("compress", *args, input=data)
        check(cp.returncode == 0, f"{os.path.basename(path)}: {describe(cp)}")
        check(cp.stderr == "", f"{os.path.basename(path)}: unexpected stderr {cp.stderr!r}")
        check(cp.stdout == want,
              f"{os.path.basename(path)}: output differs from {os.path.basename(out_path)}:\n"
              f"--- got ---\n{cp.stdout}--- want ---\n{want}")
        say(f"{os.path.basename(path)} {' '.join(args)}: {len(want.splitlines())} lines as expected")
        # the same input without its last newline, with CRLF line ends and blank lines
        cp = trapline("compress", *args, input=data.rstrip("\n"))
        check(cp.returncode == 0 and cp.stdout == want,
              f"{os.path.basename(path)} without the final newline: {describe(cp)}")
        cp = trapline("compress", *args, input="\n" + data.replace("\n", "\r\n\n"))
        check(cp.returncode == 0 and cp.stdout == want,
              f"{os.path.basename(path)} with CRLF and blank lines: {describe(cp)}")


def test_bad_lines():
    good = "1700000000 1\n1700000001 3\n1700000061 5\n"  # closes [1700000000, 1700000060)
    closed = "1700000000 0 1\n1700000001 0 3\n"
    cases = [
        ("1700000062\n", "expected 2 fields"),
        ("1700000062 1 2\n", "expected 2 fields"),
        ("17000000x2 1\n", "is not a unix time"),
        ("-1700000062 1\n", "is not a unix time"),
        ("1700000062 abc\n", "is not a number"),
        ("1700000062 nan\n", "is not finite"),
        ("1700000062 inf\n", "is not finite"),
        ("1700000062 1e301\n", "out of range"),
        ("1700000062 1e999\n", "out of range"),
        ("1700000060.5 1\n", "is before the previous sample"),
    ]
    for bad, reason in cases:
        cp = trapline("compress", "--interval", "60", input=good + bad + "1700000070 1\n")
        check(cp.returncode == 1, f"bad line {bad!r}: expected exit 1, {describe(cp)}")
        check("line 4" in cp.stderr and reason in cp.stderr,
              f"bad line {bad!r}: stderr should name 'line 4' and say {reason!r}: {describe(cp)}")
        check(cp.stdout == closed,
              f"bad line {bad!r}: stdout should hold the closed interval only: {describe(cp)}")
        say(f"{bad.strip()!r}: exit 1, {cp.stderr.strip()}")
    # a comment and a blank line count as lines: the number is the input's line number
    cp = trapline("compress", "--interval", "60",
                  input="# comment\n\n1700000000 1\nbad line here\n")
    check(cp.returncode == 1 and "line 4" in cp.stderr, f"line numbering: {describe(cp)}")
    # the bad line is the last one, without a newline
    cp = trapline("compress", "--interval", "60", input="1700000000 1\n1700000001 x")
    check(cp.returncode == 1 and "line 2" in cp.stderr, f"last line bad: {describe(cp)}")
    # with --counter too
    cp = trapline("compress", "--interval", "60", "--counter",
                  input="1700000000 1\n1700000001 3\nx 1\n")
    check(cp.returncode == 1 and "line 3" in cp.stderr, f"--counter, bad line: {describe(cp)}")


def test_usage():
    for args in (["compress"], ["compress", "--interval", "0"],
                 ["compress", "--interval", "60", "--wrap-bits", "32"],
                 ["compress", "--interval", "60", "--counter", "--wrap-bits", "16"],
                 ["compress", "--interval", "60", "extra"]):
        cp = trapline(*args, input="")
        check(cp.returncode == 2 and cp.stderr.strip(),
              f"{' '.join(args)}: expected usage error (exit 2, message): {describe(cp)}")
        say(f"{' '.join(args)}: exit 2: {cp.stderr.strip().splitlines()[0]}")
    cp = trapline("compress", "--interval", "60", input="")
    check(cp.returncode == 0 and cp.stdout == "", f"empty input: {describe(cp)}")


def test_random_series():
    rng = random.Random(20240601)
    start = 1700000000 + 17  # starts mid-interval
    for kind, interval, counter in (("walk", 10, False), ("walk", 60, False),
                                    ("walk", 7, False), ("const", 30, False),
                                    ("big", 30, False), ("counter", 60, True),
                                    ("counter", 10, True)):
        samples = gen_samples(kind, start, 600, rng)
        args = ["compress", "--interval", str(interval)] + (["--counter"] if counter else [])
        cp = trapline(*args, input=compress_input(samples))
        check(cp.returncode == 0 and cp.stderr == "", f"{kind}: {describe(cp)}")
        values = parse_compress_output(cp.stdout)
        check(values == sorted(values), f"{kind}: output not sorted by time")
        source = counter_rates(samples) if counter else samples
        s = check_value_sets(f"{kind} S={interval}", source, values, interval)
        check(len(values) < len(source),
              f"{kind} S={interval}: {len(values)} values for {len(source)} samples")
        say(f"{kind} S={interval}{' --counter' if counter else ''}: {s['samples']} samples -> "
            f"{s['values']} values in {s['intervals']} intervals; min/max exact, worst mean "
            f"error {s['worst_mean_error_of_tolerance']:.2g} of the tolerance")


if __name__ == "__main__":
    sys.exit(run_checks([test_fixtures, test_bad_lines, test_usage, test_random_series]))
