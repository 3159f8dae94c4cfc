#include "plugins/postgresql/postgresql.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <forward_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace trapline::plugins::postgresql {
namespace {

// ---------------------------------------------------------------------------------------------
// The SQL. Privileges noted per statement; "any role" means readable without pg_monitor.
// tests/fixtures/postgresql/queries_<major>.sql hold the exact text per major version (a unit
// test compares them; the integration test runs them on a real server).

// instance (any role): recovery state; the WAL position in bytes (the insert position on a
// primary, the received one on a standby: pg_current_wal_lsn() fails during recovery, hence
// the CASE); how far a standby's replay is behind (0 when it has replayed all it received);
// archiver counters; the oldest datfrozenxid age over all databases, templates included
// (wraparound does not spare them); uptime.
constexpr std::string_view kInstanceSql =
    "SELECT pg_is_in_recovery()::int AS in_recovery,\n"
    "  pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery()\n"
    "    THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())\n"
    "    ELSE pg_current_wal_lsn() END, '0/0')::bigint AS wal_bytes,\n"
    "  CASE WHEN NOT pg_is_in_recovery() THEN NULL\n"
    "    WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0\n"
    "    ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())\n"
    "    END::float8 AS replay_delay_s,\n"
    "  a.archived_count::bigint AS archived_count,\n"
    "  a.failed_count::bigint AS failed_count,\n"
    "  (SELECT max(age(datfrozenxid)) FROM pg_database)::bigint AS oldest_xid_age,\n"
    "  extract(epoch FROM now() - pg_postmaster_start_time())::float8 AS uptime_s\n"
    "FROM pg_stat_archiver a;\n";

// activity (pg_monitor: without pg_read_all_stats, the rows of other roles' sessions and of
// background processes have every column NULL, backend_type included, so a plain role counts
// only its own sessions; `hidden` counts those rows so that the parser can say so). Client
// backends only. Ages exclude this session; GREATEST(NULL, 0) is 0 when nothing is open.
constexpr std::string_view kActivitySql =
    "SELECT count(*)::bigint AS total,\n"
    "  count(*) FILTER (WHERE state = 'active')::bigint AS active,\n"
    "  count(*) FILTER (WHERE state = 'idle')::bigint AS idle,\n"
    "  count(*) FILTER (WHERE state = 'idle in transaction')::bigint AS idle_in_transaction,\n"
    "  count(*) FILTER (WHERE state = 'idle in transaction (aborted)')::bigint\n"
    "    AS idle_in_transaction_aborted,\n"
    "  count(*) FILTER (WHERE state = 'fastpath function call')::bigint AS fastpath,\n"
    "  count(*) FILTER (WHERE state = 'disabled')::bigint AS disabled,\n"
    "  count(*) FILTER (WHERE wait_event_type = 'Lock')::bigint AS waiting,\n"
    "  current_setting('max_connections')::bigint AS max_connections,\n"
    "  (SELECT count(*) FROM pg_stat_activity WHERE backend_type IS NULL)::bigint AS hidden,\n"
    "  GREATEST(max(extract(epoch FROM now() - xact_start))\n"
    "    FILTER (WHERE pid <> pg_backend_pid()), 0)::float8 AS max_xact_age_s,\n"
    "  GREATEST(max(extract(epoch FROM now() - query_start))\n"
    "    FILTER (WHERE state = 'active' AND pid <> pg_backend_pid()), 0)::float8\n"
    "    AS max_query_age_s\n"
    "FROM pg_stat_activity WHERE backend_type = 'client backend';\n";

// locks (any role): every lock in pg_locks but this session's own, granted or awaited.
constexpr std::string_view kLocksSql =
    "SELECT count(*)::bigint AS total,\n"
    "  count(*) FILTER (WHERE NOT granted)::bigint AS not_granted,\n"
    "  count(*) FILTER (WHERE mode = 'AccessShareLock')::bigint AS access_share,\n"
    "  count(*) FILTER (WHERE mode = 'RowShareLock')::bigint AS row_share,\n"
    "  count(*) FILTER (WHERE mode = 'RowExclusiveLock')::bigint AS row_exclusive,\n"
    "  count(*) FILTER (WHERE mode = 'ShareUpdateExclusiveLock')::bigint\n"
    "    AS share_update_exclusive,\n"
    "  count(*) FILTER (WHERE mode = 'ShareLock')::bigint AS share,\n"
    "  count(*) FILTER (WHERE mode = 'ShareRowExclusiveLock')::bigint AS share_row_exclusive,\n"
    "  count(*) FILTER (WHERE mode = 'ExclusiveLock')::bigint AS exclusive,\n"
    "  count(*) FILTER (WHERE mode = 'AccessExclusiveLock')::bigint AS access_exclusive,\n"
    "  count(*) FILTER (WHERE mode = 'SIReadLock')::bigint AS si_read\n"
    "FROM pg_locks WHERE pid IS DISTINCT FROM pg_backend_pid();\n";

// bgwriter, 12..16 (any role): pg_stat_bgwriter as is.
constexpr std::string_view kBgwriterSql12 =
    "SELECT checkpoints_timed::bigint AS checkpoints_timed,\n"
    "  checkpoints_req::bigint AS checkpoints_req,\n"
    "  checkpoint_write_time::float8 AS checkpoint_write_time,\n"
    "  checkpoint_sync_time::float8 AS checkpoint_sync_time,\n"
    "  buffers_checkpoint::bigint AS buffers_checkpoint,\n"
    "  buffers_clean::bigint AS buffers_clean,\n"
    "  maxwritten_clean::bigint AS maxwritten_clean,\n"
    "  buffers_backend::bigint AS buffers_backend,\n"
    "  buffers_alloc::bigint AS buffers_alloc\n"
    "FROM pg_stat_bgwriter;\n";

// bgwriter, 17+ (any role): the checkpointer's columns moved to pg_stat_checkpointer under new
// names, and buffers_backend is gone: its nearest equivalent is the relation writes in
// pg_stat_io of every process but the checkpointer and the background writer (the old counter
// also counted relation extensions, pg_stat_io keeps those apart as `extends`). The columns
// keep the 12..16 names, so the parser is the same for all versions.
constexpr std::string_view kBgwriterSql17 =
    "SELECT c.num_timed::bigint AS checkpoints_timed,\n"
    "  c.num_requested::bigint AS checkpoints_req,\n"
    "  c.write_time::float8 AS checkpoint_write_time,\n"
    "  c.sync_time::float8 AS checkpoint_sync_time,\n"
    "  c.buffers_written::bigint AS buffers_checkpoint,\n"
    "  b.buffers_clean::bigint AS buffers_clean,\n"
    "  b.maxwritten_clean::bigint AS maxwritten_clean,\n"
    "  (SELECT COALESCE(sum(writes), 0) FROM pg_stat_io WHERE object = 'relation'\n"
    "    AND backend_type NOT IN ('checkpointer', 'background writer'))::bigint\n"
    "    AS buffers_backend,\n"
    "  b.buffers_alloc::bigint AS buffers_alloc\n"
    "FROM pg_stat_checkpointer c CROSS JOIN pg_stat_bgwriter b;\n";

// replication (any role sees the rows; pg_monitor for their positions, state and lags, which
// are NULL otherwise). Lag in bytes from this server's WAL position (received position when
// this server is itself a standby with cascading standbys). Base backups are left out.
constexpr std::string_view kReplicationSql =
    "SELECT pid::bigint AS pid,\n"
    "  application_name::text AS application_name,\n"
    "  host(client_addr)::text AS client_addr,\n"
    "  state::text AS state,\n"
    "  pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery()\n"
    "    THEN COALESCE(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())\n"
    "    ELSE pg_current_wal_lsn() END, replay_lsn)::bigint AS lag_bytes,\n"
    "  extract(epoch FROM replay_lag)::float8 AS replay_lag_s\n"
    "FROM pg_stat_replication WHERE state IS DISTINCT FROM 'backup' ORDER BY pid;\n";

// databases (any role for the statistics; the size needs CONNECT on the database or
// pg_read_all_stats: without either pg_database_size() raises an error, so it is not called
// and the size is NULL). pg_database_size stats every file of the database: the one costly
// part, as in every PostgreSQL monitor. Last, because a database dropped during the tick can
// still make pg_database_size fail.
#define TRAPLINE_DATABASES_SQL(size_expression)                          \
  "SELECT d.datname::text AS datname,\n" size_expression                 \
  "::bigint AS size_bytes,\n"                                            \
  "  s.numbackends::bigint AS backends,\n"                               \
  "  s.xact_commit::bigint AS xact_commit,\n"                            \
  "  s.xact_rollback::bigint AS xact_rollback,\n"                        \
  "  s.blks_read::bigint AS blks_read,\n"                                \
  "  s.blks_hit::bigint AS blks_hit,\n"                                  \
  "  s.tup_returned::bigint AS tup_returned,\n"                          \
  "  s.tup_fetched::bigint AS tup_fetched,\n"                            \
  "  s.tup_inserted::bigint AS tup_inserted,\n"                          \
  "  s.tup_updated::bigint AS tup_updated,\n"                            \
  "  s.tup_deleted::bigint AS tup_deleted,\n"                            \
  "  s.conflicts::bigint AS conflicts,\n"                                \
  "  s.temp_files::bigint AS temp_files,\n"                              \
  "  s.temp_bytes::bigint AS temp_bytes,\n"                              \
  "  s.deadlocks::bigint AS deadlocks,\n"                                \
  "  age(d.datfrozenxid)::bigint AS xid_age\n"                           \
  "FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid\n" \
  "WHERE NOT d.datistemplate AND d.datallowconn ORDER BY d.datname;\n"
constexpr std::string_view kDatabasesSql = TRAPLINE_DATABASES_SQL(
    "  CASE WHEN has_database_privilege(d.oid, 'CONNECT')\n"
    "    OR pg_has_role('pg_read_all_stats', 'USAGE')\n"
    "    THEN pg_database_size(d.oid) END");
// The same without the sizes (Options::size_interval_s): the same columns, size_bytes NULL.
constexpr std::string_view kDatabasesWithoutSizesSql = TRAPLINE_DATABASES_SQL("  NULL");
#undef TRAPLINE_DATABASES_SQL

// ---------------------------------------------------------------------------------------------
// Metric declarations

MetricSpec DbGauge(std::string name, std::string title, std::string units,
                   std::string description) {
  return GaugeSpec(std::move(name), std::move(title), std::move(units), std::move(description),
                   "database");
}

MetricSpec DbCounter(std::string name, std::string title, std::string units,
                     std::string description) {
  return CounterSpec(std::move(name), std::move(title), std::move(units), std::move(description),
                     "database");
}

std::vector<MetricSpec> BuildMetrics() {
  std::vector<MetricSpec> m = {
      // instance
      GaugeSpec("recovery", "In recovery (standby)", "",
                "1 while the server is a standby (pg_is_in_recovery()), 0 on a primary."),
      CounterSpec("wal.bytes", "WAL written", "Bps",
                  "Rate of the WAL position: pg_current_wal_lsn() on a primary, "
                  "pg_last_wal_receive_lsn() on a standby."),
      GaugeSpec("replication.replay_delay", "Standby replay delay", "s",
                "On a standby: now() - pg_last_xact_replay_timestamp(), 0 when all WAL received "
                "is replayed."),
      CounterSpec("archiver.archived", "WAL files archived per second", "/s",
                  "Rate of pg_stat_archiver.archived_count."),
      CounterSpec("archiver.failed", "WAL archiving failures per second", "/s",
                  "Rate of pg_stat_archiver.failed_count."),
      GaugeSpec("xid.oldest_age", "Oldest transaction ID age", "",
                "max(age(datfrozenxid)) over all databases, templates included: wraparound is at "
                "2^31."),
      GaugeSpec("uptime", "Uptime", "uptime", "now() - pg_postmaster_start_time()."),
      // activity (client backends)
      GaugeSpec("connections.total", "Connections", "", "Client backends (pg_stat_activity)."),
      GaugeSpec("connections.active", "Connections active", "", "Client backends in state active."),
      GaugeSpec("connections.idle", "Connections idle", "", "Client backends in state idle."),
      GaugeSpec("connections.idle_in_transaction", "Connections idle in transaction", "",
                "Client backends in state 'idle in transaction'."),
      GaugeSpec("connections.idle_in_transaction_aborted",
                "Connections idle in aborted transaction", "",
                "Client backends in state 'idle in transaction (aborted)'."),
      GaugeSpec("connections.fastpath", "Connections in a fast-path call", "",
                "Client backends in state 'fastpath function call'."),
      GaugeSpec("connections.disabled", "Connections with track_activities off", "",
                "Client backends in state disabled."),
      GaugeSpec("connections.waiting", "Sessions waiting for a lock", "",
                "Client backends whose wait_event_type is Lock."),
      GaugeSpec("connections.max", "Connections allowed", "", "The max_connections setting."),
      GaugeSpec("connections.used_pct", "Connections, % of max_connections", "%",
                "Client backends / max_connections * 100."),
      GaugeSpec("transactions.max_age", "Longest open transaction", "s",
                "now() - xact_start of the oldest open transaction of another client backend "
                "(idle in transaction included); 0 when none."),
      GaugeSpec("queries.max_age", "Longest running query", "s",
                "now() - query_start of the oldest active query of another client backend; 0 when "
                "none."),
      // locks
      GaugeSpec("locks.total", "Locks", "", "Rows of pg_locks (this session's own excluded)."),
      GaugeSpec("locks.not_granted", "Locks awaited", "", "Rows of pg_locks not granted."),
  };
  const std::pair<const char*, const char*> modes[] = {
      {"access_share", "AccessShareLock"},
      {"row_share", "RowShareLock"},
      {"row_exclusive", "RowExclusiveLock"},
      {"share_update_exclusive", "ShareUpdateExclusiveLock"},
      {"share", "ShareLock"},
      {"share_row_exclusive", "ShareRowExclusiveLock"},
      {"exclusive", "ExclusiveLock"},
      {"access_exclusive", "AccessExclusiveLock"},
      {"si_read", "SIReadLock"},
  };
  for (const auto& [name, mode] : modes) {
    m.push_back(
        GaugeSpec(std::string("locks.") + name, std::string("Locks ") + mode, "",
                  std::string("Rows of pg_locks in mode ") + mode + ", granted or awaited."));
  }
  std::vector<MetricSpec> more = {
      // bgwriter / checkpointer
      CounterSpec("checkpoints.timed", "Checkpoints scheduled per second", "/s",
                  "Rate of checkpoints_timed (17+: pg_stat_checkpointer.num_timed)."),
      CounterSpec("checkpoints.requested", "Checkpoints requested per second", "/s",
                  "Rate of checkpoints_req (17+: pg_stat_checkpointer.num_requested)."),
      CounterSpec("checkpoints.write_time", "Checkpoint write time", "%",
                  "Rate of checkpoint_write_time (ms) as % of wall time (17+: write_time).", "",
                  0.1),
      CounterSpec("checkpoints.sync_time", "Checkpoint sync time", "%",
                  "Rate of checkpoint_sync_time (ms) as % of wall time (17+: sync_time).", "", 0.1),
      CounterSpec("buffers.checkpoint", "Buffers written by checkpoints per second", "/s",
                  "Rate of buffers_checkpoint (17+: pg_stat_checkpointer.buffers_written)."),
      CounterSpec("buffers.clean", "Buffers written by the background writer per second", "/s",
                  "Rate of pg_stat_bgwriter.buffers_clean."),
      CounterSpec("buffers.backend", "Buffers written by backends per second", "/s",
                  "Rate of buffers_backend (17+: relation writes in pg_stat_io by all but the "
                  "checkpointer and the background writer)."),
      CounterSpec("buffers.alloc", "Buffers allocated per second", "/s",
                  "Rate of pg_stat_bgwriter.buffers_alloc."),
      CounterSpec("bgwriter.maxwritten_clean", "Background writer stops per second", "/s",
                  "Rate of maxwritten_clean: cleaning scans stopped at bgwriter_lru_maxpages."),
      // replication
      GaugeSpec("replication.standbys", "Standbys connected", "",
                "WAL senders in pg_stat_replication, base backups excluded."),
      GaugeSpec("standby.lag_bytes", "Standby {#ENTITY} lag", "B",
                "This server's WAL position minus the standby's replay_lsn.", "standby"),
      GaugeSpec("standby.lag_seconds", "Standby {#ENTITY} replay lag", "s",
                "replay_lag of pg_stat_replication; 0 when NULL and caught up.", "standby"),
      GaugeSpec("standby.streaming", "Standby {#ENTITY} streaming", "",
                "1 when the WAL sender's state is streaming, else 0.", "standby"),
      // per database
      DbGauge("db.size", "Database {#ENTITY} size", "B", "pg_database_size()."),
      DbGauge("db.backends", "Database {#ENTITY} backends", "", "numbackends of pg_stat_database."),
      DbCounter("db.commits", "Database {#ENTITY} commits per second", "/s",
                "Rate of xact_commit."),
      DbCounter("db.rollbacks", "Database {#ENTITY} rollbacks per second", "/s",
                "Rate of xact_rollback."),
      DbCounter("db.blocks_read", "Database {#ENTITY} blocks read per second", "/s",
                "Rate of blks_read: blocks not found in shared buffers."),
      DbCounter("db.blocks_hit", "Database {#ENTITY} buffer hits per second", "/s",
                "Rate of blks_hit."),
      DbGauge("db.cache_hit_ratio", "Database {#ENTITY} cache hit ratio", "%",
              "blks_hit / (blks_hit + blks_read) * 100 since the statistics were reset; not "
              "reported before the first block access."),
      DbCounter("db.tuples_returned", "Database {#ENTITY} tuples returned per second", "/s",
                "Rate of tup_returned."),
      DbCounter("db.tuples_fetched", "Database {#ENTITY} tuples fetched per second", "/s",
                "Rate of tup_fetched."),
      DbCounter("db.tuples_inserted", "Database {#ENTITY} tuples inserted per second", "/s",
                "Rate of tup_inserted."),
      DbCounter("db.tuples_updated", "Database {#ENTITY} tuples updated per second", "/s",
                "Rate of tup_updated."),
      DbCounter("db.tuples_deleted", "Database {#ENTITY} tuples deleted per second", "/s",
                "Rate of tup_deleted."),
      DbCounter("db.conflicts", "Database {#ENTITY} recovery conflicts per second", "/s",
                "Rate of conflicts (standbys only)."),
      DbCounter("db.temp_files", "Database {#ENTITY} temporary files per second", "/s",
                "Rate of temp_files."),
      DbCounter("db.temp_bytes", "Database {#ENTITY} temporary file bytes", "Bps",
                "Rate of temp_bytes."),
      DbCounter("db.deadlocks", "Database {#ENTITY} deadlocks per second", "/s",
                "Rate of deadlocks."),
      DbGauge("db.xid_age", "Database {#ENTITY} transaction ID age", "",
              "age(datfrozenxid) of the database."),
  };
  m.insert(m.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return m;
}

// ---------------------------------------------------------------------------------------------
// Parsing

// A column that maps 1:1 to a reading. `nullable`: NULL is an expected value (no warning).
struct Column {
  std::string_view column;
  std::string_view metric;
  bool nullable = false;
};

constexpr Column kInstanceColumns[] = {
    {"in_recovery", "recovery"},
    {"wal_bytes", "wal.bytes", true},  // a standby that has received nothing yet
    {"replay_delay_s", "replication.replay_delay", true},  // NULL on a primary
    {"archived_count", "archiver.archived"},
    {"failed_count", "archiver.failed"},
    {"oldest_xid_age", "xid.oldest_age"},
    {"uptime_s", "uptime"},
};

constexpr Column kActivityColumns[] = {
    {"total", "connections.total"},
    {"active", "connections.active"},
    {"idle", "connections.idle"},
    {"idle_in_transaction", "connections.idle_in_transaction"},
    {"idle_in_transaction_aborted", "connections.idle_in_transaction_aborted"},
    {"fastpath", "connections.fastpath"},
    {"disabled", "connections.disabled"},
    {"waiting", "connections.waiting"},
    {"max_connections", "connections.max"},
    {"max_xact_age_s", "transactions.max_age"},
    {"max_query_age_s", "queries.max_age"},
};

constexpr Column kLocksColumns[] = {
    {"total", "locks.total"},
    {"not_granted", "locks.not_granted"},
    {"access_share", "locks.access_share"},
    {"row_share", "locks.row_share"},
    {"row_exclusive", "locks.row_exclusive"},
    {"share_update_exclusive", "locks.share_update_exclusive"},
    {"share", "locks.share"},
    {"share_row_exclusive", "locks.share_row_exclusive"},
    {"exclusive", "locks.exclusive"},
    {"access_exclusive", "locks.access_exclusive"},
    {"si_read", "locks.si_read"},
};

constexpr Column kBgwriterColumns[] = {
    {"checkpoints_timed", "checkpoints.timed"},
    {"checkpoints_req", "checkpoints.requested"},
    {"checkpoint_write_time", "checkpoints.write_time"},
    {"checkpoint_sync_time", "checkpoints.sync_time"},
    {"buffers_checkpoint", "buffers.checkpoint"},
    {"buffers_clean", "buffers.clean"},
    {"maxwritten_clean", "bgwriter.maxwritten_clean"},
    {"buffers_backend", "buffers.backend"},
    {"buffers_alloc", "buffers.alloc"},
};

constexpr Column kDatabaseColumns[] = {
    {"size_bytes", "db.size", true},  // not asked this tick (size_interval), or not permitted
    {"backends", "db.backends"},
    {"xact_commit", "db.commits"},
    {"xact_rollback", "db.rollbacks"},
    {"blks_read", "db.blocks_read"},
    {"blks_hit", "db.blocks_hit"},
    {"tup_returned", "db.tuples_returned"},
    {"tup_fetched", "db.tuples_fetched"},
    {"tup_inserted", "db.tuples_inserted"},
    {"tup_updated", "db.tuples_updated"},
    {"tup_deleted", "db.tuples_deleted"},
    {"conflicts", "db.conflicts"},
    {"temp_files", "db.temp_files"},
    {"temp_bytes", "db.temp_bytes"},
    {"deadlocks", "db.deadlocks"},
    {"xid_age", "db.xid_age"},
};

// A whole string as a finite double ("12", "-1", "1.5e-05"); nothing else.
std::optional<double> ParseNumber(std::string_view s) {
  double v = 0;
  if (!ParseFiniteNumber(s, &v)) return std::nullopt;
  return v;
}

// A value quoted for a warning: bounded and printable.
std::string Shown(std::string_view s) {
  constexpr std::size_t kMax = 60;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out.push_back(c >= 0x20 && c < 0x7f ? static_cast<char>(c) : '?');
  }
  if (s.size() > kMax) out += "...";
  out += "'";
  return out;
}

// The views each statement reads, for warnings that point at what to fix.
std::string_view Views(std::size_t statement, int server_version) {
  switch (statement) {
    case 0:
      return "pg_stat_archiver, pg_database";
    case 1:
      return "pg_stat_activity";
    case 2:
      return "pg_locks";
    case 3:
      return server_version >= 170000 ? "pg_stat_checkpointer, pg_stat_bgwriter, pg_stat_io"
                                      : "pg_stat_bgwriter";
    case 4:
      return "pg_stat_replication";
    default:
      return "pg_database, pg_stat_database";
  }
}

// One statement's result as views, whatever it came from (a ResultSet, or a part of
// TickQueryText's value): cells row-major, rows * columns->size() of them.
struct Table {
  const std::vector<std::string_view>* columns = nullptr;
  const std::optional<std::string_view>* cells = nullptr;
  std::size_t rows = 0;
  bool short_rows = false;  // a row had fewer cells than columns (padded with NULLs)
  // `columns` lives as long as the program (StatementColumns): where a Column table's columns
  // are in it can be remembered across ticks.
  bool static_columns = false;
};

// Reads one result set: columns by name, warnings prefixed with the statement's name. A
// warning kind (missing column, NULLs, unreadable values) is reported once per statement,
// listing the columns concerned.
class Statement {
 public:
  Statement(std::string_view name, const Table& t, ParseResult* out)
      : name_(name), t_(t), ncols_(t.columns->size()), out_(out) {}
  ~Statement() { Flush(); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // The index of a column, or -1 (remembered as missing). Columns are mostly asked for in
  // the statement's order: the one after the last found is tried first.
  int Index(std::string_view column) {
    const std::vector<std::string_view>& cols = *t_.columns;
    if (next_ < ncols_ && cols[next_] == column) return static_cast<int>(next_++);
    for (std::size_t i = 0; i < ncols_; ++i) {
      if (cols[i] == column) {
        next_ = i + 1;
        return static_cast<int>(i);
      }
    }
    Note(&missing_, column);
    return -1;
  }

  // The cell as text; nullopt for NULL, a missing column or a short row.
  std::optional<std::string_view> Cell(std::size_t row, int index, bool nullable = true) {
    if (index < 0 || row >= t_.rows) return std::nullopt;
    const std::size_t i = static_cast<std::size_t>(index);
    const std::optional<std::string_view>& cell = t_.cells[row * ncols_ + i];
    if (!cell && !nullable) Note(&nulls_, (*t_.columns)[i]);
    return cell;
  }

  std::optional<double> Number(std::size_t row, int index, bool nullable = false) {
    auto cell = Cell(row, index, nullable);
    if (!cell) return std::nullopt;
    auto v = ParseNumber(*cell);
    if (!v) {
      Note(&unreadable_,
           std::string((*t_.columns)[static_cast<std::size_t>(index)]) + "=" + Shown(*cell));
    }
    return v;
  }

  // Readings of the 1:1 columns of one row.
  // Readings of the 1:1 columns of one row (columns looked up once per statement).
  void Direct(std::size_t row, const Column* columns, std::size_t n, std::string_view entity) {
    if (columns != direct_columns_) {
      direct_columns_ = columns;
      n = std::min(n, direct_index_.size());
      if (!t_.static_columns || !RememberedIndexes(columns, n)) {
        for (std::size_t c = 0; c < n; ++c) direct_index_[c] = Index(columns[c].column);
        if (t_.static_columns) Remember(columns, n);
      }
    }
    for (std::size_t c = 0; c < n; ++c) {
      if (auto v = Number(row, direct_index_[c], columns[c].nullable)) {
        Add(columns[c].metric, *v, entity);
      }
    }
  }

  void Add(std::string_view metric, double value, std::string_view entity = {}) {
    Reading& r = out_->readings.emplace_back();
    r.metric = metric;  // static: see Reading
    if (!entity.empty()) r.entity.assign(entity);
    r.value = value;
  }

  void Warn(const std::string& w) { out_->warnings.push_back(std::string(name_) + ": " + w); }

 private:
  // Where a Column table's columns are in a static column list, found once per thread: the
  // lookups by name were a fifth of a tick's parsing.
  struct Remembered {
    const std::vector<std::string_view>* names;
    const Column* columns;
    std::array<int, 16> index;
  };
  static std::vector<Remembered>& RememberedList() {
    thread_local std::vector<Remembered> list;
    return list;
  }
  bool RememberedIndexes(const Column* columns, std::size_t n) {
    for (const Remembered& r : RememberedList()) {
      if (r.names == t_.columns && r.columns == columns) {
        std::copy(r.index.begin(), r.index.begin() + static_cast<std::ptrdiff_t>(n),
                  direct_index_.begin());
        return true;
      }
    }
    return false;
  }
  // Only when every column was found: a missing one must give its warning every time.
  void Remember(const Column* columns, std::size_t n) {
    if (std::find(direct_index_.begin(), direct_index_.begin() + static_cast<std::ptrdiff_t>(n),
                  -1) != direct_index_.begin() + static_cast<std::ptrdiff_t>(n)) {
      return;
    }
    RememberedList().push_back({t_.columns, columns, direct_index_});
  }

  static void Note(std::vector<std::string>* list, std::string_view what) {
    if (std::find(list->begin(), list->end(), what) == list->end()) list->emplace_back(what);
  }
  static std::string List(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
    return s;
  }
  void Flush() {
    if (!missing_.empty()) Warn("missing columns: " + List(missing_));
    if (!nulls_.empty()) {
      Warn("NULL in " + List(nulls_) + " (does the role lack pg_monitor?)");
    }
    if (!unreadable_.empty()) Warn("unreadable values: " + List(unreadable_));
    if (t_.short_rows) Warn("rows shorter than the column list");
  }

  std::string_view name_;
  const Table& t_;
  std::size_t ncols_;
  ParseResult* out_;
  std::size_t next_ = 0;  // Index()'s first guess
  const Column* direct_columns_ = nullptr;
  std::array<int, 16> direct_index_{};  // as many as the longest Column table
  std::vector<std::string> missing_;
  std::vector<std::string> nulls_;
  std::vector<std::string> unreadable_;
};

// A statement that returns exactly one row.
bool OneRow(Statement& st, const Table& rs) {
  if (rs.rows == 1) return true;
  st.Warn("expected 1 row, got " + std::to_string(rs.rows));
  return false;
}

void ParseInstance(const Table& rs, ParseResult* out) {
  Statement st("instance", rs, out);
  if (!OneRow(st, rs)) return;
  st.Direct(0, kInstanceColumns, std::size(kInstanceColumns), "");
}

void ParseActivity(const Table& rs, ParseResult* out) {
  Statement st("activity", rs, out);
  if (!OneRow(st, rs)) return;
  st.Direct(0, kActivityColumns, std::size(kActivityColumns), "");
  auto total = st.Number(0, st.Index("total"));
  auto max = st.Number(0, st.Index("max_connections"));
  if (total && max && *max > 0) st.Add("connections.used_pct", *total / *max * 100.0);
  if (auto hidden = st.Number(0, st.Index("hidden")); hidden && *hidden > 0) {
    st.Warn(std::to_string(static_cast<long long>(*hidden)) +
            " sessions are hidden from this role (grant it pg_monitor): the connection "
            "counts and ages cover only its own sessions");
  }
}

void ParseLocks(const Table& rs, ParseResult* out) {
  Statement st("locks", rs, out);
  if (!OneRow(st, rs)) return;
  st.Direct(0, kLocksColumns, std::size(kLocksColumns), "");
}

void ParseBgwriter(const Table& rs, ParseResult* out) {
  Statement st("bgwriter", rs, out);
  if (!OneRow(st, rs)) return;
  st.Direct(0, kBgwriterColumns, std::size(kBgwriterColumns), "");
}

void ParseReplication(const Table& rs, ParseResult* out) {
  Statement st("replication", rs, out);
  st.Add("replication.standbys", static_cast<double>(rs.rows));
  if (rs.rows == 0) return;
  const int app_i = st.Index("application_name");
  const int addr_i = st.Index("client_addr");
  const int pid_i = st.Index("pid");
  const int state_i = st.Index("state");
  const int lag_i = st.Index("lag_bytes");
  const int lag_s_i = st.Index("replay_lag_s");

  // Names: application_name; the client address when that is empty; "<name>@<address>" for
  // standbys that share a name (the default "walreceiver"); the pid as a last resort.
  std::vector<std::string> names(rs.rows);
  std::map<std::string, int> uses;
  for (std::size_t r = 0; r < rs.rows; ++r) {
    std::string app(st.Cell(r, app_i).value_or(""));
    std::string addr(st.Cell(r, addr_i).value_or(""));
    names[r] = !app.empty() ? app : addr;
    ++uses[names[r]];
  }
  for (std::size_t r = 0; r < rs.rows; ++r) {
    std::string addr(st.Cell(r, addr_i).value_or(""));
    if ((names[r].empty() || uses[names[r]] > 1) && !addr.empty() && names[r] != addr) {
      names[r] = names[r].empty() ? addr : names[r] + "@" + addr;
    }
  }
  uses.clear();
  for (const auto& n : names) ++uses[n];
  for (std::size_t r = 0; r < rs.rows; ++r) {
    if (names[r].empty() || uses[names[r]] > 1) {
      std::string pid(st.Cell(r, pid_i).value_or(""));
      if (pid.empty()) {
        names[r].clear();  // nothing tells it apart: skipped below
      } else {
        names[r] = (names[r].empty() ? "pid" : names[r] + "#") + pid;
      }
    }
  }

  bool hidden = false;
  bool unnamed = false;
  std::set<std::string> seen;
  for (std::size_t r = 0; r < rs.rows; ++r) {
    const std::string& name = names[r];
    if (name.empty()) {
      unnamed = true;
      continue;
    }
    if (!seen.insert(name).second) {
      st.Warn("standby name " + Shown(name) + " twice (same pid?): skipped");
      continue;
    }
    auto state = st.Cell(r, state_i);
    if (state) {
      st.Add("standby.streaming", *state == "streaming" ? 1 : 0, name);
    } else {
      hidden = true;  // NULL without pg_read_all_stats
    }
    auto lag = st.Number(r, lag_i, true);
    if (lag) st.Add("standby.lag_bytes", std::max(0.0, *lag), name);
    if (auto s = st.Number(r, lag_s_i, true)) {
      st.Add("standby.lag_seconds", std::max(0.0, *s), name);
    } else if (lag && *lag <= 0 && state) {
      st.Add("standby.lag_seconds", 0, name);  // NULL once caught up and idle
    }
    Entity e{"standby", name, {}};
    e.labels.emplace_back("application_name", std::string(st.Cell(r, app_i).value_or("")));
    e.labels.emplace_back("client_addr", std::string(st.Cell(r, addr_i).value_or("")));
    out->entities.push_back(std::move(e));
  }
  if (hidden) st.Warn("standby details are NULL (does the role lack pg_monitor?)");
  if (unnamed) st.Warn("standbys without application_name, client_addr or pid skipped");
}

void ParseDatabases(const Table& rs, ParseResult* out) {
  Statement st("databases", rs, out);
  const int name_i = st.Index("datname");
  if (name_i < 0) return;
  const int read_i = st.Index("blks_read");
  const int hit_i = st.Index("blks_hit");
  std::set<std::string_view> seen;
  for (std::size_t r = 0; r < rs.rows; ++r) {
    auto name = st.Cell(r, name_i, false);
    if (!name || name->empty()) continue;
    if (!seen.insert(*name).second) {
      st.Warn("database " + Shown(*name) + " twice: skipped");
      continue;
    }
    st.Direct(r, kDatabaseColumns, std::size(kDatabaseColumns), *name);
    auto read = st.Number(r, read_i);
    auto hit = st.Number(r, hit_i);
    if (read && hit && *read >= 0 && *hit >= 0 && *read + *hit > 0) {
      st.Add("db.cache_hit_ratio", *hit / (*read + *hit) * 100.0, *name);
    }
    out->entities.push_back(Entity{"database", std::string(*name), {}});
  }
}

static_assert(std::size(kDatabaseColumns) <= 16 && std::size(kActivityColumns) <= 16 &&
              std::size(kLocksColumns) <= 16 && std::size(kBgwriterColumns) <= 16 &&
              std::size(kInstanceColumns) <= 16);

using StatementParser = void (*)(const Table&, ParseResult*);
constexpr StatementParser kParsers[] = {ParseInstance, ParseActivity,    ParseLocks,
                                        ParseBgwriter, ParseReplication, ParseDatabases};
static_assert(std::size(kParsers) == kStatementNames.size());

std::string Major(int server_version) {
  if (server_version >= 100000) return std::to_string(server_version / 10000);
  return std::to_string(server_version / 10000) + "." + std::to_string(server_version / 100 % 100);
}

// One statement's result, or its error, for ParseStatements.
struct StatementResult {
  Table table;
  std::string_view error;
};

// The readings of the statements' results, in kStatementNames order; fewer results than
// statements: the rest is warned about as missing.
ParseResult ParseStatements(int server_version, const std::vector<StatementResult>& results) {
  ParseResult out;
  if (std::string why = UnsupportedVersionReason(server_version); !why.empty()) {
    out.warnings.push_back(std::move(why));
    return out;
  }
  const std::size_t n = kStatementNames.size();
  // Room for every reading at once (one allocation, no move of the readings as they grow):
  // one per column of the one-row statements and a few, and per database and standby row
  // one per column and its ratio.
  std::size_t rows = 0;
  for (const StatementResult& r : results) rows += r.table.rows;
  out.readings.reserve(std::size(kInstanceColumns) + std::size(kActivityColumns) +
                       std::size(kLocksColumns) + std::size(kBgwriterColumns) + 4 +
                       (std::size(kDatabaseColumns) + 1) * rows);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string name(kStatementNames[i]);
    if (i >= results.size()) {
      out.warnings.push_back(name + ": no result (" + std::string(Views(i, server_version)) +
                             "; the query ended at an earlier error?)");
      continue;
    }
    if (!results[i].error.empty()) {
      std::string_view error = results[i].error;
      while (!error.empty() && (error.back() == '\n' || error.back() == ' ')) {
        error.remove_suffix(1);
      }
      out.warnings.push_back(name + " (" + std::string(Views(i, server_version)) +
                             ") failed: " + std::string(error));
      continue;
    }
    kParsers[i](results[i].table, &out);
  }
  return out;
}

// The names a statement gives its columns: every "AS <name>" that ends a select-list item
// (followed by ",\n" or "\n"), in order. The statements are ours and written that way (the
// unit test compares with the columns of captured results).
std::vector<std::string_view> ColumnNamesOf(std::string_view sql) {
  std::vector<std::string_view> names;
  for (std::size_t at = sql.find(" AS "); at != std::string_view::npos;
       at = sql.find(" AS ", at + 4)) {
    std::size_t b = at + 4;
    std::size_t e = b;
    while (e < sql.size() && ((sql[e] >= 'a' && sql[e] <= 'z') || sql[e] == '_')) ++e;
    if (e == b || e >= sql.size()) continue;
    if (sql[e] == '\n' || (sql[e] == ',' && e + 1 < sql.size() && sql[e + 1] == '\n')) {
      names.push_back(sql.substr(b, e - b));
    }
  }
  return names;
}

// TickQueries' text as its statements, without their ";\n" terminators.
std::vector<std::string> SplitAtTerminators(std::string_view sql) {
  std::vector<std::string> out;
  for (std::size_t pos = 0; pos < sql.size();) {
    std::size_t end = sql.find(";\n", pos);
    if (end == std::string_view::npos) end = sql.size();
    out.emplace_back(sql.substr(pos, end - pos));
    pos = end + 2;
  }
  return out;
}

// Reads TickQueryText's value: per statement, records "(v,v,...)" in PostgreSQL's record
// text output, then ';'. Cells view the text, or `unescaped_` for quoted values with doubled
// quotes or backslashes.
class TextDecoder {
 public:
  struct Part {
    std::size_t first_cell = 0;
    std::size_t rows = 0;
    std::string error;  // this statement's records are malformed
  };

  explicit TextDecoder(std::string_view text) : text_(text) {
    cells_.reserve(96);
    parts_.reserve(kStatementNames.size());
  }

  // Reads the next statement's records; false (error() says why) when the text ends or is
  // malformed before its ';'.
  bool Section(const std::vector<std::string_view>& columns) {
    Part part;
    part.first_cell = cells_.size();
    auto fail = [&](std::string why) {
      cells_.resize(part.first_cell);
      return Fail(std::move(why));
    };
    while (pos_ < text_.size() && text_[pos_] == '(') {
      ++pos_;
      std::size_t fields = 0;
      for (;;) {
        if (!Field()) return fail(error_);
        ++fields;
        if (pos_ >= text_.size()) return fail("text ends inside a record");
        char c = text_[pos_++];
        if (c == ')') break;
        if (c != ',') return fail("unexpected character in a record");
      }
      if (fields != columns.size() && part.error.empty()) {
        part.error = "malformed tick text: a record of " + std::to_string(fields) +
                     " values, expected " + std::to_string(columns.size());
      }
      ++part.rows;
      // Keep the cells a whole number of rows of columns.size().
      cells_.resize(part.first_cell + part.rows * columns.size());
    }
    if (pos_ >= text_.size() || text_[pos_] != ';') {
      return fail(pos_ >= text_.size() ? "text ends before a statement's end"
                                       : "unexpected character between records");
    }
    ++pos_;
    parts_.push_back(std::move(part));
    return true;
  }

  const Part& part(std::size_t i) const { return parts_[i]; }
  const std::vector<std::optional<std::string_view>>& cells() const { return cells_; }
  const std::string& error() const { return error_; }
  bool AtEnd() const { return text_.find_first_not_of(" \t\r\n", pos_) == std::string_view::npos; }

 private:
  bool Fail(std::string why) {
    error_ = std::move(why);
    return false;
  }

  // One value: nothing (NULL), unquoted text up to ',' or ')', or "quoted".
  bool Field() {
    if (pos_ >= text_.size()) return Fail("text ends inside a record");
    if (text_[pos_] != '"') {
      std::size_t b = pos_;
      while (pos_ < text_.size() && text_[pos_] != ',' && text_[pos_] != ')') ++pos_;
      if (pos_ == b) {
        cells_.emplace_back();
      } else {
        cells_.emplace_back(text_.substr(b, pos_ - b));
      }
      return true;
    }
    ++pos_;
    const std::size_t b = pos_;
    bool escaped = false;
    for (;;) {
      if (pos_ >= text_.size()) return Fail("text ends inside a quoted value");
      char c = text_[pos_];
      if (c == '\\' || (c == '"' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '"')) {
        escaped = true;
        pos_ += 2;
        continue;
      }
      if (c == '"') break;
      ++pos_;
    }
    std::string_view raw = text_.substr(b, pos_ - b);
    ++pos_;  // the closing quote
    if (!escaped) {
      cells_.emplace_back(raw);
      return true;
    }
    std::string& v = unescaped_.emplace_front();
    for (std::size_t i = 0; i < raw.size(); ++i) {
      if ((raw[i] == '\\' || raw[i] == '"') && i + 1 < raw.size()) ++i;
      v.push_back(raw[i]);
    }
    cells_.emplace_back(std::string_view(v));
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
  std::vector<Part> parts_;
  std::vector<std::optional<std::string_view>> cells_;
  std::forward_list<std::string> unescaped_;  // allocates nothing until used
  std::string error_;
};

}  // namespace

const std::vector<MetricSpec>& Metrics() {
  static const std::vector<MetricSpec> metrics = BuildMetrics();
  return metrics;
}

std::string UnsupportedVersionReason(int server_version) {
  if (server_version <= 0) {
    return "unknown server version " + std::to_string(server_version) +
           " (PQserverVersion gives 0 when the connection is bad)";
  }
  if (server_version < kMinServerVersion) {
    return "PostgreSQL " + Major(server_version) +
           " is not supported: the queries are written for the statistics views of "
           "PostgreSQL 12 and later (11 and older are past their end of life)";
  }
  return "";
}

std::string ParseOptions(const std::map<std::string, std::string>& options, Options* out) {
  for (const auto& [key, value] : options) {
    if (key != "size_interval") {
      return "[postgresql] unknown option '" + key + "' (known: size_interval)";
    }
    double v = 0;
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(v) || v < 0 ||
        v > 86400) {
      return "[postgresql] option size_interval: expected seconds from 0 to 86400, got '" + value +
             "'";
    }
    out->size_interval_s = v;
  }
  return {};
}

std::string TickQueries(int server_version, bool with_sizes) {
  if (!UnsupportedVersionReason(server_version).empty()) return "";
  std::string sql;
  sql.reserve(6000);
  sql.append(kInstanceSql);
  sql.append(kActivitySql);
  sql.append(kLocksSql);
  sql.append(server_version >= 170000 ? kBgwriterSql17 : kBgwriterSql12);
  sql.append(kReplicationSql);
  sql.append(with_sizes ? kDatabasesSql : kDatabasesWithoutSizesSql);
  return sql;
}

ParseResult ParseTick(int server_version, const std::vector<ResultSet>& results) {
  std::vector<StatementResult> in(std::min(results.size(), kStatementNames.size()));
  std::vector<std::vector<std::string_view>> columns(in.size());
  std::vector<std::vector<std::optional<std::string_view>>> cells(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    const ResultSet& rs = results[i];
    if (!rs.error.empty()) {
      in[i].error = rs.error;
      continue;
    }
    columns[i].assign(rs.columns.begin(), rs.columns.end());
    const std::size_t ncols = rs.columns.size();
    cells[i].reserve(rs.rows.size() * ncols);
    for (const auto& row : rs.rows) {
      for (std::size_t c = 0; c < ncols; ++c) {
        if (c < row.size() && row[c]) {
          cells[i].emplace_back(std::string_view(*row[c]));
        } else {
          cells[i].emplace_back();
          if (c >= row.size()) in[i].table.short_rows = true;
        }
      }
    }
    in[i].table.columns = &columns[i];
    in[i].table.cells = cells[i].data();
    in[i].table.rows = rs.rows.size();
  }
  ParseResult out = ParseStatements(server_version, in);
  if (results.size() > kStatementNames.size()) {
    out.warnings.push_back(std::to_string(results.size() - kStatementNames.size()) +
                           " unexpected extra result sets");
  }
  return out;
}

const std::vector<std::string_view>& StatementColumns(std::size_t statement) {
  static const std::vector<std::vector<std::string_view>> all = [] {
    std::vector<std::vector<std::string_view>> v;
    for (std::string_view sql :
         {kInstanceSql, kActivitySql, kLocksSql, kBgwriterSql12, kReplicationSql, kDatabasesSql}) {
      v.push_back(ColumnNamesOf(sql));
    }
    return v;
  }();
  static const std::vector<std::string_view> none;
  return statement < all.size() ? all[statement] : none;
}

std::string TickQueryText(int server_version, bool with_sizes) {
  if (!UnsupportedVersionReason(server_version).empty()) return "";
  std::string sql = "SELECT concat(";
  bool first = true;
  for (const std::string& statement : SplitAtTerminators(TickQueries(server_version, with_sizes))) {
    if (!first) sql += ", ";
    first = false;
    sql += "\n(SELECT string_agg(s::text, '') FROM (\n";
    sql += statement;
    sql += "\n) s), ';'";
  }
  sql += ") AS tick";
  return sql;
}

ParseResult ParseTickText(int server_version, std::string_view text) {
  TextDecoder decoder(text);
  std::vector<StatementResult> in;
  for (std::size_t i = 0; i < kStatementNames.size(); ++i) {
    if (!decoder.Section(StatementColumns(i))) break;
    in.emplace_back();
  }
  // Pointers into the decoder's cells once they stop growing.
  for (std::size_t i = 0; i < in.size(); ++i) {
    const TextDecoder::Part& part = decoder.part(i);
    if (!part.error.empty()) {
      in[i].error = part.error;
      continue;
    }
    in[i].table.columns = &StatementColumns(i);
    in[i].table.static_columns = true;
    in[i].table.cells = decoder.cells().data() + part.first_cell;
    in[i].table.rows = part.rows;
  }
  ParseResult out = ParseStatements(server_version, in);
  if (in.size() < kStatementNames.size() && !decoder.error().empty()) {
    out.warnings.push_back("tick text: " + decoder.error());
  } else if (!decoder.AtEnd()) {
    out.warnings.push_back("tick text: unexpected text after the last statement");
  }
  return out;
}

}  // namespace trapline::plugins::postgresql
