#include "collector/pipeline.h"

#include <doctest/doctest.h>

#include <map>

namespace trapline {
namespace {

const std::vector<plugins::MetricSpec>& Specs() {
  static const std::vector<plugins::MetricSpec> kSpecs = {
      {"load1", "", "Load", "", plugins::MetricKind::kGauge, plugins::ValueType::kFloat, 10, "", 1.0},
      {"bytes", "disk", "Bytes", "Bps", plugins::MetricKind::kCounter, plugins::ValueType::kFloat, 10, "", 512.0},
      {"version", "", "Version", "", plugins::MetricKind::kGauge, plugins::ValueType::kText, 10, "", 1.0},
  };
  return kSpecs;
}

ZbxTime At(int64_t s) { return ZbxTime{1700000000 + s, 0}; }

TEST_CASE("pipeline: gauges become value sets per interval with host and item key") {
  MetricPipeline p("web01", "linux", &Specs());
  std::vector<SenderValue> out;
  for (int i = 0; i < 10; ++i) p.AddTick(At(i), {{"load1", "", i % 2 == 0 ? 1.0 : 3.0, ""}}, &out);
  CHECK(out.empty());  // the interval [0, 10) is still open
  p.AddTick(At(10), {{"load1", "", 2.0, ""}}, &out);
  REQUIRE(out.size() == 2);  // min 1 and max 3, mean 2: two values suffice
  for (const auto& v : out) {
    CHECK(v.host == "web01");
    CHECK(v.key == "linux.load1");
  }
  CHECK(out[0].value == "1");
  CHECK(out[1].value == "3");
}

TEST_CASE("pipeline: counters become scaled rates; a reconnect gives no rate across the gap") {
  MetricPipeline p("web01", "linux", &Specs());
  std::vector<SenderValue> out;
  // 10 sectors per second = 5120 B/s.
  for (int i = 0; i <= 5; ++i) p.AddTick(At(i), {{"bytes", "sda", 100.0 + 10 * i, ""}}, &out);
  p.ResetCounters();
  // After the reconnect the counter restarted from 0: without Reset that would be a reset
  // (no rate) anyway; from 7 on the rate is 5120 again.
  for (int i = 6; i <= 9; ++i) p.AddTick(At(i), {{"bytes", "sda", 10.0 * (i - 6), ""}}, &out);
  p.Flush(&out);
  REQUIRE(out.size() == 1);
  CHECK(out[0].key == "linux.bytes[sda]");
  CHECK(out[0].value == "5120");
}

TEST_CASE("pipeline: text is sent when it changes; undeclared metrics are counted, not sent") {
  MetricPipeline p("r1", "redis", &Specs());
  std::vector<SenderValue> out;
  p.AddTick(At(0), {{"version", "", 0, "7.0.15"}, {"nosuch", "", 1, ""}}, &out);
  p.AddTick(At(1), {{"version", "", 0, "7.0.15"}}, &out);
  p.AddTick(At(2), {{"version", "", 0, "7.2.0"}}, &out);
  REQUIRE(out.size() == 2);
  CHECK(out[0].value == "7.0.15");
  CHECK(out[1].value == "7.2.0");
  CHECK(out[1].clock == At(2).clock);
  CHECK(p.unknown_readings() == 1);
}

TEST_CASE("pipeline: an interval override applies to every metric; FlushIfDue closes silent series") {
  MetricPipeline p("web01", "linux", &Specs(), 2);
  std::vector<SenderValue> out;
  p.AddTick(At(0), {{"load1", "", 5.0, ""}}, &out);
  p.FlushIfDue(At(1), &out);
  CHECK(out.empty());
  p.FlushIfDue(At(2), &out);  // no new sample, but the 2 s interval is over
  REQUIRE(out.size() == 1);
  CHECK(out[0].value == "5");
}

TEST_CASE("pipeline: readings that change order, appear or vanish between ticks keep their series") {
  MetricPipeline p("web01", "linux", &Specs(), 2);
  std::vector<SenderValue> out;
  // The series are found by the reading's position in the previous tick first; a tick whose
  // readings moved must still reach the right series.
  p.AddTick(At(0), {{"load1", "", 1.0, ""}, {"bytes", "sda", 0, ""}, {"bytes", "sdb", 0, ""}},
            &out);
  p.AddTick(At(1), {{"bytes", "sdb", 20, ""}, {"load1", "", 3.0, ""}, {"bytes", "sda", 10, ""}},
            &out);
  p.AddTick(At(2), {{"bytes", "sda", 20, ""}, {"load1", "", 5.0, ""}}, &out);  // sdb gone
  p.AddTick(At(3), {{"load1", "", 7.0, ""}, {"bytes", "sdb", 60, ""}, {"bytes", "sda", 30, ""}},
            &out);
  p.Flush(&out);
  CHECK(p.series_count() == 3);
  std::map<std::string, std::vector<std::string>> by_key;
  for (const auto& v : out) by_key[v.key].push_back(v.value);
  CHECK(by_key["linux.load1"] == std::vector<std::string>{"1", "3", "5", "7"});
  CHECK(by_key["linux.bytes[sda]"] == std::vector<std::string>{"5120", "5120"});
  CHECK(by_key["linux.bytes[sdb]"] == std::vector<std::string>{"10240", "10240"});
}

}  // namespace
}  // namespace trapline
