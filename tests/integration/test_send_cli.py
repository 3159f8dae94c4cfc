"""`trapline send` as a zabbix_sender drop-in, against a real Zabbix 6.0 server (one
ZabbixStack for the file) and against tiny misbehaving TCP peers.

  test_malformed_lines       bad lines are skipped with "[line N] reason", good ones stored, exit 2
  test_unknown_key           values Zabbix counts failed are reported by host and key, exit 2;
                             first reply and summary as zabbix_sender's
  test_like_zabbix_sender    valid input: same output (but for "seconds spent") and exit code as
                             /usr/bin/zabbix_sender; values stored intact
  test_config_file           --config: a misspelt key or table names the key and its line;
                             a good file works; flags override it; a big input is not dropped
  test_misbehaving_peers     HTTP, reset mid-reply, close mid-reply, silence, not JSON, "failed":
                             exit 1, "Sending failed.", nothing hangs (as zabbix_sender)
  test_zabbix_down           server stopped, no --retry-for: "Sending failed.", exit 1
"""

import collections
import os
import re
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    RESPONSE_RE, ZABBIX_SENDER, check, describe, make_tmp, run, run_checks, say,
    summary_of, trapline, wait_until)
from harness import HOST, ZabbixStack  # noqa: E402

HOSTNAME = "cli-host"


class Ctx:
    def __init__(self):
        self.tmp = make_tmp("send-cli")
        self.z = ZabbixStack()
        self.z.start()
        self.ids = self.z.create_trapper_host(
            HOSTNAME, [("cli.a", 0), ("cli.b", 0), ("cli.u", 3), ("cli.t", 4)]
            + [(f"big.{i}", 0) for i in range(20)])

    @property
    def port(self) -> int:
        return self.z.server_port

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    def write(self, name: str, text: str) -> str:
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p


def setup():
    return Ctx()


def teardown(ctx):
    ctx.z.close()


def normalized(stdout: str) -> list[str]:
    """Output lines with the timing in replies blanked (it differs from run to run)."""
    return [re.sub(r"seconds spent: \d+\.\d+", "seconds spent: X", line)
            for line in stdout.splitlines()]


def responses(stdout: str):
    out = []
    for line in stdout.splitlines():
        if line.startswith("Response from"):
            m = RESPONSE_RE.match(line)
            check(m, f"response line not in zabbix_sender's format: {line!r}")
            out.append((m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4))))
    return out


def zabbix_sender(*args, input=None, timeout=60):
    return run([ZABBIX_SENDER] + [str(a) for a in args], input=input, timeout=timeout)


def history(ctx, key, since=None):
    return ctx.z.history(ctx.ids[key], since=since)


def wait_contains(ctx, key, rows, timeout=30):
    """Waits until the item's history holds every (clock, ns, value) of `rows`; returns the
    history (earlier checks may have stored other values for the item)."""
    want = set(rows)
    got = wait_until(lambda: (lambda h: h if want <= set(h) else None)(history(ctx, key)),
                     timeout, f"{sorted(want)} in the history of {key}")
    return got


# --------------------------------------------------------------------------------------------


def test_malformed_lines(ctx):
    now = int(time.time()) - 5
    lines = [
        (None, f"{HOSTNAME} cli.a {now} 1 1.5"),
        ("'Key' required", f"{HOSTNAME}"),
        ("invalid 'Timestamp' value", f"{HOSTNAME} cli.a abc 2 2.5"),
        ("missing closing quote", f'{HOSTNAME} cli.a {now} 3 "unterminated'),
        ("'-' encountered as 'Hostname', but no default hostname",
         f"- cli.a {now} 4 4.5"),
        (None, f"{HOSTNAME} cli.b {now} 5 5.5"),
        (None, f'"{HOSTNAME}" "cli.b" {now} 6 "6.5"'),
        ("invalid 'Nanoseconds' value", f"{HOSTNAME} cli.a {now} xyz 7.5"),
        ("'Key value' required", f"{HOSTNAME} cli.a {now} 8"),
        (None, f"{HOSTNAME} cli.a {now + 1} 9 9.5"),
    ]
    inp = ctx.write("malformed.txt", "\n".join(text for _, text in lines) + "\n")
    cp = trapline("send", "-z", HOST, "-p", ctx.port, "-T", "-N", "-i", inp)
    good = sum(1 for why, _ in lines if why is None)
    bad = len(lines) - good
    check(cp.returncode == 2, f"expected exit 2 (some lines skipped): {describe(cp)}")
    check(summary_of(cp.stdout) == (good, bad, len(lines)),
          f"expected 'sent: {good}; skipped: {bad}; total: {len(lines)}': {describe(cp)}")
    for n, (why, text) in enumerate(lines, 1):
        mentioned = [ln for ln in cp.stderr.splitlines() if f"[line {n}]" in ln]
        if why is None:
            check(not mentioned, f"good line {n} reported: {mentioned}")
        else:
            check(len(mentioned) == 1 and why in mentioned[0],
                  f"line {n} {text!r}: expected one '[line {n}] ...{why}...' on stderr: "
                  f"{describe(cp)}")
            say(f"line {n}: {mentioned[0]}")
    a = wait_contains(ctx, "cli.a", [(now, 1, 1.5), (now + 1, 9, 9.5)])
    b = wait_contains(ctx, "cli.b", [(now, 5, 5.5), (now, 6, 6.5)])
    check(len(a) == 2 and len(b) == 2, f"history: cli.a {a}, cli.b {b}")
    say(f"exit 2, 'sent: {good}; skipped: {bad}; total: {len(lines)}', good lines stored")
    # with -s the '-' host is the default host
    cp = trapline("send", "-z", HOST, "-p", ctx.port, "-s", HOSTNAME, "-T", "-N", "-i", "-",
                  input=f"- cli.a {now + 2} 1 11.5\n")
    check(cp.returncode == 0 and summary_of(cp.stdout) == (1, 0, 1), f"'-' with -s: {describe(cp)}")
    wait_contains(ctx, "cli.a", [(now + 2, 1, 11.5)])


def test_unknown_key(ctx):
    now = int(time.time()) - 5
    text = (f"{HOSTNAME} cli.a {now} 100 1.25\n"
            f"{HOSTNAME} no.such.key {now} 101 2\n"
            f"{HOSTNAME} cli.b {now} 102 3.25\n"
            f"no-such-host cli.a {now} 103 4\n"
            f"{HOSTNAME} cli.b {now} 104 5.25\n")
    inp = ctx.write("unknown.txt", text)
    cp = trapline("send", "-z", HOST, "-p", ctx.port, "-T", "-N", "-i", inp)
    check(cp.returncode == 2, f"expected exit 2 (some values failed): {describe(cp)}")
    for host, key in ((HOSTNAME, "no.such.key"), ("no-such-host", "cli.a")):
        hit = [ln for ln in cp.stderr.splitlines() if f'"{host}"' in ln and f'"{key}"' in ln]
        check(len(hit) == 1, f"expected one stderr line naming host {host!r} and key {key!r}: "
                             f"{describe(cp)}")
        say(f"reported: {hit[0]}")
    check(summary_of(cp.stdout) == (5, 0, 5), f"summary: {describe(cp)}")
    rs = responses(cp.stdout)
    check(rs and rs[0][1:] == (3, 2, 5), f"first reply should count 3 processed, 2 failed: {rs}")
    wait_contains(ctx, "cli.a", [(now, 100, 1.25)])
    wait_contains(ctx, "cli.b", [(now, 102, 3.25), (now, 104, 5.25)])
    # zabbix_sender on the same file: same exit code, same summary, same first reply
    zs = zabbix_sender("-z", HOST, "-p", ctx.port, "-T", "-N", "-i", inp)
    check(zs.returncode == cp.returncode, f"zabbix_sender exit {zs.returncode}, trapline "
                                          f"{cp.returncode}: {describe(zs)}")
    check(summary_of(zs.stdout) == summary_of(cp.stdout),
          f"summaries differ: zabbix_sender {summary_of(zs.stdout)}, trapline "
          f"{summary_of(cp.stdout)}")
    check(normalized(zs.stdout)[0] == normalized(cp.stdout)[0],
          f"first reply differs: {normalized(zs.stdout)[0]!r} vs {normalized(cp.stdout)[0]!r}")
    say(f"zabbix_sender: exit {zs.returncode}, {normalized(zs.stdout)}")


def test_like_zabbix_sender(ctx):
    now = int(time.time()) - 5
    # the same small file to both: identical output but for the timing
    text = "".join(f"{HOSTNAME} cli.a {now} {200 + i} {i * 0.5}\n" for i in range(6))
    text += f'{HOSTNAME} cli.t {now} 300 "a text with spaces, \\"quotes\\" and \\\\ backslash"\n'
    text += f"{HOSTNAME} cli.u {now} 301 18446744073709551615\n"
    inp = ctx.write("good.txt", text)
    cases = [
        ("file with -T -N", ["-T", "-N", "-i", inp], None),
        ("stdin, no timestamps", ["-i", "-"],
         f"{HOSTNAME} cli.u 7\n{HOSTNAME} cli.b 7.5\n\"{HOSTNAME}\" cli.u \"8\"\n"),
        ("one value -s -k -o", ["-s", HOSTNAME, "-k", "cli.u", "-o", "42"], None),
        ("default host '-'", ["-s", HOSTNAME, "-i", "-"], "- cli.u 43\n- cli.b 0.125\n"),
    ]
    for name, args, stdin in cases:
        cp = trapline("send", "-z", HOST, "-p", ctx.port, *args, input=stdin)
        zs = zabbix_sender("-z", HOST, "-p", ctx.port, *args, input=stdin)
        check(cp.returncode == 0, f"{name}: trapline: {describe(cp)}")
        check(zs.returncode == 0, f"{name}: zabbix_sender: {describe(zs)}")
        check(normalized(cp.stdout) == normalized(zs.stdout),
              f"{name}: output differs from zabbix_sender's:\n--- trapline ---\n{cp.stdout}"
              f"--- zabbix_sender ---\n{zs.stdout}")
        for peer, *_ in responses(cp.stdout):
            check(peer == f"{HOST}:{ctx.port}", f"{name}: reply peer {peer!r}")
        check(cp.stderr == "", f"{name}: trapline wrote to stderr: {cp.stderr!r}")
        say(f"{name}: both exit 0, same output: {normalized(cp.stdout)}")
    wait_contains(ctx, "cli.a", [(now, 200 + i, i * 0.5) for i in range(6)])
    t = wait_contains(ctx, "cli.t", [(now, 300, 'a text with spaces, "quotes" and \\ backslash')])
    check(len(t) == 1, f"cli.t: {t}")
    wait_contains(ctx, "cli.u", [(now, 301, 18446744073709551615)])
    # several requests: 3000 values over 20 items (zabbix_sender sends 250 per request)
    lines = [f"{HOSTNAME} big.{i % 20} {now} {i} {i}.5" for i in range(3000)]
    inp = ctx.write("big.txt", "\n".join(lines) + "\n")
    cp = trapline("send", "-z", HOST, "-p", ctx.port, "-T", "-N", "-i", inp)
    zs = zabbix_sender("-z", HOST, "-p", ctx.port, "-T", "-N", "-i", inp)
    for who, r in (("trapline", cp), ("zabbix_sender", zs)):
        check(r.returncode == 0 and summary_of(r.stdout) == (3000, 0, 3000),
              f"3000 values, {who}: {describe(r)}")
        rs = responses(r.stdout)
        check(sum(x[1] for x in rs) == 3000 and all(x[2] == 0 for x in rs),
              f"{who}: replies {rs}")
    say(f"3000 values: both exit 0, 'sent: 3000; skipped: 0; total: 3000'; trapline "
        f"{len(responses(cp.stdout))} requests, zabbix_sender {len(responses(zs.stdout))}")
    counts = collections.Counter()
    for i in range(20):
        counts[i] = len(ctx.z.wait_for_history(ctx.ids[f"big.{i}"], count=150, since=now))
    check(all(n == 150 for n in counts.values()), f"big.* history counts: {dict(counts)}")


def test_config_file(ctx):
    cfg = ctx.write("bad-key.toml", f'[sender]\nserver = "{HOST}"\nport = {ctx.port}\n'
                                    "conections = 8\n")
    cp = trapline("send", "--config", cfg, "-s", HOSTNAME, "-k", "cli.u", "-o", "1")
    check(cp.returncode == 1, f"misspelt key: expected exit 1: {describe(cp)}")
    check("conections" in cp.stderr and f"{cfg}:4" in cp.stderr,
          f"misspelt key: stderr should name 'conections' and '{cfg}:4': {describe(cp)}")
    check("Response from" not in cp.stdout, f"misspelt key: something was sent: {cp.stdout}")
    say(f"misspelt key: {cp.stderr.strip()}")
    cfg = ctx.write("bad-table.toml", f'[sender]\nserver = "{HOST}"\n\n[sendr]\nport = 1\n')
    cp = trapline("send", "--config", cfg, "-s", HOSTNAME, "-k", "cli.u", "-o", "1")
    check(cp.returncode == 1 and "sendr" in cp.stderr and f"{cfg}:4" in cp.stderr,
          f"misspelt table: {describe(cp)}")
    say(f"misspelt table: {cp.stderr.strip()}")
    cfg = ctx.write("bad-type.toml", '[sender]\nport = "abc"\n')
    cp = trapline("send", "--config", cfg, "-s", HOSTNAME, "-k", "cli.u", "-o", "1")
    check(cp.returncode == 1 and "port" in cp.stderr and f"{cfg}:2" in cp.stderr,
          f"wrong type: {describe(cp)}")
    say(f"wrong type: {cp.stderr.strip()}")
    cp = trapline("send", "--config", ctx.path("missing.toml"), "-s", HOSTNAME, "-k", "cli.u",
                  "-o", "1")
    check(cp.returncode == 1 and "missing.toml" in cp.stderr, f"missing file: {describe(cp)}")
    # a good file: server and port from it
    good = ctx.write("good.toml", f'[sender]\nserver = "{HOST}"\nport = {ctx.port}\n')
    cp = trapline("send", "--config", good, "-s", HOSTNAME, "-k", "cli.u", "-o", "77")
    check(cp.returncode == 0 and summary_of(cp.stdout) == (1, 0, 1), f"good config: {describe(cp)}")
    wait_until(lambda: any(r[2] == 77 for r in history(ctx, "cli.u")), 30,
               "value 77 (sent with --config) in history")
    # flags override the file (its port is wrong)
    wrong = ctx.write("wrong-port.toml", f'[sender]\nserver = "{HOST}"\nport = 1\n')
    cp = trapline("send", "--config", wrong, "-p", ctx.port, "-s", HOSTNAME, "-k", "cli.u",
                  "-o", "78")
    check(cp.returncode == 0, f"-p over the file's port: {describe(cp)}")
    cp = trapline("send", "--config", wrong, "-s", HOSTNAME, "-k", "cli.u", "-o", "79",
                  timeout=30)
    check(cp.returncode == 1 and "Sending failed." in cp.stdout,
          f"the file's wrong port should be used without -p: {describe(cp)}")
    say("good file works; -p overrides the file's port; the file's port is used without -p")
    # a file that does not set memory_values: a big input must not be cut to the collector's
    # default memory bound (100000 values) -- every value is delivered
    now = int(time.time()) - 30
    n = 150000
    text = "".join(f"{HOSTNAME} big.{i % 20} {now + 1} {i} {i}\n" for i in range(n))
    inp = ctx.write("config-big.txt", text)
    cp = trapline("send", "--config", good, "-T", "-N", "-i", inp, timeout=120)
    rs = responses(cp.stdout)
    processed = sum(r[1] for r in rs)
    check(cp.returncode == 0 and processed == n and "dropped" not in cp.stderr,
          f"--config without memory_values, {n} values: exit {cp.returncode}, {processed} "
          f"processed in {len(rs)} replies; stderr (first 500 chars): {cp.stderr[:500]!r}")
    say(f"--config, {n} values from a file: all processed")
    # a file that bounds memory without a spool: the loss is reported, exit 2
    small = ctx.write("small-mem.toml", f'[sender]\nserver = "{HOST}"\nport = {ctx.port}\n'
                                        "memory_values = 1000\n")
    cp = trapline("send", "--config", small, "-T", "-N", "-i", inp, timeout=120)
    processed = sum(r[1] for r in responses(cp.stdout))
    if processed < n:
        check(cp.returncode == 2 and re.search(r"\d+ values dropped", cp.stderr),
              f"memory_values = 1000, no spool: {processed} of {n} processed, so exit 2 and "
              f"'N values dropped' expected: exit {cp.returncode}, stderr tail "
              f"{cp.stderr[-500:]!r}")
        dropped = re.search(r"trapline send: \d+ values dropped", cp.stderr).group(0)
        say(f"memory_values = 1000 without a spool: {processed} of {n} sent, exit 2, {dropped}")
    else:
        check(cp.returncode == 0, f"memory_values = 1000, nothing dropped: {describe(cp)}")
        say("memory_values = 1000 without a spool: Zabbix kept up, nothing dropped")


# --------------------------------------------------------------------------------------------
# misbehaving peers


def _frame(body: bytes) -> bytes:
    return b"ZBXD\x01" + struct.pack("<II", len(body), 0) + body


class Peer:
    """A TCP server on 127.0.0.1 that answers every connection in its own misbehaving way."""

    def __init__(self, mode: str):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind((HOST, 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.closing = False
        self.held = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.closing:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._handle, args=(c,), daemon=True).start()

    def _handle(self, c):
        try:
            c.settimeout(5)
            try:
                c.recv(65536)
            except OSError:
                pass
            ok = b'{"response":"success","info":"processed: 1; failed: 0; total: 1; ' \
                 b'seconds spent: 0.000100"}'
            if self.mode == "http":
                c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                          b"Content-Length: 11\r\nConnection: close\r\n\r\nBad Request")
            elif self.mode == "reset":  # half a reply, then RST
                c.sendall(_frame(ok)[:25])
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif self.mode == "close-mid-reply":  # half a reply, then FIN
                c.sendall(_frame(ok)[:25])
            elif self.mode == "close":  # no reply at all
                pass
            elif self.mode == "not-json":
                c.sendall(_frame(b"<html>not json</html>"))
            elif self.mode == "failed":  # what Zabbix answers to a request it cannot parse
                c.sendall(_frame(b'{"response":"failed","info":"cannot parse request"}'))
            elif self.mode == "huge-length":  # a header announcing 2 GiB, then nothing
                c.sendall(b"ZBXD\x01" + struct.pack("<II", 0x7FFFFFFF, 0) + b"{")
                time.sleep(3)
            elif self.mode == "silent":  # accepts, reads, never answers
                self.held.append(c)
                return
            c.close()
        except OSError:
            pass

    def close(self):
        self.closing = True
        self.sock.close()
        for c in self.held:
            c.close()


def test_misbehaving_peers(ctx):
    value = f"{HOSTNAME} cli.u 1\n"
    for mode in ("http", "reset", "close-mid-reply", "close", "not-json", "failed",
                 "huge-length", "silent"):
        peer = Peer(mode)
        try:
            results = {}
            for who, cmd in (("trapline", None), ("zabbix_sender", ZABBIX_SENDER)):
                args = ["-z", HOST, "-p", peer.port, "-t", "2", "-i", "-"]
                t0 = time.monotonic()
                r = (trapline("send", *args, input=value, timeout=30) if cmd is None
                     else zabbix_sender(*args, input=value, timeout=30))
                results[who] = (r, time.monotonic() - t0)
            cp, took = results["trapline"]
            zs, _ = results["zabbix_sender"]
            check(cp.returncode == 1, f"{mode}: trapline should exit 1: {describe(cp)}")
            check("Sending failed." in cp.stdout, f"{mode}: no 'Sending failed.': {describe(cp)}")
            check("Response from" not in cp.stdout and summary_of(cp.stdout) is None,
                  f"{mode}: a reply or summary was printed: {describe(cp)}")
            reason = [ln for ln in cp.stderr.splitlines() if ln.startswith("trapline send:")]
            check(reason, f"{mode}: no reason on stderr: {describe(cp)}")
            check(took < 10, f"{mode}: took {took:.1f}s")
            check(zs.returncode == cp.returncode,
                  f"{mode}: zabbix_sender exits {zs.returncode}, trapline {cp.returncode}")
            say(f"{mode}: exit 1 in {took:.1f}s ({peer.connections} connections): "
                f"{reason[-1]}")
        finally:
            peer.close()


def test_zabbix_down(ctx):
    z = ctx.z
    inp = ctx.write("down.txt", f"{HOSTNAME} cli.u 5\n{HOSTNAME} cli.b 5.5\n")
    z.stop_server()
    try:
        for args in (["-i", inp], ["-s", HOSTNAME, "-k", "cli.u", "-o", "6"]):
            t0 = time.monotonic()
            cp = trapline("send", "-z", HOST, "-p", ctx.port, *args, timeout=30)
            took = time.monotonic() - t0
            zs = zabbix_sender("-z", HOST, "-p", ctx.port, *args, timeout=30)
            check(cp.returncode == 1 and "Sending failed." in cp.stdout,
                  f"{args}: expected 'Sending failed.' and exit 1: {describe(cp)}")
            check(summary_of(cp.stdout) is None, f"{args}: summary printed: {cp.stdout}")
            check(zs.returncode == 1 and "Sending failed." in zs.stdout,
                  f"{args}: zabbix_sender: {describe(zs)}")
            check(took < 10, f"{args}: took {took:.1f}s")
            say(f"{' '.join(args)}: exit 1 in {took:.1f}s, "
                f"{[ln for ln in cp.stdout.splitlines() if ln]} (zabbix_sender: exit 1, same)")
    finally:
        z.start_server()
    cp = trapline("send", "-z", HOST, "-p", ctx.port, "-i", inp)
    check(cp.returncode == 0, f"after the restart: {describe(cp)}")


if __name__ == "__main__":
    sys.exit(run_checks([test_malformed_lines, test_unknown_key, test_like_zabbix_sender,
                         test_config_file, test_misbehaving_peers, test_zabbix_down],
                        setup, teardown))
