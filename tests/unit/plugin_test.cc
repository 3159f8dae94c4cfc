#include "plugins/plugin.h"

#include "collector/target.h"

#include <doctest/doctest.h>

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

}  // namespace
}  // namespace trapline::plugins
