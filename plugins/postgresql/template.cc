// The Zabbix template of the postgresql plugin: macros, triggers and graphs
// (plugins/template.h). The triggers and macros are documented in README.md ("Zabbix
// template"); keep both in step.
//
// Values arrive as value sets (every interval_s, 60 s, the per-second samples of the interval):
// min(x,5m) means "above the threshold the whole 5 minutes", max(x,5m) "at least once".

#include "plugins/postgresql/postgresql.h"

#include <string>
#include <utility>
#include <vector>

namespace trapline::plugins::postgresql {
namespace {

constexpr const char* kConnHigh =
    "Connections are nearly exhausted (over {$TRAPLINE.POSTGRESQL.CONN.PUSED.HIGH}% of "
    "max_connections)";
constexpr const char* kXidHigh =
    "Transaction ID wraparound is near (oldest XID age over "
    "{$TRAPLINE.POSTGRESQL.XID.AGE.HIGH})";

ZabbixTemplate Build() {
  ZabbixTemplate t;
  t.macros = {
      Macro("{$TRAPLINE.POSTGRESQL.NODATA.PERIOD}", "5m",
            "No value from trapline for this long raises \"No data from trapline\"."),
      Macro("{$TRAPLINE.POSTGRESQL.CONN.PUSED.WARN}", "80",
            "Client connections, % of max_connections, for 5m, above which to warn."),
      Macro("{$TRAPLINE.POSTGRESQL.CONN.PUSED.HIGH}", "95",
            "Client connections, % of max_connections (superuser_reserved_connections are "
            "what is left)."),
      Macro("{$TRAPLINE.POSTGRESQL.LOCK.WAITING.WARN}", "5",
            "Sessions waiting for a lock the whole 5m, above which to warn."),
      Macro("{$TRAPLINE.POSTGRESQL.XACT.AGE.WARN}", "1h",
            "Age of the oldest open transaction (idle in transaction included)."),
      Macro("{$TRAPLINE.POSTGRESQL.XID.AGE.WARN}", "500000000",
            "Age of the oldest datfrozenxid (autovacuum_freeze_max_age is 200M by default)."),
      Macro("{$TRAPLINE.POSTGRESQL.XID.AGE.HIGH}", "1000000000",
            "Age of the oldest datfrozenxid; wraparound is at 2^31 (about 2.1 billion)."),
      Macro("{$TRAPLINE.POSTGRESQL.REPLAY.DELAY.WARN}", "5m",
            "On a standby: time since the last replayed transaction while WAL waits to be "
            "replayed."),
      Macro("{$TRAPLINE.POSTGRESQL.STANDBYS.MIN}", "0",
            "Standbys that must be connected to this server (0: no check); set it per host."),
      Macro("{$TRAPLINE.POSTGRESQL.STANDBY.LAG.WARN}", "5m",
            "Replay lag of a standby; context: the standby's name."),
      Macro("{$TRAPLINE.POSTGRESQL.STANDBY.LAG.BYTES.WARN}", "1G",
            "WAL not yet replayed by a standby; context: the standby's name."),
      Macro("{$TRAPLINE.POSTGRESQL.CHECKPOINTS.REQ.PCT.WARN}", "50",
            "Share (%) of checkpoints that were requested (WAL full) rather than timed, over "
            "1h."),
      Macro("{$TRAPLINE.POSTGRESQL.DEADLOCKS.MAX}", "0",
            "Deadlocks per second tolerated (maximum over 5m); context: the database."),
      Macro("{$TRAPLINE.POSTGRESQL.CACHE.HIT.MIN}", "90",
            "Buffer cache hit ratio (%) below which to warn; context: the database."),
  };

  const std::string kHost;
  t.triggers = {
      Trigger(kHost, Severity::kAverage,
              "No data from trapline for {$TRAPLINE.POSTGRESQL.NODATA.PERIOD}",
              "nodata({{uptime}},{$TRAPLINE.POSTGRESQL.NODATA.PERIOD})=1",
              "trapline sent no uptime for this server (always reported): PostgreSQL is down "
              "or refuses trapline's connection, or trapline itself is down (see trapline's "
              "status). Other triggers of the server cannot fire meanwhile."),
      Trigger(kHost, Severity::kWarning, "PostgreSQL has been restarted (uptime under 10m)",
              "last({{uptime}})<10m", "The postmaster started less than 10 minutes ago."),
      Trigger(kHost, Severity::kWarning, "PostgreSQL was promoted or became a standby",
              "last({{recovery}},#1)<>last({{recovery}},#2)",
              "pg_is_in_recovery() changed: a failover or a switchover happened. Resolves on "
              "the next value; the event stays in the history."),
      Trigger(kHost, Severity::kHigh, kConnHigh,
              "min({{connections.used_pct}},5m)>{$TRAPLINE.POSTGRESQL.CONN.PUSED.HIGH}",
              "Client backends are close to max_connections: new connections will be refused "
              "(FATAL: sorry, too many clients already). Look for connection leaks, idle "
              "sessions and the pooler.",
              "max({{connections.used_pct}},5m)<{$TRAPLINE.POSTGRESQL.CONN.PUSED.HIGH}"),
      Trigger(kHost, Severity::kWarning,
              "Many connections (over {$TRAPLINE.POSTGRESQL.CONN.PUSED.WARN}% of max_connections "
              "for 5m)",
              "min({{connections.used_pct}},5m)>{$TRAPLINE.POSTGRESQL.CONN.PUSED.WARN}",
              "Client backends stayed above the warning share of max_connections for 5 minutes.",
              "max({{connections.used_pct}},5m)<{$TRAPLINE.POSTGRESQL.CONN.PUSED.WARN}",
              {kConnHigh}),
      Trigger(kHost, Severity::kWarning,
              "Sessions are waiting for locks (over {$TRAPLINE.POSTGRESQL.LOCK.WAITING.WARN} for "
              "5m)",
              "min({{connections.waiting}},5m)>{$TRAPLINE.POSTGRESQL.LOCK.WAITING.WARN}",
              "More sessions than the threshold waited for a heavyweight lock during all of the "
              "last 5 minutes: a blocking chain. pg_blocking_pids() in pg_stat_activity names "
              "the blockers.",
              "max({{connections.waiting}},5m)<={$TRAPLINE.POSTGRESQL.LOCK.WAITING.WARN}"),
      Trigger(kHost, Severity::kWarning,
              "Long-running transaction (open over {$TRAPLINE.POSTGRESQL.XACT.AGE.WARN})",
              "last({{transactions.max_age}})>{$TRAPLINE.POSTGRESQL.XACT.AGE.WARN}",
              "A transaction (perhaps idle in transaction) has been open longer than the "
              "threshold: it holds back vacuum (table bloat, XID age) and may hold locks."),
      Trigger(kHost, Severity::kHigh, kXidHigh,
              "last({{xid.oldest_age}})>{$TRAPLINE.POSTGRESQL.XID.AGE.HIGH}",
              "The oldest datfrozenxid is close to the 2^31 wraparound limit: PostgreSQL will "
              "stop accepting writes. Find what blocks freezing (long transactions, prepared "
              "transactions, replication slots, failing autovacuum) and VACUUM (FREEZE)."),
      Trigger(kHost, Severity::kWarning,
              "Transaction ID age is high (oldest XID age over {$TRAPLINE.POSTGRESQL.XID.AGE.WARN})",
              "last({{xid.oldest_age}})>{$TRAPLINE.POSTGRESQL.XID.AGE.WARN}",
              "Anti-wraparound autovacuum is not keeping up (it starts at "
              "autovacuum_freeze_max_age, 200M by default).",
              "", {kXidHigh}),
      Trigger(kHost, Severity::kAverage, "WAL archiving is failing",
              "max({{archiver.failed}},5m)>0",
              "archive_command failed within the last 5 minutes (pg_stat_archiver). WAL piles "
              "up in pg_wal until it succeeds, and point-in-time recovery is at risk.",
              "max({{archiver.failed}},15m)=0"),
      Trigger(kHost, Severity::kWarning,
              "Standby replay is behind (over {$TRAPLINE.POSTGRESQL.REPLAY.DELAY.WARN} for 5m)",
              "min({{replication.replay_delay}},5m)>{$TRAPLINE.POSTGRESQL.REPLAY.DELAY.WARN}",
              "On this standby the last replayed transaction is older than the threshold while "
              "received WAL waits to be replayed (replay conflicts, a slow disk, or "
              "max_standby_streaming_delay)."),
      Trigger(kHost, Severity::kAverage,
              "Fewer standbys than expected (under {$TRAPLINE.POSTGRESQL.STANDBYS.MIN})",
              "max({{replication.standbys}},3m)<{$TRAPLINE.POSTGRESQL.STANDBYS.MIN}",
              "Fewer WAL senders to standbys than the macro says for 3 minutes: a standby is "
              "disconnected. Off until the macro is set (per host)."),
      Trigger(kHost, Severity::kWarning,
              "Checkpoints are mostly requested (over "
              "{$TRAPLINE.POSTGRESQL.CHECKPOINTS.REQ.PCT.WARN}% in 1h)",
              "avg({{checkpoints.requested}},1h)*100>{$TRAPLINE.POSTGRESQL.CHECKPOINTS.REQ.PCT.WARN}*"
              "(avg({{checkpoints.requested}},1h)+avg({{checkpoints.timed}},1h)) and "
              "avg({{checkpoints.requested}},1h)>0",
              "Checkpoints start because max_wal_size fills up, not on checkpoint_timeout: "
              "more I/O and more full-page writes than needed. Consider raising max_wal_size."),

      // Standbys (as this primary sees them).
      Trigger("standby", Severity::kWarning,
              R"(Standby {#ENTITY}: replay lag is high (over {$TRAPLINE.POSTGRESQL.STANDBY.LAG.WARN:"{#ENTITY}"} for 5m))",
              R"(min({{standby.lag_seconds}},5m)>{$TRAPLINE.POSTGRESQL.STANDBY.LAG.WARN:"{#ENTITY}"})",
              "The standby replays WAL later than the threshold (replay_lag): reads there are "
              "stale and a failover would lose or wait for that much.",
              R"(max({{standby.lag_seconds}},5m)<{$TRAPLINE.POSTGRESQL.STANDBY.LAG.WARN:"{#ENTITY}"})"),
      Trigger("standby", Severity::kWarning,
              R"(Standby {#ENTITY}: WAL backlog is high (over {$TRAPLINE.POSTGRESQL.STANDBY.LAG.BYTES.WARN:"{#ENTITY}"} for 5m))",
              R"(min({{standby.lag_bytes}},5m)>{$TRAPLINE.POSTGRESQL.STANDBY.LAG.BYTES.WARN:"{#ENTITY}"})",
              "More WAL than the threshold is not yet replayed by the standby (network, disk "
              "or replay conflicts).",
              R"(max({{standby.lag_bytes}},5m)<{$TRAPLINE.POSTGRESQL.STANDBY.LAG.BYTES.WARN:"{#ENTITY}"})"),
      Trigger("standby", Severity::kWarning, "Standby {#ENTITY}: not streaming for 5m",
              "max({{standby.streaming}},5m)=0",
              "The WAL sender is connected but not in state streaming (startup, catchup or "
              "backup) for 5 minutes."),

      // Databases.
      Trigger("database", Severity::kAverage, "Database {#ENTITY}: deadlocks occurred",
              R"(max({{db.deadlocks}},5m)>{$TRAPLINE.POSTGRESQL.DEADLOCKS.MAX:"{#ENTITY}"})",
              "Transactions were aborted to break deadlocks within the last 5 minutes. The "
              "server log has both queries (log_lock_waits helps)."),
      Trigger("database", Severity::kWarning,
              R"(Database {#ENTITY}: cache hit ratio is low (under {$TRAPLINE.POSTGRESQL.CACHE.HIT.MIN:"{#ENTITY}"}%))",
              R"(max({{db.cache_hit_ratio}},15m)<{$TRAPLINE.POSTGRESQL.CACHE.HIT.MIN:"{#ENTITY}"})",
              "Blocks found in shared buffers, % of blocks read, since the statistics reset, "
              "stayed below the threshold for 15 minutes: shared_buffers may be too small for "
              "the working set, or queries scan big tables."),
      Trigger("database", Severity::kInformation,
              "Database {#ENTITY}: queries cancelled by recovery conflicts",
              "max({{db.conflicts}},5m)>0",
              "On this standby, replay cancelled queries within the last 5 minutes (see "
              "pg_stat_database_conflicts; hot_standby_feedback, max_standby_streaming_delay)."),
  };

  t.graphs = {
      Graph(kHost, "Connections by state",
            {"connections.active", "connections.idle", "connections.idle_in_transaction",
             "connections.idle_in_transaction_aborted", "connections.fastpath",
             "connections.disabled"},
            true),
      Graph(kHost, "Connections and max_connections", {"connections.total", "connections.max"}),
      Graph(kHost, "Connections, % of max_connections", {"connections.used_pct"}),
      Graph(kHost, "Oldest transaction and query", {"transactions.max_age", "queries.max_age"}),
      Graph(kHost, "Locks by mode",
            {"locks.access_share", "locks.row_share", "locks.row_exclusive",
             "locks.share_update_exclusive", "locks.share", "locks.share_row_exclusive",
             "locks.exclusive", "locks.access_exclusive", "locks.si_read"},
            true),
      Graph(kHost, "Lock waits", {"locks.not_granted", "connections.waiting"}),
      Graph(kHost, "Checkpoints", {"checkpoints.timed", "checkpoints.requested"}),
      Graph(kHost, "Checkpoint write and sync time",
            {"checkpoints.write_time", "checkpoints.sync_time"}, true),
      Graph(kHost, "Buffers written",
            {"buffers.checkpoint", "buffers.clean", "buffers.backend"}, true),
      Graph(kHost, "Buffers allocated and background writer stops",
            {"buffers.alloc", "bgwriter.maxwritten_clean"}),
      Graph(kHost, "WAL written", {"wal.bytes"}),
      Graph(kHost, "WAL archiving", {"archiver.archived", "archiver.failed"}),
      Graph(kHost, "Standbys connected", {"replication.standbys"}),
      Graph(kHost, "Standby replay delay", {"replication.replay_delay"}),
      Graph(kHost, "Oldest transaction ID age", {"xid.oldest_age"}),

      Graph("database", "Database {#ENTITY}: size", {"db.size"}),
      Graph("database", "Database {#ENTITY}: backends", {"db.backends"}),
      Graph("database", "Database {#ENTITY}: commits and rollbacks",
            {"db.commits", "db.rollbacks"}),
      Graph("database", "Database {#ENTITY}: tuples",
            {"db.tuples_returned", "db.tuples_fetched", "db.tuples_inserted",
             "db.tuples_updated", "db.tuples_deleted"}),
      Graph("database", "Database {#ENTITY}: blocks hit and read",
            {"db.blocks_hit", "db.blocks_read"}, true),
      Graph("database", "Database {#ENTITY}: cache hit ratio", {"db.cache_hit_ratio"}),
      Graph("database", "Database {#ENTITY}: temporary file bytes", {"db.temp_bytes"}),
      Graph("database", "Database {#ENTITY}: deadlocks, conflicts and temporary files",
            {"db.deadlocks", "db.conflicts", "db.temp_files"}),
      Graph("database", "Database {#ENTITY}: transaction ID age", {"db.xid_age"}),

      Graph("standby", "Standby {#ENTITY}: lag", {"standby.lag_bytes"}),
      Graph("standby", "Standby {#ENTITY}: replay lag", {"standby.lag_seconds"}),

      Summary("database", "Size of every database", "db.size"),
      Summary("database", "Backends of every database", "db.backends"),
      Summary("database", "Commits of every database", "db.commits"),
      Summary("standby", "Lag of every standby", "standby.lag_bytes"),
  };
  return t;
}

}  // namespace

const ZabbixTemplate& Template() {
  static const ZabbixTemplate kTemplate = Build();
  return kTemplate;
}

}  // namespace trapline::plugins::postgresql
