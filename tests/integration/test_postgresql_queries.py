#!/usr/bin/python3
"""The postgresql plugin's SQL on a real server: tests/fixtures/postgresql/queries_<major>.sql
(the unit tests check it equals TickQueries() for that major) for the installed PostgreSQL
major (15 on Debian 12) is sent the way the collector sends it, as one query string (psql -c:
one Query message, one implicit transaction), to a primary with a streaming standby and to
the standby, as a superuser, as a pg_monitor role and as a plain role: no statement may fail.
Then each statement's columns must be those of the captured fixtures the unit tests parse.

Run: PYTHONPATH=tests python3 tests/integration/test_postgresql_queries.py  (CTest sets it)
Prints one line per check and a final "N passed, M failed"; exit status 0 only if all passed.
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SOURCE, check, run_checks, say, wait_until  # noqa: E402

from harness import HOST, PostgresServer  # noqa: E402

FIXTURES = os.path.join(SOURCE, "tests", "fixtures", "postgresql")
NAMES = ["instance", "activity", "locks", "bgwriter", "replication", "databases"]


def sql_for(major: int) -> str:
    path = os.path.join(FIXTURES, f"queries_{major}.sql")
    check(os.path.exists(path), f"{path} missing: PostgreSQL {major} has no queries file")
    with open(path) as f:
        return f.read()


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";\n") if s.strip()]


def run_query_string(pg: PostgresServer, sql: str, user: str | None = None,
                     db: str = "postgres") -> str:
    """Sends `sql` as one query string; returns psql's output; fails on any error."""
    argv = pg._psql_argv(db, user) + ["-A", "-F", "\t", "-c", sql]
    cp = subprocess.run(argv, capture_output=True, text=True, env=pg._env(), timeout=60)
    check(cp.returncode == 0 and "ERROR" not in cp.stderr,
          lambda: f"as {user or pg.superuser} on port {pg.port}: exit {cp.returncode}\n"
                  f"{cp.stderr}")
    check("WARNING" not in cp.stderr, lambda: f"server warnings: {cp.stderr}")
    return cp.stdout


def copy_results(pg: PostgresServer, sql: str, user: str | None = None) -> dict[str, list]:
    """Each statement's result as COPY text rows (header first), in one transaction."""
    script = ["BEGIN;"]
    for name, stmt in zip(NAMES, statements(sql)):
        script.append(f"\\echo '#statement {name}'")
        script.append(f"COPY ({stmt}) TO STDOUT (FORMAT text, HEADER true);")
    script.append("COMMIT;")
    argv = pg._psql_argv("postgres", user) + ["-f", "-"]
    cp = subprocess.run(argv, input="\n".join(script) + "\n", capture_output=True, text=True,
                        env=pg._env(), timeout=60)
    check(cp.returncode == 0, lambda: f"COPY script failed: {cp.stderr}")
    out: dict[str, list] = {}
    current = None
    for line in cp.stdout.split("\n"):
        if line.startswith("#statement "):
            current = line[len("#statement "):]
            out[current] = []
        elif current is not None and line:
            out[current].append(line.split("\t"))
    return out


def setup():
    tmp = tempfile.mkdtemp(prefix="trapline-pgq-")
    pg = PostgresServer()
    standby = None
    try:
        pg.start()
        pg.create_db("app")
        pg.create_db("sales db")
        pg.create_role("monitor")
        pg.psql("GRANT pg_monitor TO monitor")
        pg.create_role("plain")
        with open(os.path.join(pg.datadir, "pg_hba.conf"), "a") as f:
            f.write(f"host replication all {HOST}/32 trust\n")
        pg.psql("SELECT pg_reload_conf()")
        backup = os.path.join(tmp, "backup")
        cp = subprocess.run([f"{pg.bindir}/pg_basebackup", "-h", HOST, "-p", str(pg.port),
                             "-U", pg.superuser, "-D", backup, "-R", "-X", "stream",
                             "-c", "fast", "--no-sync"],
                            capture_output=True, text=True, env=pg._env())
        check(cp.returncode == 0, lambda: f"pg_basebackup failed: {cp.stderr}")
        standby = PostgresServer(init_from=backup, settings={"cluster_name": "standby1"})
        standby.start()
        # Streaming, and the standby has reported where it replayed to (replay_lsn is NULL
        # until its first status message; the lag checks below need it).
        wait_until(lambda: pg.psql_value("SELECT count(*) FROM pg_stat_replication WHERE "
                                         "state = 'streaming' AND replay_lsn IS NOT NULL") == "1",
                   60, "a streaming standby that has reported its replay position")
        # A standby that has a standby of its own would run the lag query in recovery too;
        # the plain recovery path is what the standby check covers.
        return {"pg": pg, "standby": standby, "tmp": tmp, "sql": sql_for(pg.major)}
    except BaseException:
        if standby:
            standby.close()
        pg.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def teardown(ctx):
    ctx["standby"].close()
    ctx["pg"].close()
    shutil.rmtree(ctx["tmp"], ignore_errors=True)


def test_query_files(ctx):
    sqls = {v: sql_for(v) for v in range(12, 18)}
    for v in range(13, 17):
        check(sqls[v] == sqls[12], f"queries_{v}.sql differs from queries_12.sql")
    check(sqls[17] != sqls[16], "queries_17.sql should read pg_stat_checkpointer")
    for v, sql in sqls.items():
        check(len(statements(sql)) == len(NAMES), f"queries_{v}.sql: not {len(NAMES)} "
                                                   "statements")
    say(f"installed PostgreSQL major: {ctx['pg'].major}; only its queries file is run")


def test_primary_superuser(ctx):
    run_query_string(ctx["pg"], ctx["sql"])


def test_primary_pg_monitor(ctx):
    run_query_string(ctx["pg"], ctx["sql"], user="monitor")
    res = copy_results(ctx["pg"], ctx["sql"], user="monitor")
    act = dict(zip(res["activity"][0], res["activity"][1]))
    check(act["hidden"] == "0", f"pg_monitor sees every session: {act}")
    rep = res["replication"]
    check(len(rep) == 2, f"one standby row expected: {rep}")
    row = dict(zip(rep[0], rep[1]))
    check(row["application_name"] == "standby1" and row["state"] == "streaming"
          and row["lag_bytes"] != "\\N", f"pg_monitor sees the standby: {row}")


def test_primary_plain_role(ctx):
    run_query_string(ctx["pg"], ctx["sql"], user="plain")
    res = copy_results(ctx["pg"], ctx["sql"], user="plain")
    act = dict(zip(res["activity"][0], res["activity"][1]))
    check(int(act["hidden"]) > 0, f"a plain role has hidden sessions: {act}")
    dbs = dict(zip(res["databases"][0], res["databases"][1]))
    check(dbs["size_bytes"] != "\\N", f"CONNECT to PUBLIC gives sizes: {dbs}")


def test_plain_role_without_connect(ctx):
    pg = ctx["pg"]
    pg.psql('REVOKE CONNECT ON DATABASE "sales db" FROM PUBLIC')
    try:
        run_query_string(pg, ctx["sql"], user="plain")
        res = copy_results(pg, ctx["sql"], user="plain")
        rows = [dict(zip(res["databases"][0], r)) for r in res["databases"][1:]]
        sales = [r for r in rows if r["datname"] == "sales db"]
        check(len(sales) == 1 and sales[0]["size_bytes"] == "\\N",
              f"no CONNECT, no pg_read_all_stats: size NULL instead of an error: {sales}")
        run_query_string(pg, ctx["sql"], user="monitor")  # pg_read_all_stats: allowed
    finally:
        pg.psql('GRANT CONNECT ON DATABASE "sales db" TO PUBLIC')


def test_standby(ctx):
    run_query_string(ctx["standby"], ctx["sql"])
    run_query_string(ctx["standby"], ctx["sql"], user="monitor")
    res = copy_results(ctx["standby"], ctx["sql"])
    inst = dict(zip(res["instance"][0], res["instance"][1]))
    check(inst["in_recovery"] == "1", f"standby in recovery: {inst}")
    check(inst["wal_bytes"] != "\\N", f"standby WAL position: {inst}")
    check(inst["replay_delay_s"] != "\\N", f"standby replay delay: {inst}")


def test_columns_match_fixtures(ctx):
    major = ctx["pg"].major
    case = os.path.join(FIXTURES, f"{major}_primary")
    check(os.path.isdir(case), f"no captured fixtures for PostgreSQL {major} ({case})")
    res = copy_results(ctx["pg"], ctx["sql"])
    for i, name in enumerate(NAMES, 1):
        with open(os.path.join(case, f"{i}_{name}.tsv")) as f:
            header = f.readline().rstrip("\n").split("\t")
        check(res[name][0] == header, f"{name}: columns {res[name][0]} but the fixture has "
                                      f"{header} (re-run capture.py)")
    dbs = sorted(r[0] for r in res["databases"][1:])
    check(dbs == ["app", "postgres", "sales db"], f"databases (templates excluded): {dbs}")


if __name__ == "__main__":
    sys.exit(run_checks([test_query_files, test_primary_superuser, test_primary_pg_monitor,
                         test_primary_plain_role, test_plain_role_without_connect,
                         test_standby, test_columns_match_fixtures],
                        setup=setup, teardown=teardown))
