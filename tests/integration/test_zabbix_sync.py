"""zabbix-sync (`trapline sync`, `trapline maintenance`) against a real Zabbix 6.0 and a real
sshd, both started by this test on 127.0.0.1.

  check_dry_run_changes_nothing  the plan for a new host lists host, items, graphs, triggers,
                                 dashboard; Zabbix is left untouched
  check_sync_linux_target        `trapline sync ssh://...` builds what the plan said: host with
                                 tags and group, one trapper item per metric and entity, graphs
                                 drawing min/avg/max, triggers with macros, a dashboard whose
                                 widgets point at the graphs
  check_resync_reads_only        nothing changed: read calls only, at most 5 per host
  check_values_flow              `trapline collector` sends to the synced items; MemTotal seen
                                 through history.get equals the host's
  check_grace_for_new_items      a value sent right after a sync of new items is not lost while
                                 the server's configuration cache catches up
  check_vanished_entity          an entity gone from the target: its items disabled, history
                                 kept; back again: enabled
  check_trigger_and_maintenance  an OOM-kill spike fires its trigger; `maintenance on` makes a
                                 maintenance with data collection, the host enters it, values
                                 still flow and the same spike's problem is suppressed; `off`
  check_errors                   wrong password, wrong URL, an API error reply in the middle of a
                                 sync (reported with what was already made), a host that
                                 trapline does not own (refused, untouched)
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    ZABBIX_SENDER, BackgroundProc, check, describe, make_tmp, run, run_checks, say, trapline, trapline_bin,
    wait_until)
from harness import HOST, SshServer, ZabbixStack  # noqa: E402

# New items are accepted only after the server's next configuration sync: a slow one makes the
# sender's grace matter (check_grace_for_new_items).
CACHE_UPDATE_S = 10


def setup():
    ctx = {"tmp": make_tmp("zabbix-sync")}
    ctx["zbx"] = ZabbixStack(server_conf={"CacheUpdateFrequency": CACHE_UPDATE_S})
    ctx["zbx"].start()
    ctx["ssh"] = SshServer()
    ctx["ssh"].start()
    z = ctx["zbx"]
    # Secrets through the environment, as operators are told to pass them.
    os.environ["TRAPLINE_ZABBIX_URL"] = z.frontend_url
    os.environ["TRAPLINE_ZABBIX_USER"] = z.user
    os.environ["TRAPLINE_ZABBIX_PASSWORD"] = z.password
    return ctx


def teardown(ctx):
    ctx["ssh"].close()
    ctx["zbx"].close()


def ssh_args(ctx):
    s = ctx["ssh"]
    return [f"ssh://{s.user}@{HOST}:{s.port}", "--identity", s.key_ed25519,
            "--known-hosts", s.known_hosts]


def sync(*args, expect_ok=True, timeout=120):
    cp = trapline("sync", "--format", "json", *args, timeout=timeout)
    report = None
    if cp.stdout.strip():
        report = json.loads(cp.stdout.strip().splitlines()[-1])
    if expect_ok:
        check(cp.returncode == 0 and report and report["ok"], lambda: "sync failed:\n" + describe(cp))
    return cp, report


def write_entities(ctx, name, entities):
    path = os.path.join(ctx["tmp"], name)
    with open(path, "w") as f:
        for kind, ename in entities:
            f.write(json.dumps({"entity": kind, "name": ename}) + "\n")
    return path


def host_of(z, host):
    hosts = z.api("host.get", {"filter": {"host": [host]}, "selectTags": "extend",
                               "selectGroups": ["name"], "output": ["hostid", "host", "name",
                                                                    "maintenance_status"]})
    return hosts[0] if hosts else None


def items_of(z, hostid):
    return z.api("item.get", {"hostids": [hostid], "output": "extend", "selectTags": "extend"})


def check_dry_run_changes_nothing(ctx):
    z = ctx["zbx"]
    _, plan = sync(*ssh_args(ctx), "--host", "it-linux", "--dry-run")
    counts = plan["counts"]
    say(f"plan: {counts}, {plan['api_calls']} API calls")
    for what in ("create host", "create item", "create graph", "create trigger", "create dashboard"):
        check(counts.get(what, 0) > 0, f"the plan has no '{what}': {counts}")
    check(plan["write_calls"] == 0, f"a dry run made {plan['write_calls']} write calls")
    check(host_of(z, "it-linux") is None, "the dry run created the host")
    ctx["plan"] = plan


def check_sync_linux_target(ctx):
    z = ctx["zbx"]
    _, rep = sync(*ssh_args(ctx), "--host", "it-linux", "--trapper-hosts", "127.0.0.1",
                  "--visible-name", "IT Linux")
    say(f"sync: {rep['counts']}, {rep['api_calls']} API calls ({rep['write_calls']} writes)")
    planned = {k: v for k, v in ctx["plan"]["counts"].items() if k != "create macro"}
    made = {k: v for k, v in rep["counts"].items() if k != "create macro"}
    check(planned == made, f"the sync did other than planned: planned {planned}, made {made}")
    h = host_of(z, "it-linux")
    check(h is not None, "host it-linux not created")
    check(h["name"] == "IT Linux", f"visible name {h['name']!r}")
    tags = {(t["tag"], t["value"]) for t in h["tags"]}
    check({("managed-by", "trapline"), ("trapline-plugin", "linux")} <= tags, f"host tags {tags}")
    check("trapline" in [g["name"] for g in h["groups"]], f"groups {h['groups']}")
    ctx["hostid"] = h["hostid"]

    items = items_of(z, h["hostid"])
    check(len(items) == made["create item"], f"{len(items)} items, {made['create item']} reported")
    keys = {i["key_"]: i for i in items}
    for i in items:
        check(i["type"] == "2" and i["trapper_hosts"] == "127.0.0.1",
              f"item {i['key_']}: type {i['type']}, trapper_hosts {i['trapper_hosts']!r}")
        itags = {t["tag"] for t in i["tags"]}
        check({"component", "trapline-plugin"} <= itags, f"item {i['key_']} tags {itags}")
    check(keys["linux.mem.total"]["units"] == "B", "linux.mem.total units")
    fs_items = [k for k in keys if k.startswith("linux.fs.") and "[/]" in k]
    check(fs_items, f"no filesystem item for / in {sorted(keys)[:20]}...")
    entity_tags = {t["value"] for t in keys[fs_items[0]]["tags"] if t["tag"] == "entity"}
    check(entity_tags == {"/"}, f"{fs_items[0]} entity tag {entity_tags}")

    graphs = z.api("graph.get", {"hostids": [h["hostid"]], "output": "extend",
                                 "selectGraphItems": "extend"})
    check(len(graphs) == made["create graph"], f"{len(graphs)} graphs")
    per_entity = [g for g in graphs if g["name"].startswith("Filesystem /")]
    check(per_entity, f"no per-filesystem graph among {[g['name'] for g in graphs][:10]}")
    calc = {gi["calc_fnc"] for g in per_entity for gi in g["gitems"]}
    check(calc == {"7"}, f"per-entity graphs draw calc_fnc {calc}, expected 7 (min, avg, max)")

    triggers = z.api("trigger.get", {"hostids": [h["hostid"]], "output": "extend",
                                     "selectTags": "extend", "selectDependencies": ["triggerid"]})
    check(len(triggers) == made["create trigger"], f"{len(triggers)} triggers")
    check(any(t["dependencies"] for t in triggers), "no trigger dependencies were set")
    macros = {m["macro"] for m in z.api("usermacro.get", {"globalmacro": True, "output": ["macro"]})}
    check("{$TRAPLINE.LINUX.CPU.UTIL.WARN}" in macros, "threshold macro not created globally")

    dash = z.api("dashboard.get", {"filter": {"name": ["trapline: it-linux / linux"]},
                                   "selectPages": "extend", "output": "extend"})
    check(len(dash) == 1, f"{len(dash)} dashboards")
    graph_ids = {g["graphid"] for g in graphs}
    widgets = [w for p in dash[0]["pages"] for w in p["widgets"]]
    check(widgets, "the dashboard has no widgets")
    for w in widgets:
        ids = [f["value"] for f in w["fields"] if f["name"] == "graphid"]
        check(ids and ids[0] in graph_ids, f"widget {w['name']} points at {ids}")
    say(f"{len(items)} items, {len(graphs)} graphs, {len(triggers)} triggers, "
        f"{len(dash[0]['pages'])} dashboard pages, {len(widgets)} widgets")
    # Keep what the target reported, for check_vanished_entity.
    cp = trapline("probe", *ssh_args(ctx), "--seconds", "3")
    ctx["entities"] = [(o["entity"], o["name"]) for o in map(json.loads, cp.stdout.splitlines())
                       if "entity" in o]


def check_resync_reads_only(ctx):
    _, rep = sync(*ssh_args(ctx), "--host", "it-linux", "--trapper-hosts", "127.0.0.1",
                  "--visible-name", "IT Linux")
    say(f"re-sync: {rep['api_calls']} API calls, {rep['write_calls']} writes, changes {rep['changes'][:5]}")
    check(rep["changes"] == [], f"a re-sync with nothing changed made changes: {rep['changes'][:10]}")
    check(rep["write_calls"] == 0, f"{rep['write_calls']} write calls")
    # Five reads per host, plus one read of the global macros per run.
    check(rep["api_calls"] <= 6, f"{rep['api_calls']} API calls (at most 5 per host + 1 per run)")


def check_values_flow(ctx):
    z, s = ctx["zbx"], ctx["ssh"]
    conf = os.path.join(ctx["tmp"], "collector.toml")
    with open(conf, "w") as f:
        f.write(f"""
[collector]
name = "it-sync"
[sender]
server = "127.0.0.1"
port = {z.server_port}
flush_interval = 0.5
spool_dir = "{ctx['tmp']}/spool"
[[target]]
host = "it-linux"
uri = "ssh://{s.user}@{HOST}:{s.port}"
identity = "{s.key_ed25519}"
known_hosts = "{s.known_hosts}"
interval = 2
""")
    proc = BackgroundProc([trapline_bin(), "collector", "--config", conf], ctx["tmp"], "collector")
    try:
        itemid = keys_to_ids(z, ctx["hostid"])["linux.mem.total"]

        def got():
            h = z.api("history.get", {"itemids": [itemid], "history": 0, "limit": 5,
                                      "sortfield": "clock", "sortorder": "DESC"})
            return h or None
        hist = wait_until(got, 40, "linux.mem.total in history.get")
        with open("/proc/meminfo") as f:
            mem_total = int(f.readline().split()[1]) * 1024
        check(abs(float(hist[0]["value"]) - mem_total) < 1, f"history {hist[0]['value']} != MemTotal {mem_total}")
        say(f"linux.mem.total = {hist[0]['value']} (MemTotal {mem_total}) via history.get")
    finally:
        proc.popen.terminate()
        rc = proc.wait(30)
    check(rc == 0, f"collector exit {rc} on SIGTERM\n{proc.output()}")


def keys_to_ids(z, hostid):
    return {i["key_"]: i["itemid"] for i in z.api("item.get", {"hostids": [hostid],
                                                               "output": ["itemid", "key_"]})}


def check_grace_for_new_items(ctx):
    z = ctx["zbx"]
    ents = write_entities(ctx, "redis-ents.jsonl", [("keyspace", "db0")])
    sync("--plugin", "redis", "--entities-file", ents, "--host", "it-grace")
    now = int(time.time())
    # The official sender right away: the server does not know the items yet (it counts them
    # failed until its next configuration sync, up to CacheUpdateFrequency later).
    cp = run([ZABBIX_SENDER, "-z", HOST, "-p", str(z.server_port), "-s", "it-grace",
              "-k", "redis.db.keys[db0]", "-o", "41"])
    say(f"zabbix_sender right after the sync: {cp.stdout.strip().splitlines()[0] if cp.stdout else cp.returncode}")
    cp = trapline("send", "-z", HOST, "-p", z.server_port, "--grace", "25", "-T", "-i", "-",
                  input=f"it-grace redis.db.keys[db1] {now} 1\nit-grace redis.db.keys[db0] {now} 42\n",
                  timeout=90)
    # db1 was never synced: it stays failed after the grace, and is reported.
    check(cp.returncode == 2, f"expected exit 2 (one value failed):\n{describe(cp)}")
    rows = z.wait_for_history(("it-grace", "redis.db.keys[db0]"), 1, timeout=30)
    check(any(v == 42 for _, _, v in rows), f"value 42 not in history: {rows}")
    say(f"history of redis.db.keys[db0]: {[v for _, _, v in rows]}")


def check_vanished_entity(ctx):
    z = ctx["zbx"]
    ents = ctx["entities"]
    check(("filesystem", "/") in ents, f"probe entities: {ents}")
    keep = [e for e in ents if e != ("filesystem", "/")]
    path = write_entities(ctx, "without-root.jsonl", keep)
    full = write_entities(ctx, "full.jsonl", ents)
    _, rep = sync("--plugin", "linux", "--entities-file", path, "--host", "it-linux",
                  "--trapper-hosts", "127.0.0.1", "--visible-name", "IT Linux")
    disabled = [c["name"] for c in rep["changes"] if c["action"] == "disable"]
    check(disabled and all("[/]" in k for k in disabled), f"disabled {disabled}")
    items = {i["key_"]: i for i in items_of(z, ctx["hostid"])}
    for k in disabled:
        check(items[k]["status"] == "1", f"{k} status {items[k]['status']}")
    say(f"{len(disabled)} items of filesystem / disabled, still present (history kept)")
    _, rep = sync("--plugin", "linux", "--entities-file", full, "--host", "it-linux",
                  "--trapper-hosts", "127.0.0.1", "--visible-name", "IT Linux")
    enabled = [c["name"] for c in rep["changes"] if c["object"] == "item"]
    check(sorted(enabled) == sorted(disabled), f"re-enabled {enabled}")
    items = {i["key_"]: i for i in items_of(z, ctx["hostid"])}
    check(all(items[k]["status"] == "0" for k in disabled), "items not enabled again")


def problems(z, hostid):
    return z.api("problem.get", {"hostids": [hostid], "output": "extend"})


def spike(ctx, host):
    z = ctx["zbx"]
    now = int(time.time())
    # Rates of OOM kills: 0, then a spike of 3 within the interval (as a value set carries it).
    cp = trapline("send", "-z", HOST, "-p", z.server_port, "--grace", "30", "-T", "-i", "-",
                  input=f"{host} linux.vm.oom_kills {now - 2} 0\n{host} linux.vm.oom_kills {now - 1} 3\n"
                        f"{host} linux.vm.oom_kills {now} 0\n", timeout=60)
    check(cp.returncode == 0, describe(cp))


def check_trigger_and_maintenance(ctx):
    z = ctx["zbx"]
    empty = write_entities(ctx, "none.jsonl", [])
    for host in ("it-spike", "it-maint"):
        sync("--plugin", "linux", "--entities-file", empty, "--host", host)
    spike_id = host_of(z, "it-spike")["hostid"]
    maint_id = host_of(z, "it-maint")["hostid"]

    cp = trapline("maintenance", "on", "it-maint", "--until", "+2h")
    check(cp.returncode == 0 and "in maintenance with data collection" in cp.stdout, describe(cp))
    m = z.api("maintenance.get", {"filter": {"name": ["trapline: it-maint"]}, "output": "extend",
                                  "selectHosts": ["host"], "selectTimeperiods": "extend"})
    check(len(m) == 1 and m[0]["maintenance_type"] == "0", f"maintenance {m}")
    check([h["host"] for h in m[0]["hosts"]] == ["it-maint"], f"hosts {m[0]['hosts']}")
    check(abs(int(m[0]["active_till"]) - (time.time() + 7200)) < 120, f"active_till {m[0]['active_till']}")
    # Zabbix's timer applies maintenances once a minute.
    wait_until(lambda: host_of(z, "it-maint")["maintenance_status"] == "1", 90,
               "it-maint in maintenance", interval=2)
    say("it-maint shows maintenance")

    spike(ctx, "it-spike")
    spike(ctx, "it-maint")
    p1 = wait_until(lambda: problems(z, spike_id), 30, "OOM problem on it-spike", interval=0.5)
    check(any("OOM" in p["name"] for p in p1), f"problems {[p['name'] for p in p1]}")
    check(all(p["suppressed"] == "0" for p in p1), f"it-spike problem suppressed: {p1}")
    p2 = wait_until(lambda: problems(z, maint_id), 30, "problem on it-maint", interval=0.5)
    check(all(p["suppressed"] == "1" for p in p2),
          f"it-maint is in maintenance but its problem is not suppressed: {p2}")
    rows = z.history(("it-maint", "linux.vm.oom_kills"))
    check(len(rows) >= 3, f"values during maintenance not stored: {rows}")
    say(f"spike: it-spike problem '{p1[0]['name']}' raised; it-maint's suppressed; "
        f"{len(rows)} values stored during maintenance")

    cp = trapline("maintenance", "status", "it-maint")
    check(cp.returncode == 0 and "until" in cp.stdout, describe(cp))
    cp = trapline("maintenance", "off", "it-maint")
    check(cp.returncode == 0 and "it-maint: not in trapline's maintenance" in cp.stdout, describe(cp))
    check(z.api("maintenance.get", {"filter": {"name": ["trapline: it-maint"]}}) == [], "maintenance left")
    cp = trapline("maintenance", "on", "no-such-host")
    check(cp.returncode == 1 and "does not exist" in cp.stderr, describe(cp))
    cp = trapline("maintenance", "on", "it-maint", "--until", "tomorrow-ish")
    check(cp.returncode == 1 and "--until" in cp.stderr, describe(cp))


def check_errors(ctx):
    z = ctx["zbx"]
    empty = write_entities(ctx, "none2.jsonl", [])
    cp = trapline("sync", "--plugin", "linux", "--entities-file", empty, "--host", "it-bad",
                  "--zabbix-password", "wrong-password-123")
    check(cp.returncode == 1 and "Incorrect user name or password" in cp.stderr, describe(cp))
    check("wrong-password-123" not in cp.stderr + cp.stdout, "the password was printed")
    check(host_of(z, "it-bad") is None, "a host was created with a wrong password")

    cp = trapline("sync", "--plugin", "linux", "--entities-file", empty, "--host", "it-bad",
                  "--zabbix-url", "http://127.0.0.1:1/")
    check(cp.returncode == 1 and "127.0.0.1:1" in cp.stderr, describe(cp))
    check(len(cp.stderr.strip().splitlines()) == 1, f"expected a one-line reason:\n{cp.stderr}")

    # An API error in the middle: the host is made, the items are refused; both reported.
    cp, rep = sync("--plugin", "linux", "--entities-file", empty, "--host", "it-bad",
                   "--history", "forever", expect_ok=False)
    check(cp.returncode == 1 and rep and not rep["ok"], describe(cp))
    check("item.create for host it-bad" in cp.stderr and "history" in cp.stderr, describe(cp))
    check({"action": "create", "object": "host", "name": "it-bad", "detail": "groups trapline"}
          in rep["changes"], f"the host made before the failure is not reported: {rep['changes'][:3]}")
    say(f"reported: {cp.stderr.strip()}")

    # A host trapline does not own.
    gid = z.api("hostgroup.get", {"filter": {"name": ["trapline"]}})[0]["groupid"]
    z.api("host.create", {"host": "it-foreign", "groups": [{"groupid": gid}]})
    cp, rep = sync("--plugin", "linux", "--entities-file", empty, "--host", "it-foreign",
                   expect_ok=False)
    check(cp.returncode == 1 and "not managed by trapline" in cp.stderr, describe(cp))
    hostid = host_of(z, "it-foreign")["hostid"]
    check(items_of(z, hostid) == [], "items were added to a host trapline does not own")


if __name__ == "__main__":
    sys.exit(run_checks([check_dry_run_changes_nothing, check_sync_linux_target,
                         check_resync_reads_only, check_values_flow, check_grace_for_new_items,
                         check_vanished_entity, check_trigger_and_maintenance, check_errors],
                        setup=setup, teardown=teardown))
