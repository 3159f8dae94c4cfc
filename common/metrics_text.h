#pragma once
// Builds a Prometheus text exposition (format 0.0.4) for /metrics. Pure: no I/O, no clock.
//
//   MetricsText m;
//   m.Gauge("trapline_collector_targets", "Targets configured.", 200);
//   m.Family("trapline_collector_target_connected", MetricsText::Type::kGauge, "1 when ...");
//   m.Sample(1, {{"target", "web01/linux"}});
//   m.Summary("trapline_collector_loop_lag_seconds", "...", lags, {0.5, 0.99});
//   std::string body = m.Take();   // serve as kContentType
//
// Names that are not valid metric or label names are repaired (invalid characters become
// '_'), label values and help texts are escaped; NaN and infinities are written as Prometheus
// expects. A family announced twice gets its HELP/TYPE lines once.

#include <cstdint>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trapline {

class MetricsText {
 public:
  static constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

  enum class Type { kGauge, kCounter, kSummary, kUntyped };
  using Labels = std::vector<std::pair<std::string, std::string>>;

  // Writes "# HELP" and "# TYPE" for a family; the samples that follow belong to it.
  MetricsText& Family(std::string_view name, Type type, std::string_view help);
  // One sample of the current family: name + suffix ("_sum", "_count"; empty for none).
  MetricsText& Sample(double value, const Labels& labels = {}, std::string_view suffix = {});

  // A family with one sample.
  void Gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void Counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});

  // A summary over raw observations: one sample per quantile (nearest rank over the sorted
  // observations; none when there are no observations), then _sum and _count. `sum` and
  // `count` default to the observations' own; pass cumulative figures to keep them monotonic.
  void Summary(std::string_view name, std::string_view help, std::vector<double> observations,
               const std::vector<double>& quantiles, const Labels& labels = {}, double sum = -1,
               int64_t count = -1);

  const std::string& text() const { return out_; }
  std::string Take() { return std::move(out_); }

  // Helpers, exposed for tests.
  static std::string SanitizeName(std::string_view name);
  static std::string SanitizeLabelName(std::string_view name);
  static std::string EscapeLabelValue(std::string_view value);
  static std::string EscapeHelp(std::string_view help);
  static std::string FormatValue(double v);
  // Nearest-rank quantile of sorted values. REQUIRES: !sorted.empty(), 0 <= q <= 1.
  static double Quantile(const std::vector<double>& sorted, double q);

 private:
  void WriteLabels(const Labels& labels, std::string_view extra_name, std::string_view extra_value);

  std::string out_;
  std::string family_;
  std::set<std::string, std::less<>> announced_;
};

}  // namespace trapline
