#include "plugins/plugin.h"

#include "collector/target.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace trapline::plugins {
namespace {

TEST_CASE("item keys: host-level, per entity, and quoted entities") {
  CHECK(ItemKey("linux", "load1", "") == "linux.load1");
  CHECK(ItemKey("linux", "cpu.user", "cpu0") == "linux.cpu.user[cpu0]");
  CHECK(ItemKey("linux", "fs.used", "/var/lib/my data") == "linux.fs.used[\"/var/lib/my data\"]");
  CHECK(ItemKey("postgresql", "db.size", "a,b\"c") == "postgresql.db.size[\"a,b\\\"c\"]");
}

TEST_CASE("URIs in logs hide passwords") {
  CHECK(RedactUri("redis://:secret@127.0.0.1:6379") == "redis://:***@127.0.0.1:6379");
  CHECK(RedactUri("postgresql://mon:pw@db:5432/postgres") == "postgresql://mon:***@db:5432/postgres");
  CHECK(RedactUri("ssh://monitor@web01:22") == "ssh://monitor@web01:22");
  CHECK(RedactUri("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379");
  CHECK(RedactUri("postgresql://db/x?user=a@b") == "postgresql://db/x?user=a@b");
}

TEST_CASE("TickSlot: stable across builds (FNV-1a), spread over the slots") {
  // FNV-1a 64 of "" and "a" are published constants: a change here would move every task's
  // phase and break hand-overs between collectors of different builds.
  CHECK(TickSlot("", ~uint64_t{0}) == 14695981039346656037ull % ~uint64_t{0});
  CHECK(TickSlot("a", ~uint64_t{0}) == 0xaf63dc4c8601ec8cull % ~uint64_t{0});
  CHECK(TickSlot("h1/redis redis://127.0.0.1:6379", 1) == 0);
  std::vector<int> count(100);
  for (int i = 0; i < 10000; ++i) ++count[TickSlot("host" + std::to_string(i) + "/linux ssh://m@x:22", 100)];
  CHECK(*std::min_element(count.begin(), count.end()) > 50);
  CHECK(*std::max_element(count.begin(), count.end()) < 150);
}

TEST_CASE("ParseFiniteNumber: whole strings only; the integer fast path agrees with from_chars") {
  double v = -7;
  CHECK(ParseFiniteNumber("0", &v));
  CHECK(v == 0);
  CHECK(ParseFiniteNumber("123456789012345", &v));  // 15 digits: the digit loop
  CHECK(v == 123456789012345.0);
  CHECK(ParseFiniteNumber("1234567890123456789", &v));  // longer: from_chars
  CHECK(v == 1234567890123456789.0);
  CHECK(ParseFiniteNumber("-1", &v));
  CHECK(v == -1);
  CHECK(ParseFiniteNumber("13.71", &v));
  CHECK(v == 13.71);
  CHECK(ParseFiniteNumber("1.5e-05", &v));
  CHECK(v == 1.5e-05);
  CHECK(ParseFiniteNumber("007", &v));
  CHECK(v == 7);
  v = 42;
  for (const char* bad :
       {"", "12x", "x12", " 12", "12 ", "+", "-", "1e999", "inf", "nan", "0/3000000"}) {
    CAPTURE(bad);
    CHECK(!ParseFiniteNumber(bad, &v));
  }
  CHECK(v == 42);  // untouched on failure
}

}  // namespace
}  // namespace trapline::plugins
