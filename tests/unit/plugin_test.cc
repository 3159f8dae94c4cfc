#include "plugins/plugin.h"

#include <doctest/doctest.h>

namespace trapline::plugins {
namespace {

TEST_CASE("item keys: host-level, per entity, and quoted entities") {
  CHECK(ItemKey("linux", "load1", "") == "linux.load1");
  CHECK(ItemKey("linux", "cpu.user", "cpu0") == "linux.cpu.user[cpu0]");
  CHECK(ItemKey("linux", "fs.used", "/var/lib/my data") == "linux.fs.used[\"/var/lib/my data\"]");
  CHECK(ItemKey("postgresql", "db.size", "a,b\"c") == "postgresql.db.size[\"a,b\\\"c\"]");
}

}  // namespace
}  // namespace trapline::plugins
