#!/usr/bin/env python3
"""The collector end to end with a real Redis and a real Zabbix 6.0:

- dry run: values in zabbix_sender format match what Redis itself reports (DBSIZE);
- into Zabbix: value sets of a Redis metric land in history for the configured host;
- Redis restarted: the collector reconnects within its backoff and values resume;
- a wrong password and a misspelt config key: a clear error, no crash, other targets go on.
"""

import os
import re
import time

from common import (BackgroundProc, check, make_tmp, run_checks, say, trapline, trapline_bin,
                    wait_until)
from harness import RedisServer, ZabbixStack

PASSWORD = "s3cret-pw"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def setup():
    redis = RedisServer(password=PASSWORD)
    redis.start()
    zbx = ZabbixStack()
    zbx.start()
    return {"redis": redis, "zbx": zbx, "tmp": make_tmp("collector-redis")}


def teardown(ctx):
    ctx["zbx"].close()
    ctx["redis"].close()


def config(ctx, name, extra_targets="", sender=True, password=PASSWORD, interval=2):
    zbx = ctx["zbx"]
    pw = write(os.path.join(ctx["tmp"], f"{name}.pw"), password + "\n")
    text = f"""
[collector]
name = "{name}"
stats_interval = 2

[sender]
server = "127.0.0.1"
port = {zbx.server_port if sender else 1}
flush_interval = 0.5

[[target]]
host = "{name}-redis"
uri = "redis://127.0.0.1:{ctx['redis'].port}"
password_file = "{pw}"
interval = {interval}
reconnect_base = 0.5
reconnect_max = 2
{extra_targets}
"""
    return write(os.path.join(ctx["tmp"], f"{name}.toml"), text)


def parse_sender_lines(text):
    out = []
    for line in text.splitlines():
        parts = line.split(" ")
        if len(parts) == 5:
            out.append((parts[0], parts[1], int(parts[2]), int(parts[3]), parts[4]))
    return out


def check_dry_run_matches_redis(ctx):
    r = ctx["redis"]
    for i in range(17):
        r.command("SET", f"key{i}", "v", password=PASSWORD)
    dbsize = int(r.command("DBSIZE", password=PASSWORD))
    proc = BackgroundProc([trapline_bin(), "collector", "--config", config(ctx, "dry"), "--dry-run"],
                          ctx["tmp"], "dry")
    try:
        lines = wait_until(lambda: [l for l in parse_sender_lines(proc.stdout())
                                    if l[1] == "redis.db.keys[db0]"], 20,
                           "redis.db.keys[db0] in the dry-run output")
    finally:
        proc.popen.terminate()
        proc.wait(20)
    say(f"DBSIZE {dbsize}; collector sent {lines[0]}")
    check(all(l[0] == "dry-redis" for l in lines), "every line names the configured host")
    check(float(lines[0][4]) == dbsize, f"redis.db.keys[db0] = {lines[0][4]}, DBSIZE = {dbsize}")


def check_values_reach_zabbix_and_resume_after_restart(ctx):
    zbx, r = ctx["zbx"], ctx["redis"]
    host = "live-redis"
    ids = zbx.create_trapper_host(host, [("redis.clients.connected", 0), ("redis.db.keys[db0]", 0)])
    proc = BackgroundProc([trapline_bin(), "collector", "--config", config(ctx, "live")], ctx["tmp"],
                          "live")
    try:
        rows = zbx.wait_for_history(ids["redis.db.keys[db0]"], count=1, timeout=30)
        say(f"history of redis.db.keys[db0]: {rows[:3]}")
        check(all(v >= 17 for _, _, v in rows), f"keys stored: {rows}")
        # Redis restarted on the same port: the collector reconnects and values resume.
        r.stop()
        time.sleep(2)
        restart_at = int(time.time())
        r.start()
        wait_until(lambda: zbx.history(ids["redis.clients.connected"], since=restart_at + 1), 30,
                   "values after the Redis restart")
        err = proc.stderr()
        check(re.search(r"connection lost|connect:", err), "the outage is logged:\n" + err[-2000:])
        check(re.search(r"connected again", err), "the recovery is logged:\n" + err[-2000:])
        check(proc.alive(), "the collector keeps running")
    finally:
        proc.popen.terminate()
        rc = proc.wait(30)
    check(rc == 0, f"collector exits 0 on SIGTERM, got {rc}\n{proc.output()}")


def check_wrong_password_does_not_stop_other_targets(ctx):
    good = f"""
[[target]]
host = "other-redis"
uri = "redis://127.0.0.1:{ctx['redis'].port}"
password = "{PASSWORD}"
interval = 1
"""
    cfg = config(ctx, "badpw", extra_targets=good, password="not-the-password", interval=1)
    proc = BackgroundProc([trapline_bin(), "collector", "--config", cfg, "--dry-run"], ctx["tmp"],
                          "badpw")
    try:
        wait_until(lambda: "other-redis" in proc.stdout(), 20, "values of the good target")
        wait_until(lambda: "authentication failed" in proc.stderr(), 20, "the auth error logged")
        check(proc.alive(), "the collector keeps running")
        check("badpw-redis" not in proc.stdout(), "no values from the target that cannot log in")
    finally:
        proc.popen.terminate()
        proc.wait(20)


def check_bad_config_key_is_named(ctx):
    cfg = write(os.path.join(ctx["tmp"], "typo.toml"), f"""
[sender]
server = "127.0.0.1"

[[target]]
host = "x"
uri = "redis://127.0.0.1:{ctx['redis'].port}"
perod = 1
""")
    cp = trapline("collector", "--config", cfg, timeout=20)
    say(cp.stderr.strip())
    check(cp.returncode != 0, "a misspelt key fails start-up")
    check("typo.toml:8: 'target[0].perod' is not a known key" in cp.stderr, cp.stderr)
    check(len(cp.stderr.strip().splitlines()) == 1, "one-line reason")


def check_sample_config_is_valid(ctx):
    sample = os.path.join(os.environ.get("TRAPLINE_SOURCE", "."), "deploy", "collector.toml")
    cp = trapline("collector", "--config", sample, "--check-config", timeout=20)
    check(cp.returncode == 0, describe_cp(cp))
    check("OK, 3 targets" in cp.stdout, cp.stdout)


def describe_cp(cp):
    return f"exit {cp.returncode}\nstdout: {cp.stdout[-1000:]}\nstderr: {cp.stderr[-1000:]}"


def check_probe_redis(ctx):
    ctx["redis"].command("SET", "probe-key", "v", password=PASSWORD)
    cp = trapline("probe", f"redis://:{PASSWORD}@127.0.0.1:{ctx['redis'].port}", "--seconds", "2.5",
                  timeout=20)
    check(cp.returncode == 0, cp.stderr)
    check('{"entity":"keyspace","name":"db0"}' in cp.stdout, cp.stdout[:500])
    check('"key":"redis.memory.used"' in cp.stdout, cp.stdout[:500])
    bad = trapline("probe", f"redis://:nope@127.0.0.1:{ctx['redis'].port}", "--seconds", "2",
                   timeout=20)
    check(bad.returncode == 1 and "authentication failed" in bad.stderr, bad.stderr)


if __name__ == "__main__":
    raise SystemExit(run_checks([check_dry_run_matches_redis,
                                 check_values_reach_zabbix_and_resume_after_restart,
                                 check_wrong_password_does_not_stop_other_targets,
                                 check_bad_config_key_is_named,
                                 check_sample_config_is_valid,
                                 check_probe_redis], setup=setup, teardown=teardown))
