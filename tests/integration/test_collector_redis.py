#!/usr/bin/env python3
"""The collector end to end with a real Redis and a real Zabbix 6.0:

- dry run: values in zabbix_sender format match what Redis itself reports (DBSIZE);
- into Zabbix: value sets of a Redis metric land in history for the configured host;
- Redis restarted: the collector reconnects within its backoff and values resume;
- a wrong password and a misspelt config key: a clear error, no crash, other targets go on.
- /metrics (metrics_listen): real figures for the targets, the loop and the sender.
- self_host: the collector's own health in Zabbix (plugin trapline), on a host that
  `trapline sync --plugin trapline` builds: items, triggers, dashboard, then real values.
"""

import json
import os
import re
import time

from common import (BackgroundProc, check, describe, make_tmp, run_checks, say, trapline,
                    trapline_bin, wait_until)
from harness import RedisServer, ZabbixStack, free_port

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


def scrape(port, path="/metrics"):
    """(status, content type, body) of a GET on the collector's metrics server."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read().decode()
    except OSError:
        return None, None, ""


def metric_values(text):
    """{'name{labels}': value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def check_metrics_endpoint(ctx):
    port = free_port()
    dead = free_port()  # nothing listens there: the second target keeps reconnecting
    down = f"""
[[target]]
host = "metrics-down"
uri = "redis://127.0.0.1:{dead}"
reconnect_base = 0.2
reconnect_max = 0.5
"""
    cfg = config(ctx, "metrics", extra_targets=down, interval=1)
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("[collector]\n", f'[collector]\nmetrics_listen = "127.0.0.1:{port}"\n', 1))
    proc = BackgroundProc([trapline_bin(), "collector", "--config", cfg], ctx["tmp"], "metrics")
    try:
        def ready():
            status, _, body = scrape(port)
            if status != 200:
                return None
            values = metric_values(body)
            retries = [v for k, v in values.items() if k.startswith(
                'trapline_collector_target_retries{target="metrics-down/redis"')]
            if (values.get("trapline_sender_requests_total", 0) >= 1 and retries and
                    retries[0] >= 2 and values["trapline_collector_loop_lag_seconds_count"] >= 20):
                return values
            return None
        values = wait_until(ready, 30, "/metrics with a sent request and a reconnecting target")
        status, ctype, body = scrape(port)
        say("\n".join(l for l in body.splitlines() if not l.startswith("#"))[:1500])
        check(status == 200 and ctype.startswith("text/plain; version=0.0.4"), f"{status} {ctype}")
        up = 'target="metrics-redis/redis",'
        down_t = 'target="metrics-down/redis",'
        def one(prefix, label):
            hits = [v for k, v in values.items() if k.startswith(prefix + "{" + label)]
            check(len(hits) == 1, f"one {prefix} for {label}: {hits}")
            return hits[0]
        check(values["trapline_collector_targets"] == 2, "two targets")
        check(values["trapline_collector_targets_connected"] == 1, "one connected")
        check(one("trapline_collector_target_connected", up) == 1, "redis target connected")
        check(one("trapline_collector_target_connected", down_t) == 0, "dead target not connected")
        check(one("trapline_collector_target_retries", down_t) >= 2, "dead target retries counted")
        check(one("trapline_collector_target_ticks_total", up) >= 1, "redis target ticks counted")
        check(values["trapline_collector_loop_lag_seconds_count"] >= 20, "loop lag sampled")
        check(0 <= values['trapline_collector_loop_lag_seconds{quantile="0.99"}'] < 1, "loop lag p99")
        check(values["process_cpu_seconds_total"] > 0, "CPU seconds")
        check(values["trapline_sender_values_queued_total"] >= 1, "values queued to the sender")
        check(values["trapline_sender_zabbix_reachable"] == 1, "Zabbix reachable")
        check('password' not in body and PASSWORD not in body, "no secret in /metrics")
        status, ctype, body = scrape(port, "/nope")
        check(status == 404 and ctype == "application/json" and '"error"' in body,
              f"unknown path: {status} {ctype} {body}")
        check(proc.alive(), "the collector keeps running")
    finally:
        proc.popen.terminate()
        rc = proc.wait(30)
    check(rc == 0, f"collector exits 0 on SIGTERM, got {rc}\n{proc.output()}")
    check(scrape(port)[0] is None, "the metrics port is closed after exit")


def check_self_host(ctx):
    zbx = ctx["zbx"]
    host = "trapline-selfmon"
    cp = trapline("sync", "--plugin", "trapline", "--host", host, "--format", "json",
                  "--zabbix-url", zbx.frontend_url, "--zabbix-user", zbx.user,
                  "--zabbix-password", zbx.password, timeout=120)
    check(cp.returncode == 0, "sync of the collector's own host:\n" + describe(cp))
    report = json.loads(cp.stdout.strip().splitlines()[-1])
    say(f"sync --plugin trapline: {report['counts']}")
    items = {i["key_"]: i["itemid"] for i in zbx.api("item.get", {
        "host": host, "output": ["key_", "itemid"]})}
    triggers = zbx.api("trigger.get", {"host": host, "output": ["description", "expression"]})
    check(len(items) == 13 and "trapline.loop_lag" in items, f"items {sorted(items)}")
    check(len(triggers) == 6 and any("sends nothing" in t["description"] for t in triggers),
          f"triggers {[t['description'] for t in triggers]}")
    check(zbx.api("dashboard.get", {"output": ["name"], "search": {"name": host}}),
          "no dashboard for the collector's host")
    # A collector watching itself: one good target, one that cannot connect.
    dead = free_port()
    down = f"""
[[target]]
host = "selfmon-down"
uri = "redis://127.0.0.1:{dead}"
"""
    cfg = config(ctx, "selfmon", extra_targets=down, interval=1)
    with open(cfg) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text.replace("[collector]\n", f'[collector]\nself_host = "{host}"\n'
                             'self_interval = 2\n', 1))
    proc = BackgroundProc([trapline_bin(), "collector", "--config", cfg], ctx["tmp"], "selfmon")
    try:
        since = int(time.time())
        last = {}
        for key in ("trapline.targets", "trapline.targets.disconnected",
                    "trapline.sender.zabbix_reachable", "trapline.loop_lag", "trapline.cpu.util"):
            rows = zbx.wait_for_history(items[key], count=1, timeout=30, since=since)
            last[key] = rows[-1][2]
        sent = zbx.wait_for_history(items["trapline.sender.sent"], count=2, timeout=30,
                                    since=since)
        say(f"{host} in Zabbix: {last}, sender.sent {[v for _, _, v in sent][-3:]} /s")
        check(last["trapline.targets"] == 2 and last["trapline.targets.disconnected"] == 1,
              f"targets: {last}")
        check(last["trapline.sender.zabbix_reachable"] == 1, f"reachable: {last}")
        check(0 <= last["trapline.loop_lag"] < 1 and 0 <= last["trapline.cpu.util"] < 100, last)
        check(any(v > 0 for _, _, v in sent), f"values sent per second: {sent}")
        # (The redis target's own host is not in this Zabbix: only its values are refused.)
        check(f"host={host} " not in proc.stderr(), "a value of the collector's host refused:\n" +
              "\n".join(line for line in proc.stderr().splitlines() if f"host={host} " in line))
    finally:
        proc.popen.terminate()
        rc = proc.wait(30)
    check(rc == 0, f"collector exits 0 on SIGTERM, got {rc}\n{proc.output()}")
    # It cannot be a target's plugin.
    bad = config(ctx, "selftarget", extra_targets='[[target]]\nhost = "x"\nuri = "redis://127.0.0.1:1"\n'
                 'plugin = "trapline"\n')
    cp = trapline("collector", "--config", bad, "--check-config")
    check(cp.returncode != 0 and "has no target" in cp.stderr and "self_host" in cp.stderr,
          describe(cp))


if __name__ == "__main__":
    raise SystemExit(run_checks([check_dry_run_matches_redis,
                                 check_values_reach_zabbix_and_resume_after_restart,
                                 check_wrong_password_does_not_stop_other_targets,
                                 check_bad_config_key_is_named,
                                 check_sample_config_is_valid,
                                 check_probe_redis,
                                 check_metrics_endpoint,
                                 check_self_host], setup=setup, teardown=teardown))
