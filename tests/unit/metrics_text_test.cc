#include "common/metrics_text.h"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>

namespace trapline {
namespace {

TEST_CASE("gauges and counters with HELP and TYPE lines") {
  MetricsText m;
  m.Gauge("trapline_collector_targets", "Targets configured.", 200);
  m.Counter("process_cpu_seconds_total", "CPU seconds.", 1.25);
  CHECK(m.text() ==
        "# HELP trapline_collector_targets Targets configured.\n"
        "# TYPE trapline_collector_targets gauge\n"
        "trapline_collector_targets 200\n"
        "# HELP process_cpu_seconds_total CPU seconds.\n"
        "# TYPE process_cpu_seconds_total counter\n"
        "process_cpu_seconds_total 1.25\n");
}

TEST_CASE("labelled samples of one family; label values escaped; family announced once") {
  MetricsText m;
  m.Family("target_connected", MetricsText::Type::kGauge, "1 when connected.\nSecond \\ line");
  m.Sample(1, {{"target", "web01/linux"}, {"uri", "ssh://m@web01:22"}});
  m.Sample(0, {{"target", "a\"b\\c\nd"}});
  m.Family("target_connected", MetricsText::Type::kGauge, "again");
  m.Sample(1, {{"bad-label", "x"}, {"__reserved", "y"}, {"9lives", "z"}});
  CHECK(m.text() ==
        "# HELP target_connected 1 when connected.\\nSecond \\\\ line\n"
        "# TYPE target_connected gauge\n"
        "target_connected{target=\"web01/linux\",uri=\"ssh://m@web01:22\"} 1\n"
        "target_connected{target=\"a\\\"b\\\\c\\nd\"} 0\n"
        "target_connected{bad_label=\"x\",x__reserved=\"y\",_lives=\"z\"} 1\n");
}

TEST_CASE("names are repaired; values formatted as Prometheus reads them") {
  CHECK(MetricsText::SanitizeName("trapline.loop-lag") == "trapline_loop_lag");
  CHECK(MetricsText::SanitizeName("ns:metric_1") == "ns:metric_1");
  CHECK(MetricsText::SanitizeName("1abc") == "_abc");
  CHECK(MetricsText::SanitizeName("") == "_");
  CHECK(MetricsText::SanitizeLabelName("a:b") == "a_b");
  CHECK(MetricsText::FormatValue(0) == "0");
  CHECK(MetricsText::FormatValue(-3) == "-3");
  CHECK(MetricsText::FormatValue(123456789012.0) == "123456789012");
  CHECK(MetricsText::FormatValue(0.1) == "0.1");
  CHECK(MetricsText::FormatValue(1e300) == "1e+300");
  CHECK(MetricsText::FormatValue(std::nan("")) == "NaN");
  CHECK(MetricsText::FormatValue(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(MetricsText::FormatValue(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(std::stod(MetricsText::FormatValue(1.0 / 3)) == 1.0 / 3);
}

TEST_CASE("summaries from observations: nearest-rank quantiles, sum and count") {
  std::vector<double> sorted;
  for (int i = 1; i <= 100; ++i) sorted.push_back(i);
  CHECK(MetricsText::Quantile(sorted, 0.5) == 50);
  CHECK(MetricsText::Quantile(sorted, 0.99) == 99);
  CHECK(MetricsText::Quantile(sorted, 1.0) == 100);
  CHECK(MetricsText::Quantile(sorted, 0.0) == 1);
  CHECK(MetricsText::Quantile({7}, 0.99) == 7);

  MetricsText m;
  m.Summary("lag_seconds", "Loop lag.", {0.5, 0.125, 0.25, 1}, {0.5, 0.99}, {{"loop", "main"}});
  CHECK(m.text() ==
        "# HELP lag_seconds Loop lag.\n"
        "# TYPE lag_seconds summary\n"
        "lag_seconds{loop=\"main\",quantile=\"0.5\"} 0.25\n"
        "lag_seconds{loop=\"main\",quantile=\"0.99\"} 1\n"
        "lag_seconds_sum{loop=\"main\"} 1.875\n"
        "lag_seconds_count{loop=\"main\"} 4\n");

  MetricsText cumulative;
  cumulative.Summary("lag_seconds", "Loop lag.", {}, {0.5}, {}, 12.5, 1000);
  CHECK(cumulative.text() ==
        "# HELP lag_seconds Loop lag.\n"
        "# TYPE lag_seconds summary\n"
        "lag_seconds_sum 12.5\n"
        "lag_seconds_count 1000\n");
}

TEST_CASE("Take empties the builder") {
  MetricsText m;
  m.Gauge("a", "A.", 1);
  std::string body = m.Take();
  CHECK(body.find("a 1\n") != std::string::npos);
  CHECK(MetricsText::kContentType == "text/plain; version=0.0.4; charset=utf-8");
}

}  // namespace
}  // namespace trapline
