// The trapline plugin (a collector's own health) and the collector's self_host settings.
#include "plugins/trapline/trapline.h"

#include <doctest/doctest.h>

#include <map>
#include <string>

#include "collector/collector.h"
#include "common/config.h"
#include "plugins/builtin.h"

namespace trapline::plugins::self {
namespace {

std::map<std::string, double> ByMetric(const ParseResult& r) {
  std::map<std::string, double> out;
  for (const auto& reading : r.readings) {
    CHECK(reading.entity.empty());
    CHECK(out.emplace(std::string(reading.metric), reading.value).second);  // each once
  }
  return out;
}

TEST_CASE("trapline plugin: one sample's readings, every one declared") {
  Sample s;
  s.loop_lag_max_s = 0.25;
  s.cpu_pct = 37.5;
  s.rss_bytes = 12e6;
  s.targets = 10;
  s.connected = 7;
  s.ticks = 1234;
  s.ticks_skipped = 5;
  s.has_sender = true;
  s.sent = 99;
  s.rejected = 2;
  s.dropped = 1;
  s.in_spool = 40;
  s.zabbix_reachable = false;
  auto m = ByMetric(Readings(s));
  CHECK(m.size() == Metrics().size());
  for (const auto& spec : Metrics()) CHECK_MESSAGE(m.count(spec.name), spec.name);
  CHECK(m["loop_lag"] == 0.25);
  CHECK(m["targets.disconnected"] == 3);
  CHECK(m["sender.zabbix_reachable"] == 0);
  CHECK(m["sender.in_spool"] == 40);
  CHECK(m["ticks"] == 1234);
}

TEST_CASE("trapline plugin: no sender (--dry-run), unknown RSS, more connected than targets") {
  Sample s;
  s.targets = 1;
  s.connected = 2;  // a target removed between the two counts: never a negative count
  auto m = ByMetric(Readings(s));
  CHECK(m.count("memory.rss") == 0);
  for (const auto& [name, value] : m) CHECK_MESSAGE(name.rfind("sender.", 0) != 0, name);
  CHECK(m["targets.disconnected"] == 0);
}

TEST_CASE("trapline plugin: listed, with no URI scheme (never a target)") {
  const PluginInfo* p = FindPlugin("trapline");
  REQUIRE(p != nullptr);
  CHECK(p->schemes.empty());
  CHECK(PluginForUri("trapline://x") == nullptr);
}

TEST_CASE("collector config: self_host and self_interval; the plugin refused as a target") {
  auto ok = ConfigTable::Parse(
      "[collector]\nself_host = \"trapline-c1\"\nself_interval = 10\n"
      "[[target]]\nhost = \"r\"\nuri = \"redis://127.0.0.1:6379\"\n",
      "c.toml");
  REQUIRE(ok.ok());
  auto o = CollectorOptions::FromConfig(&*ok);
  REQUIRE(o.ok());
  CHECK(o->self_host == "trapline-c1");
  CHECK(o->self_interval_s == 10);

  auto bad = ConfigTable::Parse(
      "[collector]\n[[target]]\nhost = \"r\"\nuri = \"redis://127.0.0.1:6379\"\nplugin = \"trapline\"\n",
      "c.toml");
  REQUIRE(bad.ok());
  auto refused = CollectorOptions::FromConfig(&*bad);
  REQUIRE(!refused.ok());
  CHECK(refused.status().message().find("has no target") != std::string::npos);
  CHECK(refused.status().message().find("self_host") != std::string::npos);
}

}  // namespace
}  // namespace trapline::plugins::self
