// The redis plugin's parser over real INFO replies of Redis 7.0 (Debian 12) captured by
// tests/fixtures/redis/capture.py, and variants of them (derive.py, and made here: LF line
// ends, every prefix of every reply).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/redis/redis.h"

namespace trapline::plugins::redis {
namespace {

std::string Fixture(const std::string& name) {
  std::string path = std::string(TRAPLINE_FIXTURES) + "/redis/" + name;
  std::string out;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  REQUIRE_MESSAGE(f != nullptr, "cannot open " << path);
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  std::fclose(f);
  return out;
}

const std::vector<std::string> kCaptures = {
    "info_7.0_empty.txt",   "info_7.0_everything.txt",   "info_7.0_keys.txt", "info_7.0_master.txt",
    "info_7.0_replica.txt", "info_7.0_replica_down.txt", "info_7.0_aof.txt",
};
const std::vector<std::string> kVariants = {
    "info_5.0_style.txt",
    "info_unknown_fields.txt",
    "info_missing_sections.txt",
    "info_bad_values.txt",
};

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

std::string Text(const ParseResult& r, std::string_view metric) {
  auto x = Find(r, metric);
  REQUIRE_MESSAGE(x.has_value(), "no reading " << metric);
  return x->text;
}

bool HasEntity(const ParseResult& r, std::string_view kind, std::string_view name) {
  return std::any_of(r.entities.begin(), r.entities.end(),
                     [&](const Entity& e) { return e.kind == kind && e.name == name; });
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

std::string ToLf(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '\r'), s.end());
  return s;
}

// Every reading is declared, with the entity kind its entity has, and every entity a reading
// names is listed.
void CheckConsistent(const ParseResult& r) {
  std::map<std::string, const MetricSpec*, std::less<>> specs;
  for (const MetricSpec& m : Metrics()) specs[m.name] = &m;
  std::set<std::string> entities;
  for (const Entity& e : r.entities) entities.insert(e.kind + "/" + e.name);
  for (const Reading& x : r.readings) {
    auto it = specs.find(x.metric);
    REQUIRE_MESSAGE(it != specs.end(), "undeclared metric " << x.metric);
    CHECK_MESSAGE(it->second->entity_kind.empty() == x.entity.empty(), x.metric);
    if (!x.entity.empty()) {
      CHECK_MESSAGE(entities.count(it->second->entity_kind + "/" + x.entity) == 1,
                    x.metric << "[" << x.entity << "]");
    }
  }
}

TEST_CASE("redis: metric declarations") {
  std::set<std::string> names;
  for (const MetricSpec& m : Metrics()) {
    CHECK_MESSAGE(names.insert(m.name).second, "duplicate " << m.name);
    CHECK(!m.title.empty());
    CHECK(!m.description.empty());
    CHECK((m.entity_kind.empty() || m.entity_kind == "keyspace" || m.entity_kind == "replica"));
    CHECK((m.entity_kind.empty() == (m.title.find("{#ENTITY}") == std::string::npos)));
    if (m.kind == MetricKind::kCounter) CHECK(m.value_type == ValueType::kFloat);
  }
  CHECK(Metrics().size() == 42);
  CHECK(kPluginName == "redis");
}

TEST_CASE("redis: the tick command is the plain INFO") {
  CHECK(TickCommand() == std::vector<std::string>{"INFO"});
}

TEST_CASE("redis: every capture parses without warnings") {
  for (const auto& name : kCaptures) {
    CAPTURE(name);
    ParseResult r = ParseInfo(Fixture(name));
    CHECK_MESSAGE(r.warnings.empty(), Joined(r.warnings));
    CheckConsistent(r);
    CHECK(Text(r, "version") == "7.0.15");
    CHECK(Value(r, "uptime") >= 0);
    CHECK(Value(r, "persistence.rdb_last_save_age") >= 0);
    CHECK(Value(r, "persistence.rdb_last_bgsave_ok") == 1);
    CHECK(Value(r, "persistence.aof_last_write_ok") == 1);
    CHECK(Value(r, "memory.used") > 0);
    CHECK(Value(r, "memory.rss") > 0);
  }
}

TEST_CASE("redis: fresh server") {
  ParseResult r = ParseInfo(Fixture("info_7.0_empty.txt"));
  CHECK(Value(r, "clients.connected") == 1);
  CHECK(Value(r, "clients.blocked") == 0);
  CHECK(Value(r, "memory.max") == 0);
  CHECK_FALSE(Find(r, "memory.used_pct"));     // no limit
  CHECK_FALSE(Find(r, "keyspace.hit_ratio"));  // no lookup yet
  CHECK(Value(r, "keys.total") == 0);          // "# Keyspace" with no database listed
  CHECK(Value(r, "keys.expires") == 0);
  CHECK(r.entities.empty());
  CHECK(Text(r, "replication.role") == "master");
  CHECK(Value(r, "replication.replicas") == 0);
  CHECK(Value(r, "persistence.aof_enabled") == 0);
  CHECK_FALSE(Find(r, "replication.master_link_up"));  // masters have no link
  // INFO everything adds sections the parser does not need: same readings.
  ParseResult all = ParseInfo(Fixture("info_7.0_everything.txt"));
  CHECK(all.readings.size() == r.readings.size());
}

TEST_CASE("redis: keys with TTLs, hits, misses, evictions, rejections") {
  ParseResult r = ParseInfo(Fixture("info_7.0_keys.txt"));
  CHECK(Value(r, "db.keys", "db0") == 82);
  CHECK(Value(r, "db.expires", "db0") == 6);
  CHECK(Value(r, "db.avg_ttl", "db0") == doctest::Approx(3608.356));
  CHECK(Value(r, "db.keys", "db3") == 2);
  CHECK(Value(r, "db.expires", "db3") == 2);
  CHECK(Value(r, "db.avg_ttl", "db3") == doctest::Approx(2280.942));
  CHECK(Value(r, "keys.total") == 84);
  CHECK(Value(r, "keys.expires") == 8);
  CHECK(r.entities.size() == 2);
  CHECK(HasEntity(r, "keyspace", "db0"));
  CHECK(HasEntity(r, "keyspace", "db3"));
  CHECK(Value(r, "keyspace.hits") == 10);
  CHECK(Value(r, "keyspace.misses") == 34);
  CHECK(Value(r, "keyspace.hit_ratio") == doctest::Approx(100.0 * 10 / 44));
  CHECK(Value(r, "keys.expired") == 30);
  CHECK(Value(r, "keys.evicted") == 148);
  CHECK(Value(r, "connections.rejected") == 4);
  CHECK(Value(r, "memory.max") == 2097152);
  CHECK(Value(r, "memory.used") == 2052072);
  CHECK(Value(r, "memory.used_pct") == doctest::Approx(2052072.0 / 2097152 * 100));
  CHECK(Value(r, "ops") == 321);
  CHECK(Value(r, "persistence.rdb_last_save_age") ==
        doctest::Approx(1795232825.306751 - 1795232824).epsilon(1e-12));
  CHECK(Value(r, "memory.fragmentation_ratio") > 0);
}

TEST_CASE("redis: master with a replica, and the replica") {
  ParseResult m = ParseInfo(Fixture("info_7.0_master.txt"));
  CHECK(Text(m, "replication.role") == "master");
  CHECK(Value(m, "replication.replicas") == 1);
  CHECK(Value(m, "replication.offset") == 6513);
  REQUIRE(HasEntity(m, "replica", "127.0.0.1:50717"));
  const Entity& e = *std::find_if(m.entities.begin(), m.entities.end(),
                                  [](const Entity& x) { return x.kind == "replica"; });
  CHECK(e.labels ==
        std::vector<std::pair<std::string, std::string>>{{"ip", "127.0.0.1"}, {"port", "50717"}});
  CHECK(Value(m, "replica.online", "127.0.0.1:50717") == 1);
  CHECK(Value(m, "replica.lag_bytes", "127.0.0.1:50717") == 0);
  CHECK(Value(m, "replica.lag", "127.0.0.1:50717") == 0);

  ParseResult r = ParseInfo(Fixture("info_7.0_replica.txt"));
  CHECK(Text(r, "replication.role") == "slave");
  CHECK(Value(r, "replication.master_link_up") == 1);
  CHECK(Value(r, "replication.master_last_io") == 1);
  CHECK_FALSE(Find(r, "replication.master_link_down_since"));
  CHECK(Value(r, "replication.offset") == 6513);
  CHECK(Value(r, "db.keys", "db0") == 50);
  CHECK_FALSE(HasEntity(r, "replica", "127.0.0.1:50717"));

  ParseResult d = ParseInfo(Fixture("info_7.0_replica_down.txt"));
  CHECK(d.warnings.empty());
  CHECK(Value(d, "replication.master_link_up") == 0);
  CHECK_FALSE(Find(d, "replication.master_last_io"));  // -1 while down
  CHECK(Value(d, "replication.master_link_down_since") == 0);
}

TEST_CASE("redis: persistence with AOF") {
  ParseResult r = ParseInfo(Fixture("info_7.0_aof.txt"));
  CHECK(Value(r, "persistence.aof_enabled") == 1);
  CHECK(Value(r, "persistence.aof_last_bgrewrite_ok") == 1);
  CHECK(Value(r, "persistence.rdb_changes_since_last_save") == 1);
  CHECK(Value(r, "persistence.rdb_last_save_age") ==
        doctest::Approx(1795232832.017162 - 1795232831).epsilon(1e-12));
}

TEST_CASE("redis: LF line ends read the same as CRLF") {
  for (const auto& name : kCaptures) {
    CAPTURE(name);
    std::string crlf = Fixture(name);
    ParseResult a = ParseInfo(crlf);
    ParseResult b = ParseInfo(ToLf(crlf));
    CHECK(b.warnings.empty());
    REQUIRE(a.readings.size() == b.readings.size());
    for (std::size_t i = 0; i < a.readings.size(); ++i) {
      CHECK(a.readings[i].metric == b.readings[i].metric);
      CHECK(a.readings[i].entity == b.readings[i].entity);
      CHECK(a.readings[i].value == b.readings[i].value);
      CHECK(a.readings[i].text == b.readings[i].text);
    }
    CHECK(a.entities.size() == b.entities.size());
  }
}

TEST_CASE("redis: Redis 5.0 style reply: no server time, so no save age, and one warning") {
  ParseResult r = ParseInfo(Fixture("info_5.0_style.txt"));
  CheckConsistent(r);
  REQUIRE(r.warnings.size() == 1);
  CHECK(r.warnings[0].find("server_time_usec") != std::string::npos);
  CHECK_FALSE(Find(r, "persistence.rdb_last_save_age"));
  CHECK(Text(r, "version") == "5.0.14");
  CHECK(Value(r, "persistence.rdb_last_bgsave_ok") == 1);
  CHECK(Value(r, "keys.total") == 84);
  CHECK(Value(r, "keyspace.hit_ratio") == doctest::Approx(100.0 * 10 / 44));
  CHECK(Value(r, "cpu.user") >= 0);
}

TEST_CASE("redis: unknown fields and sections are ignored") {
  ParseResult r = ParseInfo(Fixture("info_unknown_fields.txt"));
  CHECK_MESSAGE(r.warnings.empty(), Joined(r.warnings));
  CheckConsistent(r);
  ParseResult base = ParseInfo(Fixture("info_7.0_master.txt"));
  CHECK(r.readings.size() == base.readings.size());
  CHECK(Value(r, "replica.lag_bytes", "127.0.0.1:50717") == 1500);
  CHECK(Value(r, "replication.offset") == 6513 + 1500);
  CHECK(Value(r, "db.keys", "db0") == 50);  // subexpiry=0 ignored
  CHECK(Value(r, "replica.online", "127.0.0.1:50717") == 1);
}

TEST_CASE("redis: missing sections give no readings and one warning naming the fields") {
  ParseResult r = ParseInfo(Fixture("info_missing_sections.txt"));
  CheckConsistent(r);
  REQUIRE(r.warnings.size() == 1);
  for (const char* f : {"used_memory", "mem_fragmentation_ratio", "maxmemory", "role",
                        "rdb_last_bgsave_status", "aof_enabled", "master_repl_offset"}) {
    CHECK_MESSAGE(r.warnings[0].find(f) != std::string::npos, f);
  }
  CHECK(r.warnings[0].find("connected_clients") == std::string::npos);
  CHECK_FALSE(Find(r, "memory.used"));
  CHECK_FALSE(Find(r, "memory.used_pct"));
  CHECK_FALSE(Find(r, "replication.role"));
  CHECK_FALSE(Find(r, "persistence.rdb_last_save_age"));
  CHECK(Value(r, "clients.connected") == 1);
  CHECK(Value(r, "keys.total") == 84);
  CHECK(Value(r, "keyspace.hit_ratio") == doctest::Approx(100.0 * 10 / 44));
}

TEST_CASE("redis: unreadable values give warnings, not readings") {
  ParseResult r = ParseInfo(Fixture("info_bad_values.txt"));
  CheckConsistent(r);
  for (const char* f :
       {"connected_clients: not a number: 'many'", "used_memory: not a number: ''",
        "used_memory_rss: not a number: '12x'", "mem_fragmentation_ratio: not a number: 'nan'",
        "keyspace_hits: not a number: '1e400'", "server_time_usec: not a time",
        "db1: keys not a number: 'abc'", "db4: missing expires avg_ttl"}) {
    CHECK_MESSAGE(AnyWarningContains(r, f), f << Joined(r.warnings));
  }
  CHECK_FALSE(Find(r, "clients.connected"));
  CHECK_FALSE(Find(r, "memory.used"));
  CHECK_FALSE(Find(r, "memory.rss"));
  CHECK_FALSE(Find(r, "memory.fragmentation_ratio"));
  CHECK_FALSE(Find(r, "keyspace.hits"));
  CHECK_FALSE(Find(r, "keyspace.hit_ratio"));
  CHECK_FALSE(Find(r, "persistence.rdb_last_save_age"));
  CHECK(Value(r, "keyspace.misses") == -3);  // read as is; the collector sees a reset
  CHECK(Value(r, "persistence.rdb_last_bgsave_ok") == 0);
  CHECK(Value(r, "persistence.aof_last_write_ok") == 0);
  CHECK(Value(r, "db.expires", "db1") == 1);
  CHECK_FALSE(Find(r, "db.keys", "db1"));
  CHECK(Value(r, "db.keys", "db4") == 7);
  CHECK(Value(r, "keys.total") == 11 + 7);
  CHECK_FALSE(HasEntity(r, "keyspace", "dbx"));
  CHECK_FALSE(HasEntity(r, "keyspace", "db2"));
}

TEST_CASE("redis: replicas over IPv6, not yet online") {
  ParseResult r = ParseInfo(
      "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"
      "slave0:ip=::1,port=6380,state=wait_bgsave,offset=0,lag=0\r\n"
      "slave1:ip=10.0.0.2,port=6381\r\n"
      "slave2:state=online\r\n"
      "master_repl_offset:10\r\n");
  CheckConsistent(r);
  CHECK(Value(r, "replica.online", "[::1]:6380") == 0);
  CHECK(Value(r, "replica.lag_bytes", "[::1]:6380") == 10);
  CHECK(Value(r, "replica.online", "10.0.0.2:6381") == 0);
  CHECK_FALSE(Find(r, "replica.lag_bytes", "10.0.0.2:6381"));
  CHECK(AnyWarningContains(r, "slave2: no ip or port"));
  CHECK_FALSE(Find(r, "keys.total"));  // no Keyspace section in the reply
}

// Readings that a prefix may give with another value than the whole reply: sums over lines.
bool IsSum(std::string_view metric) { return metric == "keys.total" || metric == "keys.expires"; }

TEST_CASE("redis: every prefix of every reply parses; cut lines are dropped, not misread") {
  std::vector<std::string> all = kCaptures;
  all.insert(all.end(), kVariants.begin(), kVariants.end());
  for (const auto& name : all) {
    CAPTURE(name);
    const std::string text = Fixture(name);
    const ParseResult full = ParseInfo(text);
    std::map<std::pair<std::string, std::string>, const Reading*> whole;
    for (const Reading& x : full.readings) whole[{std::string(x.metric), x.entity}] = &x;
    for (std::size_t n = 0; n <= text.size(); ++n) {
      ParseResult r = ParseInfo(std::string_view(text).substr(0, n));
      if (n < text.size() && (n == 0 || text[n - 1] != '\n')) {
        REQUIRE_MESSAGE(!r.warnings.empty(), "prefix " << n);
      }
      for (const Reading& x : r.readings) {
        auto it = whole.find({std::string(x.metric), x.entity});
        REQUIRE_MESSAGE(it != whole.end(), "prefix " << n << ": " << x.metric);
        if (IsSum(x.metric)) continue;
        REQUIRE_MESSAGE(it->second->value == x.value, "prefix " << n << ": " << x.metric);
        REQUIRE_MESSAGE(it->second->text == x.text, "prefix " << n << ": " << x.metric);
      }
    }
  }
}

TEST_CASE("redis: garbage never crashes the parser") {
  const std::vector<std::string> inputs = {
      "",
      "\n",
      "\r\n\r\n\r\n",
      "#\n# \n#Keyspace\n",
      ":\n::\n:::\n",
      "db:\ndb0\ndb0:\ndb0:,,,\ndb0:=,=,keys=\ndb99999999999999999999:keys=1\n",
      "slave0:\nslave0:ip=\nslave0:ip=,port=\nslave:ip=1,port=2\n",
      std::string("used_memory:1\0\n", 15),
      std::string(100000, 'x'),
      std::string(100000, '\n'),
      "role:slave\nmaster_link_status:\nmaster_last_io_seconds_ago:abc\n",
      "rdb_last_save_time:100\nserver_time_usec:1\n",
      "-NOAUTH Authentication required.",
  };
  for (const auto& in : inputs) {
    ParseResult r = ParseInfo(in);
    CheckConsistent(r);
  }
  // Every byte value at every position of a short reply.
  std::string base = "role:master\r\ndb0:keys=1,expires=0,avg_ttl=0\r\nslave0:ip=a,port=1\r\n";
  for (std::size_t i = 0; i < base.size(); ++i) {
    for (int c = 0; c < 256; ++c) {
      std::string s = base;
      s[i] = static_cast<char>(c);
      ParseResult r = ParseInfo(s);
      CheckConsistent(r);
    }
  }
  ParseResult save = ParseInfo("rdb_last_save_time:100\nserver_time_usec:1\n");
  CHECK(Value(save, "persistence.rdb_last_save_age") == 0);  // never negative
}

}  // namespace
}  // namespace trapline::plugins::redis
