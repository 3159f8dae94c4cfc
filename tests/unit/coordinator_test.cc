#include "coordinator/coordinator.h"

#include <doctest/doctest.h>

#include "common/config.h"
#include "coordinator/migrations.h"

namespace trapline::coordinator {
namespace {

TEST_CASE("migrations: this build's list is well formed and starts at 1") {
  CHECK(CheckMigrations(Migrations()).ok());
  REQUIRE(!Migrations().empty());
  CHECK(Migrations().front().version == 1);
  CHECK(kMigrationLockKey != kLeaderLockKey);
}

TEST_CASE("migrations: pending ones in order; a newer registry is refused") {
  static constexpr Migration kAll[] = {{1, "a", "SELECT 1"}, {2, "b", "SELECT 2"}, {3, "c", "SELECT 3"}};
  auto none = PendingMigrations(kAll, std::vector<int>{});
  REQUIRE(none.ok());
  REQUIRE(none->size() == 3);
  CHECK((*none)[0]->version == 1);
  auto some = PendingMigrations(kAll, std::vector<int>{1, 2});
  REQUIRE(some.ok());
  REQUIRE(some->size() == 1);
  CHECK((*some)[0]->version == 3);
  CHECK(PendingMigrations(kAll, std::vector<int>{1, 2, 3})->empty());
  auto newer = PendingMigrations(kAll, std::vector<int>{1, 2, 3, 4});
  REQUIRE_FALSE(newer.ok());
  CHECK(newer.status().message().find("schema version 4") != std::string::npos);
  static constexpr Migration kGap[] = {{1, "a", "SELECT 1"}, {3, "c", "SELECT 3"}};
  CHECK_FALSE(CheckMigrations(kGap).ok());
}

pg::Rows MakeRows(std::vector<pg::Row> rows) {
  pg::Rows r;
  r.rows = std::move(rows);
  return r;
}

TEST_CASE("coordinator: registry rows parse; nonsense is an error naming the row") {
  auto c = ParseCollectorRows(MakeRows({{"1", "c1", "2.5", "active", "12.5"},
                                        {"2", "c2", "1", "dead", std::nullopt}}));
  REQUIRE(c.ok());
  CHECK((*c)[0].weight == 2.5);
  CHECK((*c)[0].lag_p99_ms.value() == 12.5);
  CHECK_FALSE((*c)[1].lag_p99_ms.has_value());
  auto bad = ParseCollectorRows(MakeRows({{"3", "c3", "heavy", "active", std::nullopt}}));
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("collector c3 (id 3): weight 'heavy'") != std::string::npos);
  CHECK_FALSE(ParseCollectorRows(MakeRows({{"3", "c3", "1", "sleepy", std::nullopt}})).ok());
  auto t = ParseTaskRows(MakeRows({{"7", "1.5", std::nullopt, "0"}, {"8", "1", "3", "4"}}));
  REQUIRE(t.ok());
  CHECK_FALSE((*t)[0].collector.has_value());
  CHECK((*t)[1].collector.value() == 3);
  CHECK((*t)[1].generation == 4);
  CHECK_FALSE(ParseTaskRows(MakeRows({{"9", "-1", std::nullopt, "0"}})).ok());
}

TEST_CASE("coordinator: a collector speaking another cluster protocol is refused with what to do") {
  auto c = ParseCollectorRows(MakeRows({{"1", "old", "1", "active", std::nullopt, "0"},
                                        {"2", "same", "1", "active", std::nullopt, "1"},
                                        {"3", "new", "1", "active", std::nullopt, "7"}}));
  REQUIRE(c.ok());
  CHECK((*c)[0].protocol == 0);
  CHECK((*c)[2].protocol == 7);
  CHECK(ProtocolMismatch((*c)[1], 1).empty());
  std::string old = ProtocolMismatch((*c)[0], 1);
  CHECK(old.find("collector old speaks cluster protocol 0 and this coordinator speaks 1") == 0);
  CHECK(old.find("upgrade trapline on it") != std::string::npos);
  CHECK(ProtocolMismatch((*c)[2], 1).find("upgrade the coordinators") != std::string::npos);
  CHECK_FALSE(ParseCollectorRows(MakeRows({{"4", "x", "1", "active", std::nullopt, "two"}})).ok());
}

TEST_CASE("coordinator: the assign line says why") {
  TickEvents e;
  e.left = {"c2"};
  CHECK(MoveSummary(12, e) == "12 moves (collector c2 left)");
  TickEvents j;
  j.joined = {"c4"};
  j.new_tasks = 2;
  CHECK(MoveSummary(3, j) == "3 moves (collector c4 joined; 2 new tasks)");
  CHECK(MoveSummary(1, TickEvents{}) == "1 move (rebalance)");
}

TEST_CASE("coordinator: config keys, defaults, errors with file and line") {
  auto t = ConfigTable::Parse("[coordinator]\nname = \"co1\"\nregistry = \"postgresql://u@h/db\"\n",
                              "co.toml");
  REQUIRE(t.ok());
  auto o = CoordinatorOptions::FromConfig(&t.value());
  REQUIRE(o.ok());
  CHECK(o->name == "co1");
  CHECK(o->heartbeat_timeout_s == 3);
  auto bad = ConfigTable::Parse("[coordinator]\nregistry = \"postgresql://u@h/db\"\nheartbeat_timout = 2\n",
                                "co.toml");
  REQUIRE(bad.ok());
  auto e = CoordinatorOptions::FromConfig(&bad.value());
  REQUIRE_FALSE(e.ok());
  CHECK(e.status().message().find("co.toml:3: 'coordinator.heartbeat_timout' is not a known key") !=
        std::string::npos);
  auto none = ConfigTable::Parse("[coordinator]\nname = \"x\"\n", "co.toml");
  REQUIRE(none.ok());
  auto n = CoordinatorOptions::FromConfig(&none.value());
  REQUIRE_FALSE(n.ok());
  CHECK(n.status().message().find("no 'registry'") != std::string::npos);
}

}  // namespace
}  // namespace trapline::coordinator
