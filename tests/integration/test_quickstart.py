"""The README's first command, as a user runs it: `scripts/quickstart.sh --check` (here with
--no-deps --no-build: the test command has just done both) brings the local stack up in a
temporary folder, starts the demo cluster (registry, coordinator, two collectors, admin panel,
discovery script) and verifies it end to end with `scripts/stack.py verify --demo`.

  test_quickstart_check   exit 0; the verify lines say what was seen: Zabbix login, the leader,
                          two active collectors, the three Zabbix hosts with dashboards and
                          fresh values, linux.mem.total equal to this machine's MemTotal, this
                          machine on the Discovery page, the panel's admin login; nothing of
                          the stack is left running and the temporary folder is gone
"""

import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SOURCE, check, run_checks, say  # noqa: E402


def processes_naming(text):
    """Live processes whose command line has `text` in it (an orphan too)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if text in args:
            found.append((int(pid), args.strip()))
    return found


def test_quickstart_check():
    build = os.path.dirname(os.environ.get("TRAPLINE_BIN") or os.path.join(SOURCE, "build", "x"))
    env = dict(os.environ, TRAPLINE_BUILD_DIR=build)
    t0 = time.monotonic()
    # Its own process group: what the quick start leaves behind, if anything, is found by it.
    proc = subprocess.Popen(["bash", os.path.join(SOURCE, "scripts", "quickstart.sh"), "--check",
                             "--no-deps", "--no-build"], cwd=SOURCE, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    took = time.monotonic() - t0
    verify = [line for line in out.splitlines() if line.startswith("stack verify:")]
    for line in verify:
        say(line)
    say(f"quickstart.sh --check: exit {proc.returncode} in {took:.0f} s")
    check(proc.returncode == 0, f"exit {proc.returncode}; last lines:\n" +
          "\n".join(out.splitlines()[-40:]))
    check(len(verify) == 2 and all(": OK: " in line for line in verify), verify)
    check(re.search(r"the demo after \d+ s: coordinator leader, two active collectors", verify[1]),
          verify[1])
    check("quickstart: check passed; everything stopped." in out, out[-2000:])
    m = re.search(r"local stack on 127\.0\.0\.1 \(state in (\S+)\)", out)
    check(m, "quickstart.sh did not say where its state is")
    state = m.group(1)
    check(not processes_naming(state), f"still running: {processes_naming(state)}")
    check(not os.path.exists(os.path.dirname(state)), f"{state} is still there")


if __name__ == "__main__":
    sys.exit(run_checks([test_quickstart_check], limit_s=660))
