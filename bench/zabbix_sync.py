#!/usr/bin/env python3
"""Benchmark: zabbix-sync against a private Zabbix 6.0 (server, frontend under `php -S`,
PostgreSQL) started on 127.0.0.1: the first sync of N hosts with about M items each, then a
re-sync with nothing changed. Prints figures; asserts nothing about speed.

    python3 bench/zabbix_sync.py [--hosts 100] [--items 200]
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from harness import ZabbixStack  # noqa: E402

BENCH = os.path.join(os.environ.get("TRAPLINE_BUILD", os.path.join(HERE, "..", "build")),
                     "bench_zabbix_sync")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=100)
    ap.add_argument("--items", type=int, default=200)
    args = ap.parse_args()
    if not os.access(BENCH, os.X_OK):
        sys.exit(f"zabbix_sync.py: {BENCH} not built (ninja -C build bench_zabbix_sync)")
    with ZabbixStack(php_workers=4) as z:
        env = dict(os.environ, TRAPLINE_ZABBIX_USER=z.user, TRAPLINE_ZABBIX_PASSWORD=z.password)
        subprocess.run([BENCH, "--url", z.frontend_url, "--hosts", str(args.hosts),
                        "--items", str(args.items)], env=env, check=True)
        rows = z.pg.psql("SELECT count(*) FROM items i JOIN hosts h USING (hostid) "
                         "WHERE h.host LIKE 'bench-%'", db="zabbix")
        print(f"items on the bench hosts in Zabbix's database: {rows[0][0]}")


if __name__ == "__main__":
    main()
