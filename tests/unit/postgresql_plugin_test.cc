// The postgresql plugin: its SQL (compared with tests/fixtures/postgresql/queries_<major>.sql,
// which the integration test runs on a real server) and its parser over result sets of
// PostgreSQL 15 (Debian 12) captured by tests/fixtures/postgresql/capture.py, and variants of
// them made here (NULLs everywhere, missing, extra and reordered columns, failed and missing
// statements, every prefix of every captured file).
//
// TRAPLINE_UPDATE_FIXTURES=1 makes the SQL test write queries_<major>.sql instead of
// comparing (then re-run capture.py and review the diff).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/postgresql/postgresql.h"

namespace trapline::plugins::postgresql {
namespace {

const std::string kDir = std::string(TRAPLINE_FIXTURES) + "/postgresql/";

std::optional<std::string> ReadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  std::string out;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

std::string MustRead(const std::string& path) {
  auto s = ReadFile(path);
  REQUIRE_MESSAGE(s.has_value(), "cannot read " << path);
  return *s;
}

// One field of COPY text format: backslash escapes undone.
std::string Unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\' || i + 1 == s.size()) {
      out.push_back(s[i]);
      continue;
    }
    char c = s[++i];
    switch (c) {
      case 't':
        out.push_back('\t');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'v':
        out.push_back('\v');
        break;
      default:
        out.push_back(c);
        break;
    }
  }
  return out;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    std::size_t p = s.find(sep);
    out.push_back(s.substr(0, p));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

// A statement's .tsv fixture (COPY text format with a header row) as a ResultSet. Lenient:
// a last line without '\n' is still a line, short rows stay short.
ResultSet FromTsv(std::string_view text) {
  ResultSet rs;
  bool header = true;
  for (std::string_view line : Split(text, '\n')) {
    if (line.empty()) continue;
    std::vector<std::optional<std::string>> cells;
    for (std::string_view f : Split(line, '\t')) {
      if (f == "\\N") {
        cells.emplace_back(std::nullopt);
      } else {
        cells.emplace_back(Unescape(f));
      }
    }
    if (header) {
      for (auto& c : cells) rs.columns.push_back(c.value_or(""));
      header = false;
    } else {
      rs.rows.push_back(std::move(cells));
    }
  }
  return rs;
}

std::string TsvPath(const std::string& case_dir, std::size_t i) {
  return kDir + case_dir + "/" + std::to_string(i + 1) + "_" + std::string(kStatementNames[i]) +
         ".tsv";
}

std::vector<ResultSet> LoadCase(const std::string& case_dir) {
  std::vector<ResultSet> out;
  for (std::size_t i = 0; i < kStatementNames.size(); ++i) {
    out.push_back(FromTsv(MustRead(TsvPath(case_dir, i))));
  }
  return out;
}

const std::vector<std::string> kCases = {"15_primary", "15_standby", "15_unprivileged"};

std::optional<Reading> Find(const ParseResult& r, std::string_view metric,
                            std::string_view entity = "") {
  for (const Reading& x : r.readings) {
    if (x.metric == metric && x.entity == entity) return x;
  }
  return std::nullopt;
}

double Value(const ParseResult& r, std::string_view metric, std::string_view entity = "") {
  auto x = Find(r, metric, entity);
  REQUIRE_MESSAGE(x.has_value(), "no reading " << metric << "[" << entity << "]");
  return x->value;
}

const Entity* FindEntity(const ParseResult& r, std::string_view kind, std::string_view name) {
  for (const Entity& e : r.entities) {
    if (e.kind == kind && e.name == name) return &e;
  }
  return nullptr;
}

std::string Joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += "\n  " + x;
  return s;
}

bool AnyWarningContains(const ParseResult& r, std::string_view needle) {
  return std::any_of(r.warnings.begin(), r.warnings.end(),
                     [&](const std::string& w) { return w.find(needle) != std::string::npos; });
}

// (metric, entity) -> value, for comparing results regardless of order.
std::map<std::pair<std::string, std::string>, double> AsMap(const ParseResult& r) {
  std::map<std::pair<std::string, std::string>, double> m;
  for (const Reading& x : r.readings) m[{std::string(x.metric), x.entity}] = x.value;
  return m;
}

// Every reading is declared, with the entity kind its entity has, and every entity a reading
// names is listed; no reading twice.
void CheckConsistent(const ParseResult& r) {
  std::map<std::string, const MetricSpec*, std::less<>> specs;
  for (const MetricSpec& m : Metrics()) specs[m.name] = &m;
  std::set<std::string> entities;
  for (const Entity& e : r.entities) {
    CHECK_MESSAGE(entities.insert(e.kind + "/" + e.name).second, "entity twice: " << e.name);
  }
  std::set<std::pair<std::string, std::string>> seen;
  for (const Reading& x : r.readings) {
    auto it = specs.find(x.metric);
    REQUIRE_MESSAGE(it != specs.end(), "undeclared metric " << x.metric);
    CHECK_MESSAGE(it->second->entity_kind.empty() == x.entity.empty(), x.metric);
    CHECK_MESSAGE(seen.insert({std::string(x.metric), x.entity}).second,
                  "reading twice: " << x.metric << "[" << x.entity << "]");
    if (!x.entity.empty()) {
      CHECK_MESSAGE(entities.count(it->second->entity_kind + "/" + x.entity) == 1,
                    x.metric << "[" << x.entity << "]");
    }
  }
}

TEST_CASE("postgresql: metric declarations") {
  std::set<std::string> names;
  for (const MetricSpec& m : Metrics()) {
    CHECK_MESSAGE(names.insert(m.name).second, "duplicate " << m.name);
    CHECK(!m.title.empty());
    CHECK(!m.description.empty());
    CHECK((m.entity_kind.empty() || m.entity_kind == "database" || m.entity_kind == "standby"));
    CHECK((m.entity_kind.empty() == (m.title.find("{#ENTITY}") == std::string::npos)));
    CHECK(m.value_type == ValueType::kFloat);
  }
  CHECK(Metrics().size() == 60);
  CHECK(kPluginName == "postgresql");
}

TEST_CASE("postgresql: the SQL per version equals queries_<major>.sql") {
  const bool update = std::getenv("TRAPLINE_UPDATE_FIXTURES") != nullptr &&
                      std::string(std::getenv("TRAPLINE_UPDATE_FIXTURES")) == "1";
  for (int major = 12; major <= 17; ++major) {
    CAPTURE(major);
    const std::string path = kDir + "queries_" + std::to_string(major) + ".sql";
    const std::string sql = TickQueries(major * 10000);
    if (update) {
      std::FILE* f = std::fopen(path.c_str(), "wb");
      REQUIRE(f != nullptr);
      std::fwrite(sql.data(), 1, sql.size(), f);
      std::fclose(f);
    }
    CHECK(sql == MustRead(path));
    // Minor versions get their major's SQL.
    CHECK(TickQueries(major * 10000 + 22) == sql);
    CHECK(UnsupportedVersionReason(major * 10000 + 5).empty());
    // One statement per result: each ends with ";\n", and ';' appears nowhere else (capture.py
    // and the integration test split on it).
    CHECK(std::count(sql.begin(), sql.end(), ';') == static_cast<long>(kStatementNames.size()));
    CHECK(Split(sql, ';').size() == kStatementNames.size() + 1);
    const auto parts = Split(sql, ';');
    for (std::size_t i = 1; i < parts.size(); ++i) CHECK(parts[i].substr(0, 1) == "\n");
  }
  CHECK(TickQueries(120000) == TickQueries(160000));
  CHECK(TickQueries(160000) != TickQueries(170000));
  CHECK(TickQueries(170000).find("pg_stat_checkpointer") != std::string::npos);
  CHECK(TickQueries(160000).find("pg_stat_checkpointer") == std::string::npos);
  // Newer than known: the newest SQL.
  CHECK(TickQueries(180001) == TickQueries(170000));
}

TEST_CASE("postgresql: versions below 12 are refused with a reason") {
  for (int v : {110005, 100000, 90624, 0, -1}) {
    CAPTURE(v);
    CHECK(TickQueries(v).empty());
    CHECK(!UnsupportedVersionReason(v).empty());
    ParseResult r = ParseTick(v, LoadCase("15_primary"));
    CHECK(r.readings.empty());
    CHECK(r.entities.empty());
    CHECK(r.warnings.size() == 1);
  }
  CHECK(UnsupportedVersionReason(90624).find("PostgreSQL 9.6 ") != std::string::npos);
  CHECK(UnsupportedVersionReason(110005).find("PostgreSQL 11 ") != std::string::npos);
}

TEST_CASE("postgresql: captures' columns are the ones the parser reads") {
  for (const auto& c : kCases) {
    CAPTURE(c);
    ParseResult r = ParseTick(150000, LoadCase(c));
    CHECK_FALSE(AnyWarningContains(r, "missing columns"));
    CHECK_FALSE(AnyWarningContains(r, "unreadable"));
    CHECK_FALSE(AnyWarningContains(r, "no result"));
    CheckConsistent(r);
  }
}

TEST_CASE("postgresql: primary with activity, locks, a standby, failing archiving") {
  ParseResult r = ParseTick(150000, LoadCase("15_primary"));
  CHECK_MESSAGE(r.warnings.empty(), Joined(r.warnings));
  // instance
  CHECK(Value(r, "recovery") == 0);
  CHECK(Value(r, "wal.bytes") == 83886304);
  CHECK_FALSE(Find(r, "replication.replay_delay"));  // a primary
  CHECK(Value(r, "archiver.archived") == 0);
  CHECK(Value(r, "archiver.failed") == 9);
  CHECK(Value(r, "xid.oldest_age") == 22);
  CHECK(Value(r, "uptime") == doctest::Approx(6.786807));
  // activity
  CHECK(Value(r, "connections.total") == 5);
  CHECK(Value(r, "connections.active") == 2);  // the capture itself and the lock waiter
  CHECK(Value(r, "connections.idle") == 0);
  CHECK(Value(r, "connections.idle_in_transaction") == 2);
  CHECK(Value(r, "connections.idle_in_transaction_aborted") == 1);
  CHECK(Value(r, "connections.fastpath") == 0);
  CHECK(Value(r, "connections.disabled") == 0);
  CHECK(Value(r, "connections.waiting") == 1);
  CHECK(Value(r, "connections.max") == 300);
  CHECK(Value(r, "connections.used_pct") == doctest::Approx(5.0 / 300 * 100));
  CHECK(Value(r, "transactions.max_age") == doctest::Approx(2.049814));
  CHECK(Value(r, "queries.max_age") == doctest::Approx(1.545937));
  // locks
  CHECK(Value(r, "locks.total") == 7);
  CHECK(Value(r, "locks.not_granted") == 1);
  CHECK(Value(r, "locks.access_exclusive") == 1);
  CHECK(Value(r, "locks.access_share") == 1);
  CHECK(Value(r, "locks.exclusive") == 5);
  CHECK(Value(r, "locks.si_read") == 0);
  // bgwriter
  CHECK(Value(r, "checkpoints.timed") == 0);
  CHECK(Value(r, "checkpoints.requested") == 2);
  CHECK(Value(r, "checkpoints.write_time") == 135);
  CHECK(Value(r, "checkpoints.sync_time") == 2);
  CHECK(Value(r, "buffers.checkpoint") == 2757);
  CHECK(Value(r, "buffers.clean") == 0);
  CHECK(Value(r, "buffers.backend") == 909);
  CHECK(Value(r, "buffers.alloc") == 3866);
  CHECK(Value(r, "bgwriter.maxwritten_clean") == 0);
  // replication
  CHECK(Value(r, "replication.standbys") == 1);
  const Entity* s = FindEntity(r, "standby", "standby1");
  REQUIRE(s != nullptr);
  CHECK(s->labels == std::vector<std::pair<std::string, std::string>>{
                         {"application_name", "standby1"}, {"client_addr", "127.0.0.1"}});
  CHECK(Value(r, "standby.streaming", "standby1") == 1);
  CHECK(Value(r, "standby.lag_bytes", "standby1") == 0);
  CHECK(Value(r, "standby.lag_seconds", "standby1") == doctest::Approx(0.073747));
  // databases: templates excluded
  std::vector<std::string> dbs;
  for (const Entity& e : r.entities) {
    if (e.kind == "database") dbs.push_back(e.name);
  }
  CHECK(dbs == std::vector<std::string>{"app", "postgres", "reports", "sales db"});
  CHECK(Value(r, "db.size", "app") == 7765351);
  CHECK(Value(r, "db.backends", "app") == 2);
  CHECK(Value(r, "db.commits", "app") == 14);
  CHECK(Value(r, "db.rollbacks", "app") == 4);
  CHECK(Value(r, "db.blocks_read", "app") == 14);
  CHECK(Value(r, "db.blocks_hit", "app") == 6361);
  CHECK(Value(r, "db.cache_hit_ratio", "app") == doctest::Approx(6361.0 / (6361 + 14) * 100));
  CHECK(Value(r, "db.tuples_returned", "app") == 4438);
  CHECK(Value(r, "db.tuples_fetched", "app") == 1385);
  CHECK(Value(r, "db.tuples_inserted", "app") == 1041);
  CHECK(Value(r, "db.tuples_updated", "app") == 104);
  CHECK(Value(r, "db.tuples_deleted", "app") == 50);
  CHECK(Value(r, "db.conflicts", "app") == 0);
  CHECK(Value(r, "db.temp_files", "app") == 2);
  CHECK(Value(r, "db.temp_bytes", "app") == 5257600);
  CHECK(Value(r, "db.deadlocks", "app") == 1);
  CHECK(Value(r, "db.xid_age", "app") == 22);
  CHECK(Value(r, "db.size", "sales db") == 7634279);
  CHECK(Value(r, "db.cache_hit_ratio", "sales db") == 100);
  CHECK(ItemKey(kPluginName, "db.size", "sales db") == "postgresql.db.size[\"sales db\"]");
}

TEST_CASE("postgresql: standby") {
  ParseResult r = ParseTick(150000, LoadCase("15_standby"));
  CHECK_MESSAGE(r.warnings.empty(), Joined(r.warnings));
  CHECK(Value(r, "recovery") == 1);
  CHECK(Value(r, "replication.replay_delay") == 0);
  CHECK(Value(r, "wal.bytes") == 83886304);  // received position
  CHECK(Value(r, "replication.standbys") == 0);
  CHECK(FindEntity(r, "standby", "standby1") == nullptr);
  CHECK(FindEntity(r, "database", "app") != nullptr);
  CHECK(Value(r, "db.commits", "app") == 0);
  CHECK_FALSE(Find(r, "db.cache_hit_ratio", "app"));  // no block accessed yet
}

TEST_CASE("postgresql: a role without pg_monitor: fewer readings and warnings saying why") {
  ParseResult r = ParseTick(150000, LoadCase("15_unprivileged"));
  CheckConsistent(r);
  CHECK(AnyWarningContains(r, "activity: 11 sessions are hidden from this role"));
  CHECK(AnyWarningContains(r, "replication: standby details are NULL"));
  CHECK(r.warnings.size() == 2);
  CHECK(Value(r, "connections.total") == 1);  // only its own session
  REQUIRE(FindEntity(r, "standby", "standby1") != nullptr);
  CHECK_FALSE(Find(r, "standby.streaming", "standby1"));
  CHECK_FALSE(Find(r, "standby.lag_bytes", "standby1"));
  CHECK_FALSE(Find(r, "standby.lag_seconds", "standby1"));
  CHECK(Value(r, "db.size", "app") == 7765351);  // CONNECT is granted to PUBLIC
}

TEST_CASE("postgresql: NULLs everywhere") {
  std::vector<ResultSet> results = LoadCase("15_primary");
  for (ResultSet& rs : results) {
    for (auto& row : rs.rows) {
      for (auto& cell : row) cell.reset();
    }
  }
  ParseResult r = ParseTick(150000, results);
  CheckConsistent(r);
  // Only what does not come from a cell: the number of standbys (rows).
  REQUIRE(r.readings.size() == 1);
  CHECK(Value(r, "replication.standbys") == 1);
  CHECK(r.entities.empty());
  for (const char* w :
       {"instance: NULL in in_recovery, archived_count, failed_count", "activity: NULL in total,",
        "locks: NULL in total,", "bgwriter: NULL in checkpoints_timed,",
        "databases: NULL in datname", "replication: standbys without application_name"}) {
    CHECK_MESSAGE(AnyWarningContains(r, w), w << Joined(r.warnings));
  }
}

TEST_CASE("postgresql: missing columns: warnings, and the rest is read") {
  std::vector<ResultSet> results = LoadCase("15_primary");
  const std::set<std::string> drop = {"failed_count",    "max_connections", "si_read",
                                      "buffers_backend", "lag_bytes",       "size_bytes",
                                      "blks_hit"};
  for (ResultSet& rs : results) {
    for (std::size_t c = rs.columns.size(); c-- > 0;) {
      if (drop.count(rs.columns[c]) == 0) continue;
      rs.columns.erase(rs.columns.begin() + static_cast<long>(c));
      for (auto& row : rs.rows) row.erase(row.begin() + static_cast<long>(c));
    }
  }
  ParseResult r = ParseTick(150000, results);
  CheckConsistent(r);
  for (const char* w :
       {"instance: missing columns: failed_count", "activity: missing columns: max_connections",
        "locks: missing columns: si_read", "bgwriter: missing columns: buffers_backend",
        "replication: missing columns: lag_bytes",
        "databases: missing columns: blks_hit, size_bytes"}) {
    CHECK_MESSAGE(AnyWarningContains(r, w), w << Joined(r.warnings));
  }
  CHECK(r.warnings.size() == 6);
  CHECK_FALSE(Find(r, "archiver.failed"));
  CHECK_FALSE(Find(r, "connections.max"));
  CHECK_FALSE(Find(r, "connections.used_pct"));
  CHECK_FALSE(Find(r, "standby.lag_bytes", "standby1"));
  CHECK_FALSE(Find(r, "db.size", "app"));
  CHECK_FALSE(Find(r, "db.cache_hit_ratio", "app"));
  CHECK(Value(r, "archiver.archived") == 0);
  CHECK(Value(r, "connections.total") == 5);
  CHECK(Value(r, "db.commits", "app") == 14);
  CHECK(Value(r, "standby.lag_seconds", "standby1") == doctest::Approx(0.073747));
}

TEST_CASE("postgresql: extra and reordered columns change nothing") {
  const std::vector<ResultSet> base = LoadCase("15_primary");
  std::vector<ResultSet> results = base;
  for (ResultSet& rs : results) {
    std::reverse(rs.columns.begin(), rs.columns.end());
    rs.columns.insert(rs.columns.begin() + 1, "future_column");
    for (auto& row : rs.rows) {
      std::reverse(row.begin(), row.end());
      row.insert(row.begin() + 1, std::string("whatever"));
    }
  }
  ParseResult a = ParseTick(150000, base);
  ParseResult b = ParseTick(150000, results);
  CHECK_MESSAGE(b.warnings.empty(), Joined(b.warnings));
  CHECK(AsMap(a) == AsMap(b));
  CHECK(a.entities.size() == b.entities.size());
}

TEST_CASE("postgresql: a failed statement is named; the others are read") {
  std::vector<ResultSet> results = LoadCase("15_primary");
  results[2] = ResultSet{};
  results[2].error = "ERROR:  permission denied for view pg_locks\n";
  ParseResult r = ParseTick(150000, results);
  CheckConsistent(r);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0] == "locks (pg_locks) failed: ERROR:  permission denied for view pg_locks");
  CHECK_FALSE(Find(r, "locks.total"));
  CHECK(Value(r, "connections.total") == 5);
  CHECK(Value(r, "db.commits", "app") == 14);

  // As libpq delivers it: the error ends the query, no result follows.
  results.resize(3);
  r = ParseTick(170000, results);
  CHECK(r.warnings.size() == 4);
  CHECK(AnyWarningContains(
      r, "bgwriter: no result (pg_stat_checkpointer, pg_stat_bgwriter, pg_stat_io"));
  CHECK(AnyWarningContains(r, "replication: no result"));
  CHECK(AnyWarningContains(r, "databases: no result"));
  CHECK(Value(r, "connections.total") == 5);

  r = ParseTick(150000, {});
  CHECK(r.warnings.size() == kStatementNames.size());
  CHECK(r.readings.empty());

  results = LoadCase("15_primary");
  results.push_back(results[0]);
  r = ParseTick(150000, results);
  CHECK(r.warnings == std::vector<std::string>{"1 unexpected extra result sets"});
}

TEST_CASE("postgresql: unreadable values, wrong row counts, short rows") {
  std::vector<ResultSet> results = LoadCase("15_primary");
  results[0].rows[0][1] = "0/3000000";            // wal_bytes as an LSN
  results[1].rows.push_back(results[1].rows[0]);  // two rows
  results[3].rows.clear();                        // no row
  results[5].rows[0].resize(3);                   // short row
  results[5].rows[1][5] = "1e999";
  ParseResult r = ParseTick(150000, results);
  CheckConsistent(r);
  for (const char* w :
       {"instance: unreadable values: wal_bytes='0/3000000'", "activity: expected 1 row, got 2",
        "bgwriter: expected 1 row, got 0", "databases: rows shorter than the column list",
        "databases: unreadable values: blks_read='1e999'"}) {
    CHECK_MESSAGE(AnyWarningContains(r, w), w << Joined(r.warnings));
  }
  CHECK_FALSE(Find(r, "wal.bytes"));
  CHECK(Value(r, "recovery") == 0);
  CHECK_FALSE(Find(r, "connections.total"));
  CHECK(Value(r, "db.size", "app") == 7765351);
  CHECK_FALSE(Find(r, "db.commits", "app"));
  CHECK_FALSE(Find(r, "db.blocks_read", "postgres"));
  CHECK(Value(r, "db.blocks_hit", "postgres") == 2722);
}

ResultSet Standbys(const std::vector<std::vector<std::optional<std::string>>>& rows) {
  ResultSet rs;
  rs.columns = {"pid", "application_name", "client_addr", "state", "lag_bytes", "replay_lag_s"};
  rs.rows = rows;
  return rs;
}

TEST_CASE("postgresql: standby names: application_name, address, duplicates, pid") {
  using R = std::vector<std::optional<std::string>>;
  const std::nullopt_t null = std::nullopt;
  std::vector<ResultSet> results = LoadCase("15_primary");
  results[4] = Standbys({
      R{"101", "walreceiver", "10.0.0.1", "streaming", "0", null},
      R{"102", "walreceiver", "10.0.0.2", "streaming", "4096", null},
      R{"103", "", "10.0.0.3", "catchup", "8192", "1.5"},
      R{"104", "", null, "streaming", "-20", null},
      R{"105", "dup", "10.0.0.9", "streaming", "0", "0"},
      R{"106", "dup", "10.0.0.9", "streaming", "0", "0"},
  });
  ParseResult r = ParseTick(150000, results);
  CheckConsistent(r);
  CHECK_MESSAGE(r.warnings.empty(), Joined(r.warnings));
  std::vector<std::string> names;
  for (const Entity& e : r.entities) {
    if (e.kind == "standby") names.push_back(e.name);
  }
  CHECK(names == std::vector<std::string>{"walreceiver@10.0.0.1", "walreceiver@10.0.0.2",
                                          "10.0.0.3", "pid104", "dup@10.0.0.9#105",
                                          "dup@10.0.0.9#106"});
  CHECK(Value(r, "replication.standbys") == 6);
  CHECK(Value(r, "standby.lag_seconds", "walreceiver@10.0.0.1") == 0);  // NULL, caught up
  CHECK_FALSE(Find(r, "standby.lag_seconds", "walreceiver@10.0.0.2"));  // NULL, behind
  CHECK(Value(r, "standby.lag_bytes", "walreceiver@10.0.0.2") == 4096);
  CHECK(Value(r, "standby.streaming", "10.0.0.3") == 0);
  CHECK(Value(r, "standby.lag_seconds", "10.0.0.3") == 1.5);
  CHECK(Value(r, "standby.lag_bytes", "pid104") == 0);  // never negative
}

TEST_CASE("postgresql: every prefix of every captured file parses") {
  for (const auto& c : kCases) {
    const std::vector<ResultSet> base = LoadCase(c);
    for (std::size_t i = 0; i < kStatementNames.size(); ++i) {
      const std::string text = MustRead(TsvPath(c, i));
      CAPTURE(TsvPath(c, i));
      for (std::size_t n = 0; n <= text.size(); ++n) {
        std::vector<ResultSet> results = base;
        results[i] = FromTsv(std::string_view(text).substr(0, n));
        ParseResult r = ParseTick(150000, results);
        CheckConsistent(r);
        // And as if the query had ended after this statement.
        results.resize(i + 1);
        r = ParseTick(150000, results);
        CheckConsistent(r);
      }
    }
  }
}

TEST_CASE("postgresql: odd cells never crash the parser") {
  const std::vector<std::string> odd = {"",
                                        " ",
                                        "-",
                                        "+1",
                                        "0x10",
                                        "1e308",
                                        "-1e308",
                                        "nan",
                                        "inf",
                                        "-0",
                                        "1.",
                                        ".5",
                                        "9223372036854775807",
                                        std::string(1000, '9'),
                                        std::string("1\0", 2)};
  const std::vector<ResultSet> base = LoadCase("15_primary");
  for (std::size_t s = 0; s < base.size(); ++s) {
    for (std::size_t c = 0; c < base[s].columns.size(); ++c) {
      for (const std::string& v : odd) {
        std::vector<ResultSet> results = base;
        for (auto& row : results[s].rows) {
          if (c < row.size()) row[c] = v;
        }
        ParseResult r = ParseTick(150000, results);
        CheckConsistent(r);
      }
    }
  }
}


// ---------------------------------------------------------------------------------------------
// The one-statement fast path (TickQueryText / ParseTickText)

// A value as PostgreSQL's record_out writes it: quoted when empty or holding '"', '\\', '(',
// ')', ',' or white space, with '"' and '\\' doubled.
std::string RecordValue(const std::optional<std::string>& v) {
  if (!v) return "";
  bool quote = v->empty();
  for (char c : *v) {
    if (c == '"' || c == '\\' || c == '(' || c == ')' || c == ',' || c == ' ' || c == '\t' ||
        c == '\n' || c == '\r' || c == '\v' || c == '\f') {
      quote = true;
    }
  }
  if (!quote) return *v;
  std::string out = "\"";
  for (char c : *v) {
    if (c == '"' || c == '\\') out.push_back(c);
    out.push_back(c);
  }
  return out + "\"";
}

// The text TickQueryText's statement returns for these results (columns in the statement's
// order, found by name in the ResultSet).
std::string AsTickText(const std::vector<ResultSet>& results) {
  std::string text;
  for (std::size_t i = 0; i < results.size(); ++i) {
    const ResultSet& rs = results[i];
    for (const auto& row : rs.rows) {
      text += "(";
      bool first = true;
      for (std::string_view col : StatementColumns(i)) {
        if (!first) text += ",";
        first = false;
        auto it = std::find(rs.columns.begin(), rs.columns.end(), col);
        std::size_t c = static_cast<std::size_t>(it - rs.columns.begin());
        text += RecordValue(c < row.size() ? row[c] : std::nullopt);
      }
      text += ")";
    }
    text += ";";
  }
  return text;
}

void CheckSameResult(const ParseResult& a, const ParseResult& b) {
  CHECK(AsMap(a) == AsMap(b));
  CHECK(a.warnings == b.warnings);
  REQUIRE(a.entities.size() == b.entities.size());
  for (std::size_t i = 0; i < a.entities.size(); ++i) {
    CHECK(a.entities[i].kind == b.entities[i].kind);
    CHECK(a.entities[i].name == b.entities[i].name);
    CHECK(a.entities[i].labels == b.entities[i].labels);
  }
}

TEST_CASE("postgresql: the one-statement text: statements' columns and SQL") {
  for (std::size_t i = 0; i < kStatementNames.size(); ++i) {
    CAPTURE(kStatementNames[i]);
    // The names the text's records are read by are the captured results' columns.
    ResultSet rs = FromTsv(MustRead(TsvPath("15_primary", i)));
    std::vector<std::string> want(rs.columns.begin(), rs.columns.end());
    std::vector<std::string> got(StatementColumns(i).begin(), StatementColumns(i).end());
    CHECK(got == want);
  }
  CHECK(StatementColumns(kStatementNames.size()).empty());
  for (int major = 12; major <= 17; ++major) {
    CAPTURE(major);
    const std::string sql = TickQueryText(major * 10000);
    // Every statement, whole, inside the one, without its terminator.
    const std::string statements = TickQueries(major * 10000);
    const auto parts = Split(statements, ';');
    for (std::size_t i = 0; i < kStatementNames.size(); ++i) {
      std::string_view part = parts[i];
      if (i > 0) part.remove_prefix(1);  // the '\n' of the previous terminator
      CHECK_MESSAGE(sql.find(part) != std::string::npos, std::string(part));
    }
    // The only ';' are the separators between the statements' records.
    CHECK(std::count(sql.begin(), sql.end(), ';') == static_cast<long>(kStatementNames.size()));
  }
  CHECK(TickQueryText(110000).empty());
}

TEST_CASE("postgresql: the one-statement text parses like the statements' result sets") {
  for (const auto& c : kCases) {
    CAPTURE(c);
    std::vector<ResultSet> results = LoadCase(c);
    CheckSameResult(ParseTickText(150000, AsTickText(results)), ParseTick(150000, results));
  }
  // Names that need quoting: spaces, commas, quotes, parentheses, backslashes, empty, newline.
  std::vector<ResultSet> results = LoadCase("15_primary");
  const std::vector<std::string> names = {"a b", "x,y", "q\"uote", "(p)", "back\\slash",
                                          "new\nline", "plain"};
  ResultSet& dbs = results[5];
  auto row = dbs.rows[0];
  dbs.rows.clear();
  for (const auto& n : names) {
    row[0] = n;
    dbs.rows.push_back(row);
  }
  results[4] = Standbys({{"7", "", "10.0.0.1", "streaming", "0", std::nullopt},
                         {"8", "s,b \"x\"", std::nullopt, "catchup", "10", "1.5"}});
  ParseResult text = ParseTickText(150000, AsTickText(results));
  CheckSameResult(text, ParseTick(150000, results));
  for (const auto& n : names) CHECK_MESSAGE(FindEntity(text, "database", n), n);
  CHECK(FindEntity(text, "standby", "s,b \"x\""));
  CheckConsistent(text);
}

TEST_CASE("postgresql: a malformed one-statement text gives warnings, never a crash") {
  const std::string good = AsTickText(LoadCase("15_primary"));
  CHECK(ParseTickText(150000, good).warnings.empty());
  CHECK(ParseTickText(150000, good + "\n").warnings.empty());
  for (std::size_t n = 0; n < good.size(); ++n) {
    CAPTURE(n);
    ParseResult r = ParseTickText(150000, good.substr(0, n));
    CHECK(!r.warnings.empty());
    CheckConsistent(r);
  }
  ParseResult extra = ParseTickText(150000, good + "(1)");
  CHECK(AnyWarningContains(extra, "unexpected text after the last statement"));
  // A record with a value too many: that statement alone is lost.
  std::string more = good;
  more.insert(more.find(')'), ",1");
  ParseResult r = ParseTickText(150000, more);
  CHECK(AnyWarningContains(r, "instance (pg_stat_archiver, pg_database) failed: malformed tick "
                              "text: a record of 8 values, expected 7"));
  CHECK_FALSE(Find(r, "uptime"));
  CHECK(Find(r, "connections.total"));
  CHECK(ParseTickText(110000, good).warnings.size() == 1);
}

}  // namespace
TEST_CASE("postgresql: ticks without the database sizes (size_interval)") {
  // Such a tick's databases statement has NULL in size_bytes: no db.size, nothing else missing
  // and no warning.
  const std::vector<ResultSet> with_sizes = LoadCase("15_primary");
  std::vector<ResultSet> results = with_sizes;
  ResultSet& dbs = results[5];
  auto col = std::find(dbs.columns.begin(), dbs.columns.end(), "size_bytes") - dbs.columns.begin();
  REQUIRE(col < static_cast<long>(dbs.columns.size()));
  for (auto& row : dbs.rows) row[static_cast<std::size_t>(col)].reset();
  ParseResult with = ParseTick(150000, with_sizes);
  ParseResult without = ParseTick(150000, results);
  CheckConsistent(without);
  CHECK(without.warnings == with.warnings);
  CHECK(without.entities.size() == with.entities.size());
  CHECK(without.readings.size() + dbs.rows.size() == with.readings.size());
  CHECK(Find(with, "db.size", "app"));
  CHECK_FALSE(Find(without, "db.size", "app"));
  CHECK(Value(without, "db.commits", "app") == Value(with, "db.commits", "app"));
  CheckSameResult(ParseTickText(150000, AsTickText(results)), without);

  // The SQL without the sizes: the same statements, columns and order, no pg_database_size().
  for (int major = 12; major <= 17; ++major) {
    CAPTURE(major);
    const std::string all = TickQueries(major * 10000, true);
    const std::string cheap = TickQueries(major * 10000, false);
    CHECK(all == TickQueries(major * 10000));
    CHECK(all.find("pg_database_size(") != std::string::npos);
    CHECK(cheap.find("pg_database_size(") == std::string::npos);
    CHECK(TickQueryText(major * 10000, false).find("pg_database_size(") == std::string::npos);
    const auto a = Split(all, ';'), c = Split(cheap, ';');
    REQUIRE(a.size() == c.size());
    for (std::size_t i = 0; i + 2 < a.size(); ++i) CHECK(a[i] == c[i]);
    CHECK(c[c.size() - 2].find("NULL::bigint AS size_bytes") != std::string::npos);
  }

  Options o;
  CHECK(ParseOptions({}, &o).empty());
  CHECK(o.size_interval_s == 60);
  CHECK(ParseOptions({{"size_interval", "0"}}, &o).empty());
  CHECK(o.size_interval_s == 0);
  CHECK(ParseOptions({{"size_interval", "300.5"}}, &o).empty());
  CHECK(o.size_interval_s == 300.5);
  for (const char* bad : {"-1", "abc", "1e9", "", "nan", "60s", "inf"}) {
    CAPTURE(bad);
    std::string error = ParseOptions({{"size_interval", bad}}, &o);
    CHECK(error.find("option size_interval: expected seconds from 0 to 86400") !=
          std::string::npos);
  }
  CHECK(ParseOptions({{"size_intervall", "60"}}, &o) ==
        "[postgresql] unknown option 'size_intervall' (known: size_interval)");
}

}  // namespace trapline::plugins::postgresql
