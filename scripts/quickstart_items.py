#!/usr/bin/env python3
"""Creates (or completes) the quick start's Zabbix hosts and trapper items from what
`trapline probe` finds on each target, so the collector's values have somewhere to go.
Idempotent. A stand-in until zabbix-sync (a later issue) does this properly, with graphs,
triggers and dashboards.

    quickstart_items.py HOST URI [probe options...]

Uses ZBX_API_URL, ZBX_API_USER, ZBX_API_PASSWORD and TRAPLINE_BUILD_DIR from the environment.
"""

import json
import os
import subprocess
import sys
import urllib.request


def api(method, params, token=None):
    body = {"jsonrpc": "2.0", "method": method, "params": params, "id": 1}
    if token:
        body["auth"] = token
    req = urllib.request.Request(os.environ["ZBX_API_URL"], json.dumps(body).encode(),
                                 {"Content-Type": "application/json-rpc"})
    reply = json.loads(urllib.request.urlopen(req, timeout=60).read())
    if "error" in reply:
        raise SystemExit(f"quickstart: Zabbix API {method}: {reply['error']}")
    return reply["result"]


def probe(uri, extra):
    trapline = os.path.join(os.environ["TRAPLINE_BUILD_DIR"], "trapline")
    cp = subprocess.run([trapline, "probe", uri, "--seconds", "2.5", *extra],
                        capture_output=True, text=True, timeout=60)
    if cp.returncode != 0:
        raise SystemExit(f"quickstart: trapline probe {uri} failed: {cp.stderr.strip()}")
    keys = {}
    for line in cp.stdout.splitlines():
        obj = json.loads(line)
        if "key" in obj:
            keys[obj["key"]] = 4 if isinstance(obj["value"], str) else 0  # text or float
    return keys


def main():
    host, uri, extra = sys.argv[1], sys.argv[2], sys.argv[3:]
    keys = probe(uri, extra)
    tok = api("user.login", {"username": os.environ.get("ZBX_API_USER", "Admin"),
                             "password": os.environ.get("ZBX_API_PASSWORD", "zabbix")})
    groups = api("hostgroup.get", {"filter": {"name": ["trapline"]}}, tok)
    gid = groups[0]["groupid"] if groups else api("hostgroup.create", {"name": "trapline"},
                                                  tok)["groupids"][0]
    hosts = api("host.get", {"filter": {"host": [host]}}, tok)
    hostid = hosts[0]["hostid"] if hosts else api(
        "host.create", {"host": host, "groups": [{"groupid": gid}],
                        "tags": [{"tag": "managed-by", "value": "trapline quickstart"}]},
        tok)["hostids"][0]
    have = {i["key_"] for i in api("item.get", {"hostids": hostid, "output": ["key_"]}, tok)}
    new = [{"hostid": hostid, "name": key, "key_": key, "type": 2, "value_type": vt,
            "trapper_hosts": "127.0.0.1"}
           for key, vt in sorted(keys.items()) if key not in have]
    if new:
        api("item.create", new, tok)
    print(f"quickstart: Zabbix host '{host}': {len(keys)} trapper items ({len(new)} new)")


if __name__ == "__main__":
    main()
